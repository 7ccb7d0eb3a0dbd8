"""Knowledge-base storage (seed 000): a partner buys megabytes for its pool, allocates them to its customers, and the
platform reports what each customer uses.

- `partner_storage_purchase`: $8/GB (1 GB = 1,024 MB) from the partner's USD account with the platform to the
  platform's revenue, in the ledger, and the megabytes added to the pool; a money mutation (`money_mutation`).
- `customer_storage_allocate`: sets a customer's allocation to a total, moving the difference between the pool and
  the customer (POOL_EXHAUSTED when the pool is short; never below what the customer uses; raising it needs the
  knowledge base in the package in force). A package's `storageMb` is applied the same way at assignment and given
  back when the package ends (`apply_package_storage`, `release_package_storage`).
- `storage_usage_record`: the megabytes a customer uses; what lies beyond its allocation is metered as STORAGE_MB
  usage (domain/storage/metering.py).

Every change of a pool holds its row's lock (`PartnerStorage`, then the customer's `CustomerStorage`), so concurrent
allocations never hand out more than the pool holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.common.json import JsonObject
from domain.common.validation import Validator
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode, forbidden
from domain.features import eligibility
from domain.ledger import services as ledger
from domain.ledger.idempotency import TRANSFER, check_key, money_mutation
from domain.ledger.models import Transfer, TransferKind
from domain.packages.models import FeatureKey
from domain.partners.models import Partner
from domain.storage.commands import CustomerStorageAllocate, PartnerStoragePurchase, StorageUsageRecord
from domain.storage.models import CustomerStorage, PartnerStorage
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff, sees_partner_figures

MB_PER_GB = 1024
PRICE_PER_GB = Decimal("8.00")  # USD, once per gigabyte added to the pool
MAX_PURCHASE_GB = 100_000
MAX_ALLOCATION_MB = 10_000_000
MAX_USED_MB = 1_000_000_000


# ---------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True)
class PoolState:
    """`Partner.storagePool`."""

    partner_id: int
    total_mb: int
    allocated_mb: int

    @property
    def available_mb(self) -> int:
        return self.total_mb - self.allocated_mb


@dataclass(frozen=True, slots=True)
class StorageState:
    """`Customer.storage`: the allocation, the use, and (for partner staff) what the pool has left."""

    customer_id: int
    allocated_mb: int
    package_mb: int
    used_mb: int
    used_reported_at: datetime | None
    partner_available_mb: int | None

    @property
    def percent_used(self) -> Decimal | None:
        """Used ÷ allocated, in percent (2 places; over 100 when the customer uses more than it was given); null
        without an allocation."""
        if self.allocated_mb <= 0:
            return None
        return (Decimal(self.used_mb) * 100 / Decimal(self.allocated_mb)).quantize(Decimal("0.01"))


async def pool_states(partner_ids: Iterable[int]) -> dict[int, PoolState]:
    """Pools of many partners in one query (DataLoader batch); a partner that never bought any has an empty one."""
    ids = list(set(partner_ids))
    rows = {row.partner_id: row for row in await PartnerStorage.filter(partner_id__in=ids)}
    return {
        pid: PoolState(pid, rows[pid].total_mb, rows[pid].allocated_mb) if pid in rows else PoolState(pid, 0, 0)
        for pid in ids
    }


async def storage_states(viewer: Viewer, customers: Iterable[Customer]) -> dict[int, StorageState]:
    """Storage of many (visible) customers in two queries (DataLoader batch). The pool's available megabytes are a
    partner figure: null for customer users."""
    listed = {c.id: c for c in customers}
    rows = {row.customer_id: row for row in await CustomerStorage.filter(customer_id__in=list(listed))}
    pools = await pool_states(c.partner_id for c in listed.values()) if sees_partner_figures(viewer) else {}
    out: dict[int, StorageState] = {}
    for cid, customer in listed.items():
        row = rows.get(cid)
        pool = pools.get(customer.partner_id)
        out[cid] = StorageState(
            cid,
            row.allocated_mb if row else 0,
            row.package_mb if row else 0,
            row.used_mb if row else 0,
            row.used_reported_at if row else None,
            pool.available_mb if pool else None,
        )
    return out


# ---------------------------------------------------------------- the pool


async def _lock_pool(partner_id: int) -> PartnerStorage:
    """The partner's pool row, locked (created empty on first use); call inside a transaction."""
    await PartnerStorage.bulk_create([PartnerStorage(partner_id=partner_id)], ignore_conflicts=True)
    return await PartnerStorage.select_for_update().get(partner_id=partner_id)


