"""AI credits (seeds 000, 002): partner pools funded from outside, customer credits held as grants that may expire,
recharged from and reclaimed to the pool, granted by packages, burned by usage, expired by a job. Every change is a
ledger transfer in one transaction, audited as BILLING; the mutations are idempotent (`money_mutation`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from domain.alerts import services as alerts
from domain.audit.models import AuditEvent, AuditEventType
from domain.audit.services import new_event, record
from domain.billing import store_pg
from domain.billing.commands import CustomerCreditsRecharge, CustomerCreditsReclaim, PartnerCreditsAdd
from domain.billing.models import BillingPreferences, CreditGrant, CustomerCredits, GrantSource, PartnerPool
from domain.common.json import JsonObject
from domain.common.rows import raw_sql, saved
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.events.services import CREDITS_CHANGED, CREDITS_RECHARGED, emit, take_wake
from domain.features.models import FeatureToggles
from domain.ledger import services as ledger
from domain.ledger.idempotency import (
    TRANSFER,
    check_key,
    claim_values,
    money_mutation,
    refuse,
    replay,
    request_hash,
    scoped_key,
)
from domain.ledger.models import Currency, LedgerAccount, Transfer, TransferKind
from domain.partners.models import Partner
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff, require_platform_admin

ZERO = Decimal(0)


async def staff_customer(viewer: Viewer, customer_id: int) -> Customer:
    """The customer whose credits or wallet partner staff (or platform admins) change."""
    require_partner_staff(viewer)
    return await get_visible(Customer, viewer, customer_id, field="customer_id")


def checked_amount(v: Validator, field: str, value: Decimal, *, places: int = 6) -> Decimal:
    """`parse_amount` of a required amount; ZERO stands in for a refused one, which `v` raises before it is used."""
    amount = parse_amount(v, field, value, places=places)
    return ZERO if amount is None else amount


async def partner_credits_add(viewer: Viewer, command: PartnerCreditsAdd) -> Transfer:
    """Platform admins fund a partner's credit pool from outside."""
    require_platform_admin(viewer)
    partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
    v = Validator()
    amount = checked_amount(v, "credits", command.credits)
    note = v.text("note", command.note, max_length=500) or ""
    key = check_key(command.idempotency_key)
    v.raise_if_invalid()

    async def perform() -> Transfer:
        transfer = await ledger.post(
            ledger.external_funding(Currency.CREDITS, partner.id),
            ledger.partner_pool(partner.id),
            amount,
            TransferKind.PARTNER_CREDITS_ADD,
            metadata={"note": note},
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
                "note": note,
                "transfer_id": transfer.id,
            },
        )
        return transfer

    request: JsonObject = {"partner_id": partner.id, "credits": str(amount), "note": note}
    return await money_mutation(viewer, "partnerCreditsAdd", key, request, perform, TRANSFER)


async def customer_credits_recharge(viewer: Viewer, command: CustomerCreditsRecharge) -> Transfer:
    """Moves credits from the partner's pool to the customer (POOL_EXHAUSTED when the pool is short)."""
    return await _move_credits(viewer, command.customer_id, command.credits, command.idempotency_key, reclaim=False)


async def customer_credits_reclaim(viewer: Viewer, command: CustomerCreditsReclaim) -> Transfer:
    """Returns unused credits to the partner's pool; never more than the customer has available."""
    return await _move_credits(viewer, command.customer_id, command.credits, command.idempotency_key, reclaim=True)


async def _move_credits(
    viewer: Viewer, customer_id: int, credits: Decimal, idempotency_key: str, *, reclaim: bool
) -> Transfer:
    """Pool → customer (recharge) or customer → pool (reclaim), with the grant and counter bookkeeping."""
    if not reclaim and raw_sql():
        return await _recharge_sql(viewer, customer_id, credits, idempotency_key)
    customer = await staff_customer(viewer, customer_id)
    v = Validator()
    amount = checked_amount(v, "credits", credits)
    key = check_key(idempotency_key)
    v.raise_if_invalid()
    pool = ledger.partner_pool(customer.partner_id)
    account = ledger.customer_credits(customer.id, customer.partner_id)

    async def perform() -> Transfer:
        if reclaim:
            transfer = await ledger.post(account, pool, amount, TransferKind.CREDITS_RECLAIM, error_field="credits")
            await _take_from_grants(customer.id, amount, newest_first=True, at=datetime.now(UTC))
            await CustomerCredits.filter(customer_id=customer.id).update(assigned=F("assigned") - amount)
            customer_after = transfer.debit_balance_after
        else:
            transfer = await ledger.post(pool, account, amount, TransferKind.CREDITS_RECHARGE, error_field="credits")
            await grant_credits(customer, amount, GrantSource.RECHARGE, transfer)
            customer_after = transfer.credit_balance_after
            await emit(
                CREDITS_RECHARGED,
                customer_id=customer.id,
                partner_id=customer.partner_id,
                **_recharged(transfer, amount),
            )
        await credits_changed(customer, customer_after)
        await _pool_assigned(customer.partner_id, -amount if reclaim else amount)
        await _moved_event(viewer, customer, transfer, amount, reclaim=reclaim).save()
        return transfer

    operation = "customerCreditsReclaim" if reclaim else "customerCreditsRecharge"
    # a recharge refuses (POOL_EXHAUSTED, LIMIT_EXCEEDED) before it writes anything: no savepoint needed; a reclaim
    # may find the live grants short after its transfer (INSUFFICIENT_CREDITS) and must undo it
    return await money_mutation(
        viewer, operation, key, _move_request(customer.id, amount), perform, TRANSFER, savepoint=reclaim
    )


