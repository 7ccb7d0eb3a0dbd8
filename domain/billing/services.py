"""AI credits (partner pool → customer credits with expiring grants), USD wallets, refill requests and billing
preferences (seeds 000, 001, 002). Every balance change is a ledger transfer in one transaction, audited as BILLING.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tortoise import connections
from tortoise.expressions import F, Q, Subquery
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, Role
from domain.alerts import services as alerts
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.billing.models import (
    BillingMode,
    BillingPreferences,
    CreditGrant,
    CustomerCredits,
    GrantSource,
    PartnerPool,
    RefillRequest,
    RefillRequestStatus,
)
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode
from domain.events.services import CREDITS_CHANGED, REFILL_REQUESTED, WALLET_CHANGED, emit
from domain.ledger import services as ledger
from domain.ledger.idempotency import check_key, run_idempotent
from domain.ledger.models import Currency, LedgerAccount, Transfer, TransferKind
from domain.partners.models import Partner
from domain.viewer import Viewer
from domain.visibility import get_visible, require_customer_manager, require_partner_staff, require_platform_admin

ZERO = Decimal(0)
LOW_BALANCE_RATIO = Decimal("0.30")
CRITICAL_RATIO = Decimal("0.10")


def now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True)
class CreditState:
    customer_id: int
    available: Decimal
    used: Decimal
    assigned: Decimal
    expired: Decimal
    low_threshold: Decimal | None

    @property
    def health(self) -> str:
        """CRITICAL below 10% of assigned, LOW below the customer's low-credit threshold, else OK."""
        if self.assigned > ZERO and self.available < self.assigned * CRITICAL_RATIO:
            return "CRITICAL"
        if self.low_threshold is not None and self.available < self.low_threshold:
            return "LOW"
        return "OK"


async def credit_states(customers: list[Customer]) -> dict[int, CreditState]:
    """Credit meters of many customers in three queries (DataLoader batch)."""
    ids = [c.id for c in customers]
    refs = {c.id: ledger.customer_credits(c.id, c.partner_id) for c in customers}
    balances = await ledger.balances_of(list(refs.values()))
    counters = {row.customer_id: row for row in await CustomerCredits.filter(customer_id__in=ids)}
    prefs = {row.customer_id: row for row in await BillingPreferences.filter(customer_id__in=ids)}
    out = {}
    for c in customers:
        counter, pref = counters.get(c.id), prefs.get(c.id)
        out[c.id] = CreditState(
            customer_id=c.id,
            available=balances[refs[c.id].key],
            used=counter.used if counter else ZERO,
            assigned=counter.assigned if counter else ZERO,
            expired=counter.expired if counter else ZERO,
            low_threshold=pref.low_credit_threshold if pref else None,
        )
    return out


@dataclass(frozen=True, slots=True)
class PoolState:
    partner_id: int
    available: Decimal
    assigned: Decimal


async def pool_states(partner_ids: list[int]) -> dict[int, PoolState]:
    refs = {pid: ledger.partner_pool(pid) for pid in partner_ids}
    balances = await ledger.balances_of(list(refs.values()))
    assigned = {row.partner_id: row.assigned for row in await PartnerPool.filter(partner_id__in=partner_ids)}
    return {pid: PoolState(pid, balances[refs[pid].key], assigned.get(pid, ZERO)) for pid in partner_ids}


async def preferences_of(customer_ids: list[int]) -> dict[int, BillingPreferences]:
    """Stored preferences, or unsaved defaults for customers that never changed them."""
    found = {row.customer_id: row for row in await BillingPreferences.filter(customer_id__in=customer_ids)}
    return {cid: found.get(cid) or BillingPreferences(customer_id=cid) for cid in customer_ids}


async def _sums_by(queryset: Any, group: str, field: str) -> dict[Any, Decimal]:
    """Σ `field` per `group`: SQL on PostgreSQL (exact NUMERIC), Python on SQLite (whose SUM is inexact)."""
    totals: dict[Any, Decimal] = {}
    if connections.get("default").capabilities.dialect == "postgres":
        rows = await queryset.annotate(total=Sum(field)).group_by(group).values(group, "total")
        return {row[group]: Decimal(row["total"] or 0) for row in rows}
    for key, value in await queryset.values_list(group, field):
        totals[key] = totals.get(key, ZERO) + Decimal(value)
    return totals