async def _lock_customer(customer: Customer) -> CustomerStorage:
    await CustomerStorage.bulk_create(
        [CustomerStorage(customer_id=customer.id, partner_id=customer.partner_id)], ignore_conflicts=True
    )
    return await CustomerStorage.select_for_update().get(customer_id=customer.id)


async def partner_storage_purchase(viewer: Viewer, command: PartnerStoragePurchase) -> Transfer:
    """Partner admins buy storage for their pool (platform admins for any partner): $8 per GB from the partner's USD
    account to the platform, in the ledger, and GB × 1,024 MB added to the pool, once per idempotency key."""
    require_partner_staff(viewer, admin=True)
    if viewer.is_platform_admin:
        if command.partner_id is None:
            raise DomainError.single(ErrorCode.REQUIRED, "Platform administrators choose the partner.", "partner_id")
        partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
    elif command.partner_id is not None and command.partner_id != viewer.partner_id:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Partner not found.", "partner_id")
    else:
        partner = await Partner.get(id=viewer.partner_id)
    v = Validator()
    gigabytes = command.gigabytes
    if not 1 <= gigabytes <= MAX_PURCHASE_GB:
        v.add("gigabytes", f"Buy between 1 and {MAX_PURCHASE_GB:,} GB at a time.")
    key = check_key(command.idempotency_key)
    v.raise_if_invalid()
    megabytes = gigabytes * MB_PER_GB
    price = PRICE_PER_GB * gigabytes

    async def perform() -> Transfer:
        pool = await _lock_pool(partner.id)
        transfer = await ledger.post(
            ledger.partner_usd(partner.id),
            ledger.platform_revenue(partner.id),
            price,
            TransferKind.STORAGE_PURCHASE,
            metadata={"partner_id": partner.id, "gigabytes": gigabytes, "megabytes": megabytes},
            error_field="gigabytes",
        )
        pool.total_mb += megabytes
        await pool.save(update_fields=["total_mb", "updated_at"])
        await record(
            viewer,
            AuditEventType.BILLING,
            "partner.storage_purchase",
            object_type="Partner",
            object_id=partner.id,
            partner_id=partner.id,
            details={
                "gigabytes": gigabytes,
                "price": str(price),
                "pool_total_mb": pool.total_mb,
                "pool_available_mb": pool.total_mb - pool.allocated_mb,
                "transfer_id": transfer.id,
            },
        )
        return transfer

    request: JsonObject = {"partner_id": partner.id, "gigabytes": gigabytes}
    return await money_mutation(viewer, "partnerStoragePurchase", key, request, perform, TRANSFER)


# ---------------------------------------------------------------- allocations


async def _move(pool: PartnerStorage, row: CustomerStorage, allocated_mb: int, field: str) -> int:
    """Sets the customer's allocation to `allocated_mb`, moving the difference from or to the pool (both rows locked
    by the caller); returns the difference. POOL_EXHAUSTED before anything changes when the pool is short."""
    delta = allocated_mb - row.allocated_mb
    if delta > pool.total_mb - pool.allocated_mb:
        available = pool.total_mb - pool.allocated_mb
        message = f"The partner's storage pool has {available:,} MB left; buy more storage first."
        raise DomainError.single(ErrorCode.POOL_EXHAUSTED, message, field)
    if delta:
        pool.allocated_mb += delta
        row.allocated_mb = allocated_mb
        row.package_mb = min(row.package_mb, allocated_mb)
        await pool.save(update_fields=["allocated_mb", "updated_at"])
        await row.save(update_fields=["allocated_mb", "package_mb", "updated_at"])
    return delta


