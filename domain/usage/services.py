"""Metering: rate and charge usage events in batches, pre-authorize with holds, and read usage back.

Both `usageRecord` (GraphQL) and `POST /v1/usage/events` call `record_usage`. A batch is one transaction with a
fixed number of statements per customer: claim the idempotency keys (duplicates drop out here), settle each
customer's events against credits, wallet or invoice in order, insert the events, add to the daily rollups and the
monthly spend, consume holds, and apply the spending cap.

What one event may carry is bounded so that no value can fail a batch or poison a later read: a quantity per
event and per customer and unit type in one batch (`QUANTITY_LIMITS`, `BATCH_FACTOR`), text without NUL or
unpaired surrogates, a timestamp that exists in UTC, and metadata of bounded depth, size and numbers. A customer
whose ledger accounts would pass their limit has its events of that batch refused (LIMIT_EXCEEDED) and the others
go through.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing import services as billing
from domain.billing.cap import current_month, evaluate, spent_this_month
from domain.billing.models import BillingMode, BillingPreferences
from domain.common.validation import Validator, json_problem, parse_amount, text_problem
from domain.customers.models import Customer, ServiceState
from domain.errors import DomainError, ErrorCode
from domain.features.services import toggles_of
from domain.ledger import services as ledger
from domain.ledger.idempotency import check_key, run_idempotent
from domain.ledger.models import Currency, LedgerAccount, TransferKind
from domain.usage import store
from domain.usage.models import Funding, HoldStatus, PhoneNumber, UnitType, UsageEvent, UsageHold, UsageRollup
from domain.usage.rating import RateBook, rate_book
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff, restrict

MAX_BATCH = 1000
MAX_AGE = timedelta(days=35)
CLOCK_SKEW = timedelta(minutes=5)
HOLD_TTL = timedelta(minutes=15)
ZERO = Decimal(0)
MICRO = Decimal("0.000001")
METADATA_MAX_DEPTH = 8
METADATA_MAX_BYTES = 4096
# The most of a unit type one event may report: far above a real call, campaign, mailbox or number plan, so an
# absurd quantity is refused where it arrives instead of filling the partner's revenue. One batch may carry
# BATCH_FACTOR times as much for one customer.
QUANTITY_LIMITS: dict[UnitType, Decimal] = {
    UnitType.VOICE_MINUTES: Decimal(10_000),
    UnitType.SMS_SEGMENTS: Decimal(100_000),
    UnitType.CHAT_TURNS: Decimal(100_000),
    UnitType.EMAILS: Decimal(1_000_000),
    UnitType.PHONE_NUMBER_MONTHS: Decimal(1_000),
    UnitType.STORAGE_MB: Decimal(10_000_000),  # 10 TB-months
}
BATCH_FACTOR = 100
# `UsageEventIn.hold_id` of a holdId that was sent but names no hold (not a UsageHold id): refused like a missing hold
UNKNOWN_HOLD = 0


@dataclass(slots=True)
class UsageEventIn:
    """One event as sent; fields are checked by `record_usage`, which reports failures per event. `hold_id`: None
    when no hold was named, UNKNOWN_HOLD when the id sent is not a hold's."""

    idempotency_key: Any
    customer_id: int | None
    unit_type: Any
    quantity: Any
    occurred_at: Any
    case_type: Any = None
    hold_id: int | None = None
    metadata: Any = None


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    code: ErrorCode
    message: str
    field: str | None = None


@dataclass(slots=True)
class RecordResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(slots=True)
class _Event:
    index: int
    key: str
    customer_id: int
    unit_type: UnitType
    quantity: Decimal
    occurred_at: datetime
    case_type: str
    hold_id: int | None
    metadata: dict[str, Any]


def require_recorder(viewer: Viewer) -> None:
    """The platform's metering pipeline (platform admins) and partner staff may report usage, and so may a
    customer's own API key for that customer (restrict() keeps it there; its WRITE permission is checked with
    every other operation's in domain.access.policy)."""
    if viewer.api_key_id is not None and viewer.customer_id is not None:
        return
    require_partner_staff(viewer)