@dataclass(frozen=True, slots=True)
class WalletState:
    customer_id: int
    balance: Decimal
    refill_amount: Decimal | None
    refill_threshold: Decimal | None
    average_daily_spend: Decimal | None
    refill_request: RefillRequest | None

    @property
    def estimated_days_until_refill(self) -> Decimal | None:
        """(balance − threshold) ÷ trailing 7-day average daily spend; None without spend or threshold."""
        if not self.average_daily_spend or self.refill_threshold is None:
            return None
        days = (self.balance - self.refill_threshold) / self.average_daily_spend
        return max(days, ZERO).quantize(Decimal("0.1"))


async def wallet_states(customers: list[Customer], at: datetime | None = None) -> dict[int, WalletState]:
    """Wallets of many customers in four queries (DataLoader batch)."""
    ids = [c.id for c in customers]
    refs = {c.id: ledger.customer_wallet(c.id, c.partner_id) for c in customers}
    prefs = await preferences_of(ids)
    accounts = {
        a.key: a
        for a in await LedgerAccount.filter(key__in=[r.key for r in refs.values()]).only("id", "key", "balance")
    }
    since = (at or now()) - timedelta(days=7)
    account_ids = [a.id for a in accounts.values()]
    spend = (
        await _sums_by(
            Transfer.filter(debit_account_id__in=account_ids, kind=TransferKind.USAGE_CHARGE, created_at__gte=since),
            "debit_account_id",
            "amount",
        )
        if account_ids
        else {}
    )
    requests = {r.customer_id: r for r in await RefillRequest.filter(open_customer_id__in=ids)}
    out = {}
    for c in customers:
        account = accounts.get(refs[c.id].key)
        week = spend.get(account.id, ZERO) if account else ZERO
        out[c.id] = WalletState(
            c.id,
            account.balance if account else ZERO,
            prefs[c.id].refill_amount,
            prefs[c.id].refill_threshold,
            week / 7 if week > ZERO else None,
            requests.get(c.id),
        )
    return out


async def wallet_state(customer: Customer, at: datetime | None = None) -> WalletState:
    return (await wallet_states([customer], at))[customer.id]


def refills_of(customer: Customer) -> Any:
    """Refill transfers into the customer's wallet (a queryset; newest first when paginated)."""
    ref = ledger.customer_wallet(customer.id, customer.partner_id)
    return Transfer.filter(
        credit_account_id__in=Subquery(LedgerAccount.filter(key=ref.key).values("id")), kind=TransferKind.WALLET_REFILL
    )


# ---------------------------------------------------------------- credits


async def _credits_customer(viewer: Viewer, customer_id: int) -> Customer:
    require_partner_staff(viewer)
    return await get_visible(Customer, viewer, customer_id, field="customer_id")


def _transfer_response(transfer: Transfer) -> dict[str, Any]:
    return {"transfer_id": transfer.id}


async def partner_credits_add(
    viewer: Viewer, partner_id: int, credits: Any, note: str | None, idempotency_key: str
) -> dict[str, Any]:
    """Platform admins fund a partner's credit pool from outside."""
    require_platform_admin(viewer)
    partner = await get_visible(Partner, viewer, partner_id, field="partner_id")
    v = Validator()
    amount = parse_amount(v, "credits", credits)
    clean_note = v.text("note", note, max_length=500) or ""
    key = check_key(idempotency_key)
    v.raise_if_invalid()
    assert amount is not None

    async def perform() -> dict[str, Any]:
        transfer = await ledger.post(
            ledger.external_funding(Currency.CREDITS, partner.id),
            ledger.partner_pool(partner.id),
            amount,
            TransferKind.PARTNER_CREDITS_ADD,
            metadata={"note": clean_note},
            error_field="credits",
        )
        await record(
            viewer,
            AuditEventType.BILLING,
            "partner.credits_add",
            object_type="Partner",
            object_id=partner.id,
            partner_id=partner.id,
            details={
                "credits": str(amount),
                "pool_balance_after": str(transfer.credit_balance_after),
                "note": clean_note,
                "transfer_id": transfer.id,
            },
        )
        return _transfer_response(transfer)

    request = {"partner_id": partner.id, "credits": str(amount), "note": clean_note}
    return await run_idempotent(viewer, "partnerCreditsAdd", key, request, perform)