RECHARGE = "customerCreditsRecharge"


def _move_request(customer_id: int, amount: Decimal) -> JsonObject:
    """What a recharge's or reclaim's idempotency key is bound to."""
    return {"customer_id": customer_id, "credits": str(amount)}


def _recharged(transfer: Transfer, amount: Decimal) -> JsonObject:
    """The payload of a recharge's `credits.recharged` outbox event."""
    return {
        "transfer_id": transfer.id,
        "credits": str(amount),
        "available_after": str(transfer.credit_balance_after),
    }


def _moved_event(
    viewer: Viewer, customer: Customer, transfer: Transfer, amount: Decimal, *, reclaim: bool
) -> AuditEvent:
    """The BILLING audit event of a recharge or reclaim, not saved yet."""
    customer_after, pool_after = (
        (transfer.debit_balance_after, transfer.credit_balance_after)
        if reclaim
        else (transfer.credit_balance_after, transfer.debit_balance_after)
    )
    return new_event(
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


async def _recharge_sql(viewer: Viewer, customer_id: int, credits: Decimal, idempotency_key: str) -> Transfer:
    """A recharge on PostgreSQL with the ORM path's rules and outcome (`_move_credits`, `money_mutation`), in one
    transaction of two statements (domain/billing/store_pg.py): the customer read as the viewer may see it with
    the key claimed, the pool and the customer's credits locked in id order, the preferences read and the
    transfer's id drawn; then, once the service has decided (the pool's shortfall refuses it, and the refusal is
    kept as the key's outcome), one statement writes the transfer and balances, the counters, the grant, the outbox
    events, the audit event and the outcome. The low-credit alert runs through `credit_checks` in between (no
    statement without a threshold)."""
    require_partner_staff(viewer)
    try:
        v = Validator()
        amount = checked_amount(v, "credits", credits)
        key = check_key(idempotency_key)
        v.raise_if_invalid()
    except DomainError:
        await staff_customer(viewer, customer_id)  # an unknown customer answers NOT_FOUND first, as on the ORM path
        raise
    return await ledger.with_accounts(lambda: _recharge_once(viewer, customer_id, amount, key))


async def _recharge_once(viewer: Viewer, customer_id: int, amount: Decimal, key: str) -> Transfer:
    now = datetime.now(UTC)
    scope_key = scoped_key(viewer, RECHARGE, key)
    digest = request_hash(RECHARGE, _move_request(customer_id, amount))
    failure: DomainError | None = None
    async with in_transaction():
        claim = claim_values(scope_key, RECHARGE, digest, now, postgres=True)
        opened = await store_pg.open_recharge(viewer, customer_id, claim)
        customer = opened.customer
        if customer is None:
            raise DomainError.single(ErrorCode.NOT_FOUND, "Customer not found.", "customer_id")
        if opened.claim is None:  # another request holds or held the key: wait for it, then replay its outcome
            response = await replay(scope_key, digest)
            return await Transfer.get(id=response[TRANSFER.field])
        assert opened.transfer_id is not None  # drawn whenever the claim is this request's
        pool = ledger.partner_pool(customer.partner_id)
        account = ledger.customer_credits(customer.id, customer.partner_id)
        locked = {row.key: row for row in opened.accounts}
        missing = [ref for ref in (pool, account) if ref.key not in locked]
        if missing:
            raise ledger.FirstUse(*missing)  # rolls back the claim and the locks
        postings = ledger.Postings(locked)
        try:
            planned = postings.add(pool, account, amount, TransferKind.CREDITS_RECHARGE, error_field="credits")
        except DomainError as exc:
            failure = exc
            await refuse(opened.claim, exc)
        else:
            transfer = saved(
                Transfer,
                id=opened.transfer_id,
                debit_account_id=planned.debit_account_id,
                credit_account_id=planned.credit_account_id,
                amount=planned.amount,
                currency=planned.currency,
                kind=planned.kind,
                debit_balance_after=planned.debit_balance_after,
                credit_balance_after=planned.credit_balance_after,
                idempotency_key=None,
                metadata=dict(planned.metadata),
                created_at=now,
            )
            # no stored preferences: the defaults (no low-credit threshold), as `preferences_of` gives them
            prefs = opened.prefs or BillingPreferences(customer_id=customer.id)
            await credit_checks(customer, transfer.credit_balance_after, prefs)
            await store_pg.write(
                store_pg.Recharge(
                    transfer=transfer,
                    customer_id=customer.id,
                    partner_id=customer.partner_id,
                    amount=amount,
                    grant_source=GrantSource.RECHARGE,
                    outbox=[
                        (CREDITS_RECHARGED, customer.id, customer.partner_id, _recharged(transfer, amount)),
                        (CREDITS_CHANGED, customer.id, customer.partner_id, {}),
                    ],
                    audit=_moved_event(viewer, customer, transfer, amount, reclaim=False),
                    claim=opened.claim,
                    outcome={TRANSFER.field: transfer.id},
                    wake=take_wake(),
                )
            )
            return transfer
    assert failure is not None  # every other way out of the block returned or raised
    raise failure  # only after commit, so the refusal is kept


async def _pool_assigned(partner_id: int, change: Decimal) -> None:
    """What the partner's customers hold from its pool, kept with every move (call in its transaction)."""
    await PartnerPool.bulk_create([PartnerPool(partner_id=partner_id)], ignore_conflicts=True)
    await PartnerPool.filter(partner_id=partner_id).update(assigned=F("assigned") + change)


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


async def _take_from_grants(customer_id: int, amount: Decimal, *, newest_first: bool, at: datetime) -> None:
    """Reduces live grants by `amount` (the account lock already serialises this customer): earliest expiry first
    (grants without expiry last), then oldest; reversed for a reclaim."""
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


async def grant_package_credits(
    viewer: Viewer, customer: Customer, amount: Decimal, expires_at: datetime | None, metadata: JsonObject
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
    await _pool_assigned(customer.partner_id, amount)
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
    metadata: JsonObject | None = None,
    locked: Mapping[str, LedgerAccount] | None = None,
    prefs: BillingPreferences | None = None,
    toggles: FeatureToggles | None = None,
) -> Transfer:
    """Usage burns credits, earliest-expiring grant first (call inside a transaction; `locked`: the accounts, if
    the caller locked them already; `prefs`, `toggles`: the customer's, if read already)."""
    transfer = await ledger.post(
        ledger.customer_credits(customer.id, customer.partner_id),
        ledger.revenue(Currency.CREDITS, customer.partner_id, customer.id),
        amount,
        TransferKind.USAGE_CHARGE,
        metadata=metadata,
        locked=locked,
    )
    await _take_from_grants(customer.id, amount, newest_first=False, at=datetime.now(UTC))
    await CustomerCredits.filter(customer_id=customer.id).update(used=F("used") + amount)
    await credits_changed(customer, transfer.debit_balance_after, prefs, toggles)
    return transfer


async def credits_changed(
    customer: Customer,
    available: Decimal,
    prefs: BillingPreferences | None = None,
    toggles: FeatureToggles | None = None,
) -> None:
    """After any change to a customer's credits (in its transaction): low-credit alert state, live views."""
    await credit_checks(customer, available, prefs, toggles)
    await emit(CREDITS_CHANGED, customer_id=customer.id, partner_id=customer.partner_id)


async def credit_checks(
    customer: Customer,
    available: Decimal,
    prefs: BillingPreferences | None = None,
    toggles: FeatureToggles | None = None,
) -> None:
    """`credits_changed` but for announcing the change (`credits.changed`), which the metering path on PostgreSQL
    writes with the rest of its batch: the low-credit alert (no statement without a low-credit threshold)."""
    await alerts.on_credit_balance(customer, available, prefs, toggles)


async def expire_grants(at: datetime | None = None) -> int:
    """Moves what is left of expired grants to the partner's EXPIRED account (one transaction per customer)."""
    moment = at or datetime.now(UTC)
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
            expired += len(await expire_customer_grants(customer, moment))
    return expired


async def expire_customer_grants(customer: Customer, moment: datetime) -> list[CreditGrant]:
    """Expires what is left of the customer's grants due by `moment` (call inside a transaction; the credits
    account is locked first, so burns and expiries of one customer take turns). Returns the grants expired."""
    account = ledger.customer_credits(customer.id, customer.partner_id)
    await ledger.lock_accounts(account)
    grants = await CreditGrant.filter(
        customer_id=customer.id, expires_at__lte=moment, remaining__gt=0
    ).select_for_update()
    total = sum((g.remaining for g in grants), ZERO)
    if total <= ZERO:
        return []
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
    return list(grants)