def _quantity(raw: Any, memo: dict[Any, Decimal | str]) -> Decimal | str:
    """`parse_amount` of a quantity, or its error message; memoised per batch, where quantities repeat."""
    try:
        key = (type(raw), raw)
        hit = memo.get(key)
    except TypeError:  # unhashable (a list or an object sent as quantity)
        key, hit = None, None
    if hit is not None:
        return hit
    v = Validator()
    amount = parse_amount(v, "quantity", raw)
    parsed: Decimal | str = amount if amount is not None else v.errors[0].message
    if key is not None:
        memo[key] = parsed
    return parsed


def _check(index: int, raw: UsageEventIn, now: datetime, amounts: dict[Any, Decimal | str]) -> _Event | Rejection:
    def reject(code: ErrorCode, message: str, field_name: str) -> Rejection:
        return Rejection(index, code, message, field_name)

    if raw.customer_id is None:
        return reject(ErrorCode.NOT_FOUND, "Customer not found.", "customerId")
    try:
        key = check_key(raw.idempotency_key)
    except DomainError as exc:
        return reject(ErrorCode.INVALID, exc.errors[0].message, "idempotencyKey")
    try:
        unit = UnitType(raw.unit_type)
    except ValueError:
        return reject(ErrorCode.INVALID, "Unknown unit type.", "unitType")
    quantity = _quantity(raw.quantity, amounts)
    if isinstance(quantity, str):
        return reject(ErrorCode.INVALID, quantity, "quantity")
    if quantity > QUANTITY_LIMITS[unit]:
        return reject(ErrorCode.INVALID, f"At most {QUANTITY_LIMITS[unit]:,} {unit} per event.", "quantity")
    occurred = raw.occurred_at
    if isinstance(occurred, str):
        try:
            occurred = datetime.fromisoformat(occurred)
        except ValueError:
            return reject(ErrorCode.INVALID, "occurredAt is not an ISO-8601 timestamp.", "occurredAt")
    if not isinstance(occurred, datetime):
        return reject(ErrorCode.REQUIRED, "occurredAt is required.", "occurredAt")
    try:
        occurred = occurred.replace(tzinfo=UTC) if occurred.tzinfo is None else occurred.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 and 9999-12-31T23:59-14:00 have no UTC time
        return reject(ErrorCode.INVALID, "occurredAt is out of range.", "occurredAt")
    if occurred > now + CLOCK_SKEW:
        return reject(ErrorCode.EVENT_IN_FUTURE, "occurredAt is in the future.", "occurredAt")
    if occurred < now - MAX_AGE:
        return reject(ErrorCode.EVENT_TOO_OLD, "Events older than 35 days are not accepted.", "occurredAt")
    case_type = raw.case_type if raw.case_type is not None else ""
    if not isinstance(case_type, str) or len(case_type) > 64:
        return reject(ErrorCode.INVALID, "caseType must be text of at most 64 characters.", "caseType")
    problem = text_problem(case_type)
    if problem:
        return reject(ErrorCode.INVALID, problem, "caseType")
    metadata = raw.metadata if raw.metadata is not None else {}
    if not isinstance(metadata, dict):
        return reject(ErrorCode.INVALID, "metadata must be an object.", "metadata")
    problem = json_problem(metadata, max_depth=METADATA_MAX_DEPTH, max_bytes=METADATA_MAX_BYTES)
    if problem:
        return reject(ErrorCode.INVALID, problem, "metadata")
    return _Event(index, key, raw.customer_id, unit, quantity, occurred, case_type, raw.hold_id, metadata)


def funding_of(ai_credits: bool, prefs: BillingPreferences) -> Funding:
    if ai_credits:
        return Funding.CREDITS
    return Funding.WALLET if prefs.billing_mode == BillingMode.REFILLABLE_WALLET else Funding.INVOICE


async def _active_holds(customer_id: int, now: datetime, exclude: set[int] = frozenset()) -> tuple[Decimal, Decimal]:
    """Σ (USD, credits) of live holds."""
    rows = await UsageHold.filter(customer_id=customer_id, status=HoldStatus.ACTIVE, expires_at__gt=now).values_list(
        "id", "amount", "credits"
    )
    usd = sum((Decimal(a) for i, a, _ in rows if i not in exclude), ZERO)
    credits = sum((Decimal(c) for i, _, c in rows if i not in exclude), ZERO)
    return usd, credits