async def grant_credits(
    customer: Customer, amount: Decimal, source: GrantSource, transfer: Transfer, expires_at: datetime | None = None
) -> CreditGrant:
    """Records a lot of credits that arrived by `transfer` (call in its transaction)."""
    await CustomerCredits.bulk_create([CustomerCredits(customer_id=customer.id)], ignore_conflicts=True)
    await CustomerCredits.filter(customer_id=customer.id).update(assigned=F("assigned") + amount)
    return await CreditGrant.create(
        customer_id=customer.id,
        source=source,
        amount=amount,
        remaining=amount,
        expires_at=expires_at,
        transfer_id=transfer.id,
    )


def _burn_order() -> list[str]:
    # earliest expiry first (grants without expiry last), then oldest
    return ["expires_at", "id"]


async def _take_from_grants(customer_id: int, amount: Decimal, *, newest_first: bool, at: datetime) -> None:
    """Reduces live grants by `amount` (the account lock already serialises this customer)."""
    grants = await CreditGrant.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=at), customer_id=customer_id, remaining__gt=0
    ).select_for_update()
    far_future = datetime.max.replace(tzinfo=UTC)
    grants.sort(key=lambda g: (g.expires_at or far_future, g.id), reverse=newest_first)
    left = amount
    for grant in grants:
        if left <= ZERO:
            break
        take = min(grant.remaining, left)
        await CreditGrant.filter(id=grant.id).update(remaining=F("remaining") - take)
        left -= take
    if left > ZERO:
        raise DomainError.single(ErrorCode.INSUFFICIENT_CREDITS, "The customer does not have enough live credits.")


async def _move_credits(
    viewer: Viewer, customer_id: int, credits: Any, idempotency_key: str, *, reclaim: bool
) -> dict[str, Any]:
    """Pool → customer (recharge) or customer → pool (reclaim), with the grant and counter bookkeeping."""
    customer = await _credits_customer(viewer, customer_id)
    v = Validator()
    amount = parse_amount(v, "credits", credits)
    key = check_key(idempotency_key)
    v.raise_if_invalid()
    assert amount is not None
    pool = ledger.partner_pool(customer.partner_id)
    account = ledger.customer_credits(customer.id, customer.partner_id)
    signed = -amount if reclaim else amount

    async def perform() -> dict[str, Any]:
        if reclaim:
            transfer = await ledger.post(account, pool, amount, TransferKind.CREDITS_RECLAIM, error_field="credits")
            await _take_from_grants(customer.id, amount, newest_first=True, at=now())
            await CustomerCredits.filter(customer_id=customer.id).update(assigned=F("assigned") - amount)
            customer_after, pool_after = transfer.debit_balance_after, transfer.credit_balance_after
        else:
            transfer = await ledger.post(pool, account, amount, TransferKind.CREDITS_RECHARGE, error_field="credits")
            await grant_credits(customer, amount, GrantSource.RECHARGE, transfer)
            customer_after, pool_after = transfer.credit_balance_after, transfer.debit_balance_after
        await credits_changed(customer, customer_after)
        await PartnerPool.bulk_create([PartnerPool(partner_id=customer.partner_id)], ignore_conflicts=True)
        await PartnerPool.filter(partner_id=customer.partner_id).update(assigned=F("assigned") + signed)
        await record(
            viewer,
            AuditEventType.BILLING,
            "customer.credits_reclaim" if reclaim else "customer.credits_recharge",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={
                "credits": str(amount),
                "customer_balance_after": str(customer_after),
                "pool_balance_after": str(pool_after),
                "transfer_id": transfer.id,
            },
        )
        return _transfer_response(transfer)

    operation = "customerCreditsReclaim" if reclaim else "customerCreditsRecharge"
    return await run_idempotent(viewer, operation, key, {"customer_id": customer.id, "credits": str(amount)}, perform)


async def customer_credits_recharge(
    viewer: Viewer, customer_id: int, credits: Any, idempotency_key: str
) -> dict[str, Any]:
    """Moves credits from the partner's pool to the customer (POOL_EXHAUSTED when the pool is short)."""
    return await _move_credits(viewer, customer_id, credits, idempotency_key, reclaim=False)