async def customer_storage_allocate(viewer: Viewer, command: CustomerStorageAllocate) -> StorageState:
    """Partner admins (and platform admins) set a customer's allocation to `megabytes`, the total: a retry changes
    nothing. Refused whole: POOL_EXHAUSTED when the pool is short, INVALID below what the customer uses,
    NOT_ELIGIBLE when raising it without the knowledge base in the package in force."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_partner_staff(viewer, admin=True)
    megabytes = command.megabytes
    if not 0 <= megabytes <= MAX_ALLOCATION_MB:
        raise DomainError.single(ErrorCode.INVALID, f"Allocate between 0 and {MAX_ALLOCATION_MB:,} MB.", "megabytes")
    async with in_transaction():
        pool = await _lock_pool(customer.partner_id)
        row = await _lock_customer(customer)
        before = row.allocated_mb
        if megabytes < row.used_mb:
            message = f"The customer uses {row.used_mb:,} MB: allocate at least that much."
            raise DomainError.single(ErrorCode.INVALID, message, "megabytes")
        if megabytes > before:
            missing = eligibility.missing_message(
                await eligibility.package_in_force(customer.id), FeatureKey.KNOWLEDGE_BASE
            )
            if missing:
                raise DomainError.single(ErrorCode.NOT_ELIGIBLE, missing, "megabytes")
        delta = await _move(pool, row, megabytes, "megabytes")
        if delta:
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "customer.storage_allocate",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={
                    "changes": {"allocated_mb": {"before": before, "after": megabytes}},
                    "pool_available_mb": pool.total_mb - pool.allocated_mb,
                },
            )
    return (await storage_states(viewer, [customer]))[customer.id]


async def apply_package_storage(customer: Customer, package_mb: int) -> int:
    """At assignment (inside its transaction): the part of the allocation the previous package gave is replaced by
    this package's `package_mb` (never below what the customer uses), the difference moved with the pool
    (POOL_EXHAUSTED refuses the assignment). Returns the megabytes taken from the pool (negative: given back).

    The caller holds the customer's toggles lock, which every assignment and expiry takes first, so nobody else
    raises `package_mb` meanwhile: a package without storage after one without storage leaves the pool unlocked."""
    if package_mb == 0:
        current = await CustomerStorage.get_or_none(customer_id=customer.id)
        if current is None or current.package_mb == 0:
            return 0
    pool = await _lock_pool(customer.partner_id)
    row = await _lock_customer(customer)
    target = max(row.allocated_mb - row.package_mb + package_mb, row.used_mb)
    delta = await _move(pool, row, target, "package_id")
    row.package_mb = min(package_mb, row.allocated_mb)
    await row.save(update_fields=["package_mb", "updated_at"])
    return delta


async def release_package_storage(customer: Customer) -> int:
    """When the package ends (inside that transaction): what it gave goes back to the pool, as far as the customer's
    use allows. Returns the megabytes given back."""
    return -await apply_package_storage(customer, 0)


async def forget_customer_storage(customer: Customer) -> int:
    """When a customer is deleted (inside that transaction): its whole allocation goes back to the pool and its
    storage row goes. Returns the megabytes given back."""
    pool = await _lock_pool(customer.partner_id)
    row = await CustomerStorage.select_for_update().get_or_none(customer_id=customer.id)
    if row is None:
        return 0
    pool.allocated_mb -= row.allocated_mb
    await pool.save(update_fields=["allocated_mb", "updated_at"])
    await CustomerStorage.filter(customer_id=customer.id).delete()
    return row.allocated_mb


# ---------------------------------------------------------------- use


async def storage_usage_record(viewer: Viewer, command: StorageUsageRecord) -> StorageState:
    """The platform reports what a customer's knowledge base uses: an API key of the customer (WRITE), its partner's
    staff or a platform admin. Use beyond the allocation is metered daily as STORAGE_MB usage."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    if viewer.is_customer_user and viewer.api_key_id is None:
        raise forbidden("Storage use is reported by the platform (an API key) or by partner staff.")
    used = command.used_mb
    if not 0 <= used <= MAX_USED_MB:
        raise DomainError.single(ErrorCode.INVALID, f"Report between 0 and {MAX_USED_MB:,} MB.", "used_mb")
    async with in_transaction():
        row = await _lock_customer(customer)
        before = row.used_mb
        row.used_mb, row.used_reported_at = used, datetime.now(UTC)
        await row.save(update_fields=["used_mb", "used_reported_at", "updated_at"])
        if before != used:
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "customer.storage_usage",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={"changes": {"used_mb": {"before": before, "after": used}}},
            )
    return (await storage_states(viewer, [customer]))[customer.id]