async def _active_holds_of(customer_ids: list[int], now: datetime) -> dict[int, list[tuple[int, Decimal, Decimal]]]:
    """Live holds (id, USD, credits) of many customers in one query."""
    out: dict[int, list[tuple[int, Decimal, Decimal]]] = defaultdict(list)
    if customer_ids:
        rows = await UsageHold.filter(
            customer_id__in=customer_ids, status=HoldStatus.ACTIVE, expires_at__gt=now
        ).values_list("customer_id", "id", "amount", "credits")
        for customer_id, hold_id, amount, credits in rows:
            out[customer_id].append((hold_id, Decimal(amount), Decimal(credits)))
    return out


async def record_usage(viewer: Viewer, events: Sequence[UsageEventIn], at: datetime | None = None) -> RecordResult:
    """Rates and charges a batch of up to 1,000 events; a bad event is rejected alone, a duplicate counted once."""
    require_recorder(viewer)
    if len(events) > MAX_BATCH:
        raise DomainError.single(ErrorCode.INVALID, f"At most {MAX_BATCH} events per call.", "events")
    now = at or datetime.now(UTC)
    result = RecordResult()
    checked: list[_Event] = []
    amounts: dict[Any, Decimal | str] = {}
    for i, raw in enumerate(events):
        outcome = _check(i, raw, now, amounts)
        if isinstance(outcome, Rejection):
            result.rejected.append(outcome)
        else:
            checked.append(outcome)
    customers = (
        {c.id: c for c in await restrict(Customer, viewer).filter(id__in=list({e.customer_id for e in checked}))}
        if checked
        else {}
    )
    hold_ids = [e.hold_id for e in checked if e.hold_id not in (None, UNKNOWN_HOLD)]
    holds = {h.id: h for h in await UsageHold.filter(id__in=hold_ids)} if hold_ids else {}
    valid: list[_Event] = []
    seen: set[tuple[int, str]] = set()
    batch_totals: dict[tuple[int, UnitType], Decimal] = defaultdict(Decimal)
    for e in checked:
        if e.customer_id not in customers:
            result.rejected.append(Rejection(e.index, ErrorCode.NOT_FOUND, "Customer not found.", "customerId"))
            continue
        if e.hold_id is not None:
            hold = holds.get(e.hold_id)
            if hold is None or hold.customer_id != e.customer_id:
                result.rejected.append(Rejection(e.index, ErrorCode.NOT_FOUND, "Hold not found.", "holdId"))
                continue
            if hold.unit_type != e.unit_type:
                result.rejected.append(
                    Rejection(e.index, ErrorCode.INVALID, "The hold is for another unit type.", "holdId")
                )
                continue
        if (e.customer_id, e.key) in seen:
            result.duplicates += 1
            continue
        total = batch_totals[(e.customer_id, e.unit_type)] + e.quantity
        most = QUANTITY_LIMITS[e.unit_type] * BATCH_FACTOR
        if total > most:
            message = f"At most {most:,} {e.unit_type} per customer in one batch."
            result.rejected.append(Rejection(e.index, ErrorCode.LIMIT_EXCEEDED, message, "quantity"))
            continue
        batch_totals[(e.customer_id, e.unit_type)] = total
        seen.add((e.customer_id, e.key))
        valid.append(e)
    result.rejected.sort(key=lambda r: r.index)
    if not valid:
        return result

    await store.ensure_partitions([store.month_start(e.occurred_at) for e in valid])
    by_customer: dict[int, list[_Event]] = defaultdict(list)
    for e in valid:
        by_customer[e.customer_id].append(e)
    book = await rate_book({customers[cid].partner_id for cid in by_customer})
    toggles = await toggles_of(list(by_customer))
    prefs = await billing.preferences_of(list(by_customer))

    async with in_transaction():
        new_keys = await store.claim_keys([(e.customer_id, e.key) for e in valid], now)
        rows: list[dict[str, Any]] = []
        rollups: dict[tuple[int, date, str], list[Any]] = {}
        fresh_of = {cid: [e for e in by_customer[cid] if (cid, e.key) in new_keys] for cid in sorted(by_customer)}
        funding_by = {
            cid: funding_of(toggles[cid].ai_credits_enabled, prefs[cid]) for cid, fresh in fresh_of.items() if fresh
        }
        # Every account the batch may post to, locked at once in id order: partners' revenue accounts are shared by
        # all their customers, so taking them customer by customer deadlocked concurrent batches mixing partners.
        locked = await ledger.lock_accounts(
            *(ref for cid, f in funding_by.items() for ref in _accounts_of(customers[cid], f))
        )
        holds_of = await _active_holds_of([cid for cid, f in funding_by.items() if f != Funding.INVOICE], now)
        refused: list[tuple[int, str]] = []
        for customer_id, fresh in fresh_of.items():
            result.duplicates += len(by_customer[customer_id]) - len(fresh)
            if not fresh:
                continue
            customer = customers[customer_id]
            funding = funding_by[customer_id]
            try:
                rows += await _settle(customer, fresh, funding, book, now, locked, holds_of[customer_id])
            except ledger.LimitExceeded as exc:  # raised before `_settle` wrote anything: the other customers go on
                error = exc.errors[0]
                result.rejected += [Rejection(e.index, error.code, error.message, error.field) for e in fresh]
                refused += [(customer_id, e.key) for e in fresh]
                continue
            result.accepted += len(fresh)
        if refused:  # not recorded, so a retry must not count as a duplicate
            await store.release_keys(refused)
            new_keys -= set(refused)
            result.rejected.sort(key=lambda r: r.index)
        for row in rows:
            key = (row["customer_id"], row["occurred_at"].date(), row["unit_type"])
            acc = rollups.setdefault(key, [0, ZERO, ZERO, ZERO, ZERO])
            acc[0] += 1
            acc[1] += row["quantity"]
            acc[2] += row["cost"]
            acc[3] += row["credits"]
            acc[4] += ZERO if row["paid"] else row["cost"]
        await store.insert_events(rows)
        await store.add_rollups([(c, d, u, *acc) for (c, d, u), acc in rollups.items()])
        spend: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
        for row in rows:
            spend[(row["customer_id"], store.month_start(row["occurred_at"]))] += row["cost"]
        await store.add_spends([(customer_id, month, amount) for (customer_id, month), amount in spend.items()])
        this_month = current_month(now)
        for customer_id, month in sorted(spend):
            if month == this_month:
                await evaluate(customers[customer_id], viewer, now)
        consumed = [e.hold_id for e in valid if e.hold_id is not None and (e.customer_id, e.key) in new_keys]
        if consumed:
            await UsageHold.filter(id__in=consumed, status=HoldStatus.ACTIVE).update(
                status=HoldStatus.CONSUMED, closed_at=now
            )
    return result