async def customer_credits_reclaim(
    viewer: Viewer, customer_id: int, credits: Any, idempotency_key: str
) -> dict[str, Any]:
    """Returns unused credits to the partner's pool; never more than the customer has available."""
    return await _move_credits(viewer, customer_id, credits, idempotency_key, reclaim=True)


async def grant_package_credits(
    viewer: Viewer, customer: Customer, amount: Decimal, expires_at: datetime | None, metadata: dict[str, Any]
) -> CreditGrant:
    """Pool → customer credits as an expiring PACKAGE grant (call inside the caller's transaction; the caller owns
    idempotency). POOL_EXHAUSTED when the partner's pool is short, before anything is written."""
    transfer = await ledger.post(
        ledger.partner_pool(customer.partner_id),
        ledger.customer_credits(customer.id, customer.partner_id),
        amount,
        TransferKind.CREDITS_GRANT,
        metadata=metadata,
    )
    grant = await grant_credits(customer, amount, GrantSource.PACKAGE, transfer, expires_at)
    await credits_changed(customer, transfer.credit_balance_after)
    await PartnerPool.bulk_create([PartnerPool(partner_id=customer.partner_id)], ignore_conflicts=True)
    await PartnerPool.filter(partner_id=customer.partner_id).update(assigned=F("assigned") + amount)
    await record(
        viewer,
        AuditEventType.BILLING,
        "customer.credits_grant",
        object_type="Customer",
        object_id=customer.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={
            **metadata,
            "credits": str(amount),
            "expires_at": expires_at.isoformat() if expires_at else None,
            "customer_balance_after": str(transfer.credit_balance_after),
            "pool_balance_after": str(transfer.debit_balance_after),
            "transfer_id": transfer.id,
            "grant_id": grant.id,
        },
    )
    return grant


async def burn_credits(
    customer: Customer,
    amount: Decimal,
    metadata: dict[str, Any] | None = None,
    locked: Mapping[str, LedgerAccount] | None = None,
) -> Transfer:
    """Usage burns credits, earliest-expiring grant first (call inside a transaction; `locked`: the accounts, if
    the caller locked them already)."""
    transfer = await ledger.post(
        ledger.customer_credits(customer.id, customer.partner_id),
        ledger.revenue(Currency.CREDITS, customer.partner_id),
        amount,
        TransferKind.USAGE_CHARGE,
        metadata=metadata,
        locked=locked,
    )
    await _take_from_grants(customer.id, amount, newest_first=False, at=now())
    await CustomerCredits.filter(customer_id=customer.id).update(used=F("used") + amount)
    await credits_changed(customer, transfer.debit_balance_after)
    return transfer


async def credits_changed(customer: Customer, available: Decimal) -> None:
    """After any change to a customer's credits (in its transaction): low-credit alert state, live views."""
    await alerts.on_credit_balance(customer, available)
    await emit(CREDITS_CHANGED, customer_id=customer.id, partner_id=customer.partner_id)


async def wallet_changed(customer: Customer, balance: Decimal) -> None:
    """After any change to a customer's wallet (in its transaction): refill request, low-balance alert, views."""
    await open_refill_request_if_needed(customer, balance)
    await alerts.on_wallet_balance(customer, balance)
    await emit(WALLET_CHANGED, customer_id=customer.id, partner_id=customer.partner_id)


# ---------------------------------------------------------------- wallet


async def charge_wallet(
    customer: Customer,
    amount: Decimal,
    metadata: dict[str, Any] | None = None,
    locked: Mapping[str, LedgerAccount] | None = None,
) -> Transfer:
    """Usage debits the wallet; falling below the refill threshold opens the one refill request (in a transaction;
    `locked`: the accounts, if the caller locked them already)."""
    transfer = await ledger.post(
        ledger.customer_wallet(customer.id, customer.partner_id),
        ledger.revenue(Currency.USD, customer.partner_id),
        amount,
        TransferKind.USAGE_CHARGE,
        metadata=metadata,
        locked=locked,
    )
    await wallet_changed(customer, transfer.debit_balance_after)
    return transfer


