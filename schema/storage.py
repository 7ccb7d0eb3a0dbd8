"""Knowledge-base storage (seed 000): the partner's pool, a customer's allocation and use, buying and allocating."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from domain.storage import services
from domain.storage.commands import CustomerStorageAllocate, PartnerStoragePurchase, StorageUsageRecord
from domain.storage.services import PoolState, StorageState
from resolvers.commands import perform
from schema.common import Info
from schema.errors import FeatureError
from schema.nodes import maybe_view, shows

if TYPE_CHECKING:
    from schema.billing import LedgerTransfer
    from schema.customers import Customer
    from schema.partners import Partner


@shows(StorageState)
@strawberry.type(description="A customer's knowledge-base storage: its allocation from the partner's pool and its use.")
class Storage:
    allocated_mb: int = strawberry.field(description="Megabytes allocated from the partner's pool.")
    package_mb: int = strawberry.field(description="Of `allocatedMb`, what the package in force gave.")
    used_mb: int = strawberry.field(description="Megabytes in use, as the platform last reported them.")
    used_reported_at: datetime | None
    percent_used: Decimal | None = strawberry.field(
        description="Used ÷ allocated in percent (over 100 when it uses more; the excess is metered as STORAGE_MB "
        "usage); null without an allocation."
    )
    partner_available_mb: int | None = strawberry.field(
        description="What the partner's pool has left to allocate; null for the customer's own users."
    )

    @classmethod
    def of(cls, state: StorageState) -> Storage:
        return cls(
            allocated_mb=state.allocated_mb,
            package_mb=state.package_mb,
            used_mb=state.used_mb,
            used_reported_at=state.used_reported_at,
            percent_used=state.percent_used,
            partner_available_mb=state.partner_available_mb,
        )


@shows(PoolState)
@strawberry.type(description="A partner's storage pool: bought ($8/GB), allocated to customers, left.")
class StoragePool:
    total_mb: int
    allocated_mb: int
    available_mb: int

    @classmethod
    def of(cls, state: PoolState) -> StoragePool:
        return cls(total_mb=state.total_mb, allocated_mb=state.allocated_mb, available_mb=state.available_mb)


@strawberry.input
class PartnerStoragePurchaseInput:
    gigabytes: int = strawberry.field(description="Whole gigabytes (1 GB = 1,024 MB), $8 each.")
    idempotency_key: str = strawberry.field(description="A repeat with the same key returns the first outcome.")
    partner_id: strawberry.ID | None = strawberry.field(default=None, description="Platform admins only.")


@strawberry.type
class PartnerStoragePurchasePayload:
    transfer: Annotated[LedgerTransfer, strawberry.lazy("schema.billing")] | None = strawberry.field(
        description="The charge: the partner's USD account to the platform."
    )
    errors: list[FeatureError]
    partner_id: strawberry.Private[int | None] = None

    @strawberry.field
    async def partner(self, info: Info) -> Annotated[Partner, strawberry.lazy("schema.partners")] | None:
        return maybe_view(await info.context.loaders.partner_by_id.load(self.partner_id)) if self.partner_id else None

    @strawberry.field
    async def storage_pool(self, info: Info) -> StoragePool | None:
        if not self.partner_id:
            return None
        return StoragePool.of(await info.context.loaders.storage_pool_by_partner.load(self.partner_id))


@strawberry.input
class CustomerStorageAllocateInput:
    customer_id: strawberry.ID
    megabytes: int = strawberry.field(description="The customer's whole allocation (a total: a retry changes nothing).")


@strawberry.input
class StorageUsageRecordInput:
    customer_id: strawberry.ID
    used_mb: int = strawberry.field(description="Megabytes the customer's knowledge base uses now.")


@strawberry.type
class StoragePayload:
    storage: Storage | None
    errors: list[FeatureError]
    customer_id: strawberry.Private[int | None] = None

    @strawberry.field
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        return (
            maybe_view(await info.context.loaders.customer_by_id.load(self.customer_id)) if self.customer_id else None
        )


CustomerStorageAllocatePayload = strawberry.type(type("CustomerStorageAllocatePayload", (StoragePayload,), {}))
StorageUsageRecordPayload = strawberry.type(type("StorageUsageRecordPayload", (StoragePayload,), {}))


@strawberry.type
class StorageMutations:
    @strawberry.mutation(
        description="Partner admins: buys storage for the partner's pool at $8/GB, charged to the partner's USD "
        "account in the ledger."
    )
    async def partner_storage_purchase(
        self, info: Info, input: PartnerStoragePurchaseInput
    ) -> PartnerStoragePurchasePayload:
        outcome = await perform(info.context, services.partner_storage_purchase, input, PartnerStoragePurchase)
        transfer = outcome.value
        partner_id = transfer.metadata.get("partner_id") if transfer else None
        return PartnerStoragePurchasePayload(
            transfer=maybe_view(transfer),
            errors=FeatureError.list(outcome.errors),
            partner_id=partner_id if isinstance(partner_id, int) else None,
        )

    @strawberry.mutation(
        description="Partner admins: sets a customer's storage allocation (the total), moving the difference between "
        "the pool and the customer (POOL_EXHAUSTED; never below what it uses)."
    )
    async def customer_storage_allocate(
        self, info: Info, input: CustomerStorageAllocateInput
    ) -> CustomerStorageAllocatePayload:  # type: ignore[valid-type]
        outcome = await perform(info.context, services.customer_storage_allocate, input, CustomerStorageAllocate)
        state = outcome.value
        return CustomerStorageAllocatePayload(
            storage=Storage.of(state) if state else None,
            errors=FeatureError.list(outcome.errors),
            customer_id=state.customer_id if state else None,
        )

    @strawberry.mutation(
        description="The platform (a customer's API key with WRITE) or partner staff: what the customer's knowledge "
        "base uses now; use beyond the allocation is metered daily as STORAGE_MB usage."
    )
    async def storage_usage_record(self, info: Info, input: StorageUsageRecordInput) -> StorageUsageRecordPayload:  # type: ignore[valid-type]
        outcome = await perform(info.context, services.storage_usage_record, input, StorageUsageRecord)
        state = outcome.value
        return StorageUsageRecordPayload(
            storage=Storage.of(state) if state else None,
            errors=FeatureError.list(outcome.errors),
            customer_id=state.customer_id if state else None,
        )