def _accounts_of(customer: Customer, funding: Funding) -> list[ledger.AccountRef]:
    """The ledger accounts `_settle` may post to for this customer: what pays, the invoice that takes what it
    cannot pay, and the partner's revenue."""
    refs = [
        ledger.revenue(Currency.USD, customer.partner_id),
        ledger.customer_invoice(customer.id, customer.partner_id),
    ]
    if funding == Funding.CREDITS:
        refs += [
            ledger.customer_credits(customer.id, customer.partner_id),
            ledger.revenue(Currency.CREDITS, customer.partner_id),
        ]
    elif funding == Funding.WALLET:
        refs.append(ledger.customer_wallet(customer.id, customer.partner_id))
    return refs


async def _settle(
    customer: Customer,
    events: list[_Event],
    funding: Funding,
    book: RateBook,
    now: datetime,
    locked: Mapping[str, LedgerAccount],
    holds: list[tuple[int, Decimal, Decimal]],
) -> list[dict[str, Any]]:
    """Rates each event and pays it from credits or the wallet while they last (holds of these events included);
    the rest accrues to the month's invoice as unpaid. `locked`: the batch's accounts (`_accounts_of`), locked by
    the caller, whose balances the postings keep current; `holds`: the customer's live holds. Returns the event
    rows to insert; raises `ledger.LimitExceeded` before writing anything if an account would pass its limit."""
    own_holds = {e.hold_id for e in events if e.hold_id is not None}
    rated = []
    for e in events:
        rate = book.rate(customer.partner_id, e.unit_type, e.occurred_at)
        cost = (e.quantity * rate.price).quantize(MICRO)
        credits = (e.quantity * rate.credit_price).quantize(MICRO) if funding == Funding.CREDITS else ZERO
        rated.append((e, rate.price, cost, credits))

    paid_flags: list[bool] = []
    payer = (
        ledger.customer_credits(customer.id, customer.partner_id)
        if funding == Funding.CREDITS
        else ledger.customer_wallet(customer.id, customer.partner_id)
    )
    if funding in (Funding.CREDITS, Funding.WALLET):
        held_usd = sum((usd for hold_id, usd, _ in holds if hold_id not in own_holds), ZERO)
        held_credits = sum((credits for hold_id, _, credits in holds if hold_id not in own_holds), ZERO)
        room = locked[payer.key].balance - (held_credits if funding == Funding.CREDITS else held_usd)
        for _, _, cost, credits in rated:
            need = credits if funding == Funding.CREDITS else cost
            ok = need <= room
            if ok:
                room -= need
            paid_flags.append(ok)
    else:
        paid_flags = [False] * len(rated)

    paid_amount = sum(
        (
            (credits if funding == Funding.CREDITS else cost)
            for (_, _, cost, credits), ok in zip(rated, paid_flags, strict=True)
            if ok
        ),
        ZERO,
    )
    unpaid_cost = sum((cost for (_, _, cost, _), ok in zip(rated, paid_flags, strict=True) if not ok), ZERO)
    invoice = ledger.customer_invoice(customer.id, customer.partner_id)
    revenue_usd = ledger.revenue(Currency.USD, customer.partner_id)
    moves = [(invoice, revenue_usd, unpaid_cost)] if unpaid_cost > ZERO else []
    if paid_amount > ZERO:
        moves.append((payer, ledger.revenue(payer.currency, customer.partner_id), paid_amount))
    ledger.check_limits(locked, moves)
    paid_transfer = unpaid_transfer = None
    meta = {"events": len(events)}
    if paid_amount > ZERO:
        if funding == Funding.CREDITS:
            paid_transfer = await billing.burn_credits(customer, paid_amount, meta, locked)
        else:
            paid_transfer = await billing.charge_wallet(customer, paid_amount, meta, locked)
    if unpaid_cost > ZERO:
        unpaid_transfer = await ledger.post(
            invoice,
            revenue_usd,
            unpaid_cost,
            TransferKind.USAGE_CHARGE,
            metadata={**meta, "unpaid": True},
            locked=locked,
        )
    rows = []
    for (e, price, cost, credits), ok in zip(rated, paid_flags, strict=True):
        is_free = cost == ZERO and credits == ZERO
        transfer = None if is_free else (paid_transfer if ok else unpaid_transfer)
        rows.append(
            {
                "customer_id": customer.id,
                "partner_id": customer.partner_id,
                "unit_type": str(e.unit_type),
                "quantity": e.quantity,
                "occurred_at": e.occurred_at,
                "recorded_at": now,
                "case_type": e.case_type,
                "idempotency_key": e.key,
                "hold_id": e.hold_id,
                "unit_price": price,
                "cost": cost,
                "credits": credits if ok else ZERO,
                "funding": str(funding if ok else Funding.INVOICE),
                "paid": ok or is_free,
                "transfer_id": transfer.id if transfer else None,
                "metadata": e.metadata,
            }
        )
    return rows