async def open_refill_request_if_needed(customer: Customer, balance: Decimal) -> RefillRequest | None:
    prefs = (await preferences_of([customer.id]))[customer.id]
    if prefs.refill_threshold is None or balance >= prefs.refill_threshold:
        return None
    if await RefillRequest.filter(open_customer_id=customer.id).exists():
        return None
    request = await RefillRequest.create(
        customer_id=customer.id,
        open_customer_id=customer.id,
        requested_amount=prefs.refill_amount,
        balance_at_open=balance,
        threshold=prefs.refill_threshold,
    )
    await emit(REFILL_REQUESTED, customer_id=customer.id, partner_id=customer.partner_id, refill_request_id=request.id)
    await record(
        Viewer.system("billing"),
        AuditEventType.BILLING,
        "wallet.refill_requested",
        object_type="RefillRequest",
        object_id=request.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={
            "balance": str(balance),
            "threshold": str(prefs.refill_threshold),
            "requested_amount": str(prefs.refill_amount) if prefs.refill_amount is not None else None,
        },
    )
    return request


async def wallet_refill(
    viewer: Viewer, customer_id: int, amount: Any, reference: str | None, idempotency_key: str
) -> dict[str, Any]:
    """Records a manual refill (stage 1: the billing team takes the payment outside Partnerdesk)."""
    customer = await _credits_customer(viewer, customer_id)
    v = Validator()
    value = parse_amount(v, "amount", amount, places=2)
    clean_reference = v.text("reference", reference, max_length=200) or ""
    key = check_key(idempotency_key)
    v.raise_if_invalid()
    assert value is not None

    async def perform() -> dict[str, Any]:
        transfer = await ledger.post(
            ledger.external_funding(Currency.USD, customer.partner_id),
            ledger.customer_wallet(customer.id, customer.partner_id),
            value,
            TransferKind.WALLET_REFILL,
            metadata={"reference": clean_reference},
            error_field="amount",
        )
        closed = await RefillRequest.filter(open_customer_id=customer.id).update(
            open_customer_id=None,
            status=RefillRequestStatus.CLOSED,
            closed_at=now(),
            closed_by_transfer_id=transfer.id,
        )
        await wallet_changed(customer, transfer.credit_balance_after)
        await alerts.on_refill(customer, transfer.id, value, transfer.credit_balance_after)
        await record(
            viewer,
            AuditEventType.BILLING,
            "wallet.refill",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={
                "amount": str(value),
                "balance_after": str(transfer.credit_balance_after),
                "reference": clean_reference,
                "refill_request_closed": bool(closed),
                "transfer_id": transfer.id,
            },
        )
        return _transfer_response(transfer)

    return await run_idempotent(
        viewer,
        "walletRefill",
        key,
        {"customer_id": customer.id, "amount": str(value), "reference": clean_reference},
        perform,
    )


# ---------------------------------------------------------------- preferences

PREFERENCE_FIELDS = (
    "billing_mode",
    "primary_contact_user_id",
    "monthly_spending_cap",
    "cap_alert_at_80",
    "refill_amount",
    "refill_threshold",
    "low_balance_alert",
    "refill_processed_alert",
    "low_credit_threshold",
    "extra_alert_recipients",
)


def _snapshot(prefs: BillingPreferences) -> dict[str, Any]:
    return {
        f: (str(getattr(prefs, f)) if isinstance(getattr(prefs, f), Decimal) else getattr(prefs, f))
        for f in PREFERENCE_FIELDS
    }


async def _check_primary_contact(v: Validator, customer: Customer, user_id: int | None) -> None:
    if user_id is None:
        return
    is_admin = await Membership.filter(
        user_id=user_id, customer_id=customer.id, role=Role.CUSTOMER_ADMIN, user__is_active=True
    ).exists()
    if not is_admin or customer.status != CustomerStatus.ACTIVE:
        v.add(
            "primary_contact_user_id",
            "The primary billing contact must be an active admin of this customer. Invite or reactivate an admin "
            "first.",
        )


async def billing_preferences_update(viewer: Viewer, customer_id: int, data: dict[str, Any]) -> BillingPreferences:
    """Partial update of a customer's billing preferences; cap-reached and payment-failed alerts stay always on."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    v = Validator()
    updates: dict[str, Any] = {}
    if "billing_mode" in data:
        if data["billing_mode"] is None:
            v.add("billing_mode", "Choose a billing mode.", ErrorCode.REQUIRED)
        else:
            updates["billing_mode"] = BillingMode(data["billing_mode"])
    if "primary_contact_user_id" in data:
        await _check_primary_contact(v, customer, data["primary_contact_user_id"])
        updates["primary_contact_user_id"] = data["primary_contact_user_id"]
    for name in ("monthly_spending_cap", "refill_amount", "refill_threshold"):
        if name in data:
            updates[name] = (
                None
                if data[name] is None
                else parse_amount(v, name, data[name], places=2, allow_zero=name != "monthly_spending_cap")
            )
    if "low_credit_threshold" in data:
        updates["low_credit_threshold"] = (
            None
            if data["low_credit_threshold"] is None
            else parse_amount(v, "low_credit_threshold", data["low_credit_threshold"], allow_zero=True)
        )
    for name in ("cap_alert_at_80", "low_balance_alert", "refill_processed_alert"):
        if name in data:
            if not isinstance(data[name], bool):
                v.add(name, "Must be true or false.")
            else:
                updates[name] = data[name]
    if "extra_alert_recipients" in data:
        recipients = data["extra_alert_recipients"] or []
        if len(recipients) > 20:
            v.add("extra_alert_recipients", "At most 20 extra recipients.")
        cleaned = [v.email("extra_alert_recipients", r) for r in recipients[:20]]
        updates["extra_alert_recipients"] = sorted({c.lower() for c in cleaned if c})
    v.raise_if_invalid()

    async with in_transaction():
        await BillingPreferences.bulk_create([BillingPreferences(customer_id=customer.id)], ignore_conflicts=True)
        prefs = await BillingPreferences.select_for_update().get(customer_id=customer.id)
        before = _snapshot(prefs)
        for key, value in updates.items():
            setattr(prefs, key, value)
        # above the refill amount, refilling an empty wallet would leave it below the threshold, its request open
        if (
            prefs.refill_amount is not None
            and prefs.refill_threshold is not None
            and prefs.refill_threshold > prefs.refill_amount
        ):
            raise DomainError.single(
                ErrorCode.INVALID,
                "The refill threshold must not be above the refill amount.",
                "refill_threshold" if "refill_threshold" in updates else "refill_amount",
            )
        diff = changes(before, _snapshot(prefs))
        if diff:
            await prefs.save()
            await record(
                viewer,
                AuditEventType.BILLING,
                "billing_preferences.update",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={"changes": diff},
            )
            if "monthly_spending_cap" in diff:
                from domain.billing.cap import evaluate

                await evaluate(await Customer.select_for_update().get(id=customer.id), viewer)
            if "refill_threshold" in diff:
                balance = await ledger.balance_of(ledger.customer_wallet(customer.id, customer.partner_id))
                await open_refill_request_if_needed(customer, balance)
    return prefs


def low_balance_level(prefs: BillingPreferences) -> Decimal | None:
    """The wallet balance below which the optional low-balance alert fires: 30% of the refill amount."""
    return prefs.refill_amount * LOW_BALANCE_RATIO if prefs.refill_amount is not None else None


async def expire_grants(at: datetime | None = None) -> int:
    """Moves what is left of expired grants to the partner's EXPIRED account (one transaction per customer)."""
    moment = at or now()
    customer_ids = (
        await CreditGrant.filter(expires_at__lte=moment, remaining__gt=0)
        .distinct()
        .values_list("customer_id", flat=True)
    )
    expired = 0
    for customer_id in sorted(set(customer_ids)):
        customer = await Customer.get_or_none(id=customer_id)
        if customer is None:
            continue
        async with in_transaction():
            account = ledger.customer_credits(customer.id, customer.partner_id)
            await ledger.lock_accounts(account)
            grants = await CreditGrant.filter(
                customer_id=customer.id, expires_at__lte=moment, remaining__gt=0
            ).select_for_update()
            total = sum((g.remaining for g in grants), ZERO)
            if total <= ZERO:
                continue
            transfer = await ledger.post(
                account,
                ledger.expired_credits(customer.partner_id),
                total,
                TransferKind.CREDITS_EXPIRY,
                metadata={"grants": [g.id for g in grants]},
            )
            await CreditGrant.filter(id__in=[g.id for g in grants]).update(remaining=ZERO)
            await CustomerCredits.filter(customer_id=customer.id).update(expired=F("expired") + total)
            await credits_changed(customer, transfer.debit_balance_after)
            expired += len(grants)
    return expired