# ---------------------------------------------------------------- authorization


async def _lock_customer_month(customer_id: int, now: datetime) -> None:
    """Serialises authorizations of one customer (the current month's spend row, created if missing)."""
    month = current_month(now)
    from domain.usage.models import MonthlySpend

    await MonthlySpend.bulk_create(
        [MonthlySpend(customer_id=customer_id, month=month, spent=ZERO)], ignore_conflicts=True
    )
    await MonthlySpend.filter(customer_id=customer_id, month=month).select_for_update()


async def usage_authorize(
    viewer: Viewer,
    customer_id: int,
    unit_type: Any,
    estimated_quantity: Any,
    idempotency_key: str,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Places a hold for the estimated cost if the service is active and cap and balance allow it."""
    require_recorder(viewer)
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    v = Validator()
    try:
        unit = UnitType(unit_type)
    except ValueError:
        v.add("unit_type", "Unknown unit type.")
        unit = UnitType.VOICE_MINUTES
    quantity = parse_amount(v, "estimated_quantity", estimated_quantity)
    if quantity is not None and quantity > QUANTITY_LIMITS[unit]:
        v.add("estimated_quantity", f"At most {QUANTITY_LIMITS[unit]:,} {unit} per event.")
    key = check_key(idempotency_key)
    v.raise_if_invalid()
    assert quantity is not None

    async def perform() -> dict[str, Any]:
        now = at or datetime.now(UTC)
        prefs = (await billing.preferences_of([customer.id]))[customer.id]
        ai_credits = (await toggles_of([customer.id]))[customer.id].ai_credits_enabled
        funding = funding_of(ai_credits, prefs)
        payer = (
            ledger.customer_credits(customer.id, customer.partner_id)
            if funding == Funding.CREDITS
            else ledger.customer_wallet(customer.id, customer.partner_id)
        )
        # The account that pays is locked before the balance is read, so no charge of `record_usage` (which locks
        # it, and reads the holds, first) commits in between; both take ledger rows before the month's spend row,
        # in that order, so they cannot deadlock.
        locked = await ledger.lock_accounts(payer) if funding != Funding.INVOICE else {}
        await _lock_customer_month(customer.id, now)
        fresh = await Customer.get(id=customer.id)
        if fresh.service_state != ServiceState.ACTIVE:
            raise DomainError.single(
                ErrorCode.SERVICE_PAUSED, "Service is paused: the monthly spending cap was reached."
            )
        rate = (await rate_book([customer.partner_id])).rate(customer.partner_id, unit, now)
        amount = (quantity * rate.price).quantize(MICRO)
        credits = (quantity * rate.credit_price).quantize(MICRO) if funding == Funding.CREDITS else ZERO
        held_usd, held_credits = await _active_holds(customer.id, now)
        cap = prefs.monthly_spending_cap
        if cap is not None and await spent_this_month(customer.id, now) + held_usd + amount > cap:
            raise DomainError.single(ErrorCode.CAP_REACHED, "This would exceed the monthly spending cap.")
        if funding == Funding.CREDITS and locked[payer.key].balance - held_credits < credits:
            raise DomainError.single(ErrorCode.INSUFFICIENT_CREDITS, "Not enough AI credits for this.")
        if funding == Funding.WALLET and locked[payer.key].balance - held_usd < amount:
            raise DomainError.single(ErrorCode.INSUFFICIENT_BALANCE, "The wallet balance is too low for this.")
        hold = await UsageHold.create(
            customer_id=customer.id,
            unit_type=unit,
            estimated_quantity=quantity,
            amount=amount,
            credits=credits,
            funding=funding,
            expires_at=now + HOLD_TTL,
        )
        return {"hold_id": hold.id}

    return await run_idempotent(
        viewer,
        "usageAuthorize",
        key,
        {"customer_id": customer.id, "unit_type": str(unit), "estimated_quantity": str(quantity)},
        perform,
    )


async def usage_hold_release(viewer: Viewer, hold_id: int) -> UsageHold:
    require_recorder(viewer)
    hold = await UsageHold.get_or_none(id=hold_id)
    if hold is None or not await restrict(Customer, viewer).filter(id=hold.customer_id).exists():
        raise DomainError.single(ErrorCode.NOT_FOUND, "Hold not found.", "hold_id")
    if hold.status == HoldStatus.ACTIVE:
        now = datetime.now(UTC)
        await UsageHold.filter(id=hold.id, status=HoldStatus.ACTIVE).update(
            status=HoldStatus.EXPIRED if hold.expires_at <= now else HoldStatus.RELEASED, closed_at=now
        )
        hold = await UsageHold.get(id=hold.id)
    return hold


async def expire_holds(at: datetime | None = None) -> int:
    """Marks holds past their expiry (they already stopped counting at that instant)."""
    now = at or datetime.now(UTC)
    return await UsageHold.filter(status=HoldStatus.ACTIVE, expires_at__lte=now).update(
        status=HoldStatus.EXPIRED, closed_at=now
    )


# ---------------------------------------------------------------- reading


async def usage_events(
    viewer: Viewer,
    customer_id: int,
    *,
    unit_type: UnitType | None = None,
    paid: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Any:
    """The detailed usage log of one visible customer (a queryset for pagination)."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    qs = UsageEvent.filter(customer_id=customer.id)
    if unit_type is not None:
        qs = qs.filter(unit_type=unit_type)
    if paid is not None:
        qs = qs.filter(paid=paid)
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    if until is not None:
        qs = qs.filter(occurred_at__lt=until)
    return qs


@dataclass(frozen=True, slots=True)
class SummaryRow:
    period: date | None
    unit_type: UnitType
    quantity: Decimal
    cost: Decimal
    credits: Decimal
    unpaid_cost: Decimal
    events: int


async def usage_summary(viewer: Viewer, customer_id: int, since: date, until: date, group_by: str) -> list[SummaryRow]:
    """Aggregated usage per unit type, by DAY, MONTH or UNIT_TYPE only, read from the daily rollups.
    `since` and `until` are inclusive UTC days."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    if until < since:
        raise DomainError.single(ErrorCode.INVALID, "`to` is before `from`.", "to")
    if (until - since).days > 800:
        raise DomainError.single(ErrorCode.INVALID, "At most about two years per summary.", "to")
    rollups = await UsageRollup.filter(customer_id=customer.id, day__gte=since, day__lte=until).order_by("day")
    groups: dict[tuple[date | None, str], list[Any]] = {}
    for r in rollups:
        period = r.day if group_by == "DAY" else (store.month_start(r.day) if group_by == "MONTH" else None)
        acc = groups.setdefault((period, r.unit_type), [ZERO, ZERO, ZERO, ZERO, 0])
        acc[0] += r.quantity
        acc[1] += r.cost
        acc[2] += r.credits
        acc[3] += r.unpaid_cost
        acc[4] += r.events
    order = list(UnitType)
    return [
        SummaryRow(period, UnitType(unit), *acc)
        for (period, unit), acc in sorted(
            groups.items(), key=lambda kv: (kv[0][0] or date.min, order.index(UnitType(kv[0][1])))
        )
    ]


# ---------------------------------------------------------------- phone numbers


def phone_charge_key(number_id: int, month: date) -> str:
    """One charge per number and calendar month, whoever runs the scheduler and however often."""
    return f"phone-number:{number_id}:{month:%Y-%m}"


async def charge_phone_numbers(month: date | None = None, at: datetime | None = None) -> RecordResult:
    """Records the monthly PHONE_NUMBER_MONTHS event of every active number (idempotent per number and month)."""
    now = at or datetime.now(UTC)
    month = month or current_month(now)
    occurred = max(datetime(month.year, month.month, 1, tzinfo=UTC), now - MAX_AGE + timedelta(days=1))
    numbers = await PhoneNumber.filter(active=True).order_by("id")
    events = [
        UsageEventIn(
            idempotency_key=phone_charge_key(n.id, month),
            customer_id=n.customer_id,
            unit_type=UnitType.PHONE_NUMBER_MONTHS,
            quantity=Decimal(1),
            occurred_at=occurred,
            case_type="phone_number",
            metadata={"number": n.number, "month": f"{month:%Y-%m}"},
        )
        for n in numbers
    ]
    total = RecordResult()
    for i in range(0, len(events), MAX_BATCH):
        part = await record_usage(Viewer.system("phone-charges"), events[i : i + MAX_BATCH], now)
        total.accepted += part.accepted
        total.duplicates += part.duplicates
        total.rejected += part.rejected
    return total


async def audit_usage_batch(viewer: Viewer, result: RecordResult, source: str) -> None:
    """One API_CALL audit event per ingestion request (not per event)."""
    async with in_transaction():
        await record(
            viewer,
            AuditEventType.API_CALL,
            "usage.record",
            object_type="UsageBatch",
            details={
                "source": source,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": len(result.rejected),
            },
        )
