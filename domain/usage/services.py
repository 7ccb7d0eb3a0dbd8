"""Recording usage: rate and charge events in batches.

`usage_record` is the API's service (`usageRecord` over GraphQL and `POST /v1/usage/events`): it records the batch
with `record_usage` and audits the call. `record_usage` runs a batch through five phases: validate each event,
resolve the customers and holds it names, rate it, settle it (in one transaction: claim the idempotency keys, where
duplicates drop out, lock every account the batch may post to, pay each customer's events from credits, wallet or
invoice in order) and persist it (the events, the daily rollups and the monthly spend, the spending cap, the holds
consumed), with a fixed number of statements per customer.

What one event may carry is bounded so that no value can fail a batch or poison a later read: a quantity per
event and per customer and unit type in one batch (`QUANTITY_LIMITS`, `BATCH_FACTOR`), text without NUL or
unpaired surrogates, a timestamp that exists in UTC, and metadata of bounded depth, size and numbers. A customer
whose ledger accounts would pass their limit has its events of that batch refused (LIMIT_EXCEEDED) and the others
go through.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.cap import current_month, evaluate
from domain.billing.credits import burn_credits
from domain.billing.models import BillingPreferences
from domain.billing.read import preferences_of
from domain.billing.wallet import charge_wallet
from domain.campaigns.models import Campaign
from domain.common.json import JsonObject
from domain.common.validation import Validator, json_problem, parse_amount, text_problem
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.features.models import FeatureToggles
from domain.features.services import toggles_of
from domain.ledger import services as ledger
from domain.ledger.idempotency import check_key
from domain.ledger.models import Currency, LedgerAccount, Transfer, TransferKind
from domain.usage import store
from domain.usage.commands import UNKNOWN_CAMPAIGN, UNKNOWN_HOLD, UsageEventIn, UsageRecord
from domain.usage.holds import active_holds_of
from domain.usage.models import Direction, Funding, HoldStatus, PhoneNumber, UnitType, UsageHold
from domain.usage.rating import RateBook, rate_book
from domain.usage.rules import (
    BATCH_FACTOR,
    CLOCK_SKEW,
    MAX_AGE,
    MAX_BATCH,
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    MICRO,
    QUANTITY_LIMITS,
    ZERO,
    funding_of,
    require_recorder,
)
from domain.viewer import Viewer
from domain.visibility import restrict


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


async def usage_record(viewer: Viewer, command: UsageRecord) -> RecordResult:
    """Records a batch sent to the API and audits the call."""
    return await record_usage(viewer, command.events, source=command.source)


async def _audit_call(viewer: Viewer, source: str, result: RecordResult) -> None:
    """One API_CALL audit event per request (not per event), in the batch's transaction."""
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


async def record_usage(
    viewer: Viewer, events: Sequence[UsageEventIn], at: datetime | None = None, *, source: str | None = None
) -> RecordResult:
    """Rates and charges a batch of up to 1,000 events; a bad event is rejected alone, a duplicate counted once.
    The platform's own batches (jobs, demo data) come here directly; API calls through `usage_record`, whose
    `source` (the entry point) has the call audited as one API_CALL event in the batch's transaction."""
    require_recorder(viewer)
    if len(events) > MAX_BATCH:
        raise DomainError.single(ErrorCode.INVALID, f"At most {MAX_BATCH} events per call.", "events")
    now = at or datetime.now(UTC)
    result = RecordResult()
    batch = await _resolve_accounts(viewer, _validate(events, now, result), now, result)
    result.rejected.sort(key=lambda r: r.index)
    if batch is None:
        if source is not None:
            async with in_transaction():
                await _audit_call(viewer, source, result)
        return result
    # outside the transaction: DDL on the parent table should hold its lock only for an instant
    await store.ensure_partitions([store.month_start(e.occurred_at) for e in batch.events])
    priced = await _rate(batch)
    async with in_transaction():
        rows, new_keys = await _settle(batch, priced)
        await _persist(batch, rows, new_keys, priced)
        if source is not None:
            await _audit_call(viewer, source, result)
    return result


# ---------------------------------------------------------------- phase 1: validate


class _Details(NamedTuple):
    """A call's or message's details, as checked (all optional)."""

    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    duration_seconds: int | None = None
    segments: int | None = None
    campaign_id: int | None = None
    call_id: str | None = None


_NO_DETAILS = _Details()


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
    metadata: JsonObject
    details: _Details = _NO_DETAILS


_UNIT_TYPES = frozenset(UnitType)


class _Refused(Exception):
    """One event's refusal: (code, message, field)."""


def _validate(events: Sequence[UsageEventIn], now: datetime, result: RecordResult) -> list[_Event]:
    """Phase 1: each event's fields; those that fail are rejected alone."""
    checked: list[_Event] = []
    amounts: dict[object, Decimal | str] = {}
    for i, raw in enumerate(events):
        outcome = _check(i, raw, now, amounts)
        if isinstance(outcome, Rejection):
            result.rejected.append(outcome)
        else:
            checked.append(outcome)
    return checked


def _check(index: int, raw: UsageEventIn, now: datetime, amounts: dict[object, Decimal | str]) -> _Event | Rejection:
    """One event, field by field in this order; the first failure refuses it."""
    try:
        if raw.malformed:
            raise _Refused(ErrorCode.INVALID, "Each event must be a JSON object.", None)
        if raw.customer_id is None:
            raise _Refused(ErrorCode.NOT_FOUND, "Customer not found.", "customerId")
        try:
            key = check_key(raw.idempotency_key)
        except DomainError as exc:
            raise _Refused(ErrorCode.INVALID, exc.errors[0].message, "idempotencyKey") from None
        unit, quantity = _unit_and_quantity(raw.unit_type, raw.quantity, amounts)
        occurred = _occurred_at(raw.occurred_at, now)
        case_type = _case_type(raw.case_type)
        metadata = _metadata(raw.metadata)
        details = _details(raw)
    except _Refused as refused:
        code, message, field_name = refused.args
        return Rejection(index, code, message, field_name)
    return _Event(index, key, raw.customer_id, unit, quantity, occurred, case_type, raw.hold_id, metadata, details)


def _unit_and_quantity(
    unit_type: object, raw_quantity: object, amounts: dict[object, Decimal | str]
) -> tuple[UnitType, Decimal]:
    if not isinstance(unit_type, str) or unit_type not in _UNIT_TYPES:
        raise _Refused(ErrorCode.INVALID, "Unknown unit type.", "unitType")
    unit = UnitType(unit_type)
    quantity = _quantity(raw_quantity, amounts)
    if isinstance(quantity, str):
        raise _Refused(ErrorCode.INVALID, quantity, "quantity")
    if quantity > QUANTITY_LIMITS[unit]:
        raise _Refused(ErrorCode.INVALID, f"At most {QUANTITY_LIMITS[unit]:,} {unit} per event.", "quantity")
    return unit, quantity


def _quantity(raw: object, memo: dict[object, Decimal | str]) -> Decimal | str:
    """`parse_amount` of a quantity, or its error message; memoised per batch, where quantities repeat."""
    key: object = None
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


def _occurred_at(raw: object, now: datetime) -> datetime:
    occurred = raw
    if isinstance(occurred, str):
        try:
            occurred = datetime.fromisoformat(occurred)
        except ValueError:
            raise _Refused(ErrorCode.INVALID, "occurredAt is not an ISO-8601 timestamp.", "occurredAt") from None
    if occurred is None:
        raise _Refused(ErrorCode.REQUIRED, "occurredAt is required.", "occurredAt")
    if not isinstance(occurred, datetime):
        raise _Refused(ErrorCode.INVALID, "occurredAt must be an ISO-8601 timestamp string.", "occurredAt")
    try:
        occurred = occurred.replace(tzinfo=UTC) if occurred.tzinfo is None else occurred.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 and 9999-12-31T23:59-14:00 have no UTC time
        raise _Refused(ErrorCode.INVALID, "occurredAt is out of range.", "occurredAt") from None
    if occurred > now + CLOCK_SKEW:
        raise _Refused(ErrorCode.EVENT_IN_FUTURE, "occurredAt is in the future.", "occurredAt")
    if occurred < now - MAX_AGE:
        raise _Refused(ErrorCode.EVENT_TOO_OLD, "Events older than 35 days are not accepted.", "occurredAt")
    return occurred


def _case_type(raw: object) -> str:
    case_type = raw if raw is not None else ""
    if not isinstance(case_type, str) or len(case_type) > 64:
        raise _Refused(ErrorCode.INVALID, "caseType must be text of at most 64 characters.", "caseType")
    problem = text_problem(case_type)
    if problem:
        raise _Refused(ErrorCode.INVALID, problem, "caseType")
    return case_type


_DIRECTIONS = frozenset(Direction)
_PHONE_NUMBER = re.compile(r"^\+?[0-9A-Za-z*#() .-]{1,32}$")  # E.164, local formats, short codes, extensions
MAX_DURATION_SECONDS = int(QUANTITY_LIMITS[UnitType.VOICE_MINUTES]) * 60
MAX_SEGMENTS = int(QUANTITY_LIMITS[UnitType.SMS_SEGMENTS])


def _details(raw: UsageEventIn) -> _Details:
    """The optional call or message details; an event without any shares one empty tuple."""
    if (
        raw.direction is None
        and raw.from_number is None
        and raw.to_number is None
        and raw.duration_seconds is None
        and raw.segments is None
        and raw.campaign_id is None
        and raw.call_id is None
    ):
        return _NO_DETAILS
    direction = raw.direction
    if direction is not None and (not isinstance(direction, str) or direction not in _DIRECTIONS):
        raise _Refused(ErrorCode.INVALID, "direction is INBOUND or OUTBOUND.", "direction")
    if raw.campaign_id == UNKNOWN_CAMPAIGN:
        raise _Refused(ErrorCode.NOT_FOUND, "Campaign not found.", "campaignId")
    return _Details(
        direction,
        _number(raw.from_number, "fromNumber"),
        _number(raw.to_number, "toNumber"),
        _count(raw.duration_seconds, "durationSeconds", MAX_DURATION_SECONDS),
        _count(raw.segments, "segments", MAX_SEGMENTS),
        raw.campaign_id,
        _call_id(raw.call_id),
    )


def phone_number_problem(raw: object, name: str) -> str | None:
    """Why `raw` is not a phone number as calls and contacts carry them; None when it is one."""
    if not isinstance(raw, str) or not _PHONE_NUMBER.match(raw):
        return f"{name} must be a phone number (at most 32 characters)."
    return None


def _number(raw: object, name: str) -> str | None:
    if raw is None:
        return None
    problem = phone_number_problem(raw, name)
    if problem:
        raise _Refused(ErrorCode.INVALID, problem, name)
    assert isinstance(raw, str)
    return raw


def _count(raw: object, name: str, most: int) -> int | None:
    """A whole number within 0 … most (JSON may send 12 or 12.0; not true, "12" or 12.5)."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | float):
        raise _Refused(ErrorCode.INVALID, f"{name} must be a whole number.", name)
    try:
        whole = int(raw)
    except (OverflowError, ValueError):  # infinity, NaN
        raise _Refused(ErrorCode.INVALID, f"{name} must be a whole number.", name) from None
    if whole != raw or not 0 <= whole <= most:
        raise _Refused(ErrorCode.INVALID, f"{name} must be a whole number from 0 to {most:,}.", name)
    return whole


def _call_id(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not 0 < len(raw) <= 64:
        raise _Refused(ErrorCode.INVALID, "callId must be text of 1 to 64 characters.", "callId")
    problem = text_problem(raw)
    if problem:
        raise _Refused(ErrorCode.INVALID, problem, "callId")
    return raw


def _metadata(raw: object) -> JsonObject:
    metadata = raw if raw is not None else {}
    if not isinstance(metadata, dict):
        raise _Refused(ErrorCode.INVALID, "metadata must be an object.", "metadata")
    problem = json_problem(metadata, max_depth=METADATA_MAX_DEPTH, max_bytes=METADATA_MAX_BYTES)
    if problem:
        raise _Refused(ErrorCode.INVALID, problem, "metadata")
    return metadata


# ---------------------------------------------------------------- phase 2: resolve accounts


@dataclass(slots=True)
class _Batch:
    """The events admitted to a batch, by customer, and what the later phases need of the request."""

    viewer: Viewer
    now: datetime
    result: RecordResult
    customers: dict[int, Customer]
    events: list[_Event]
    by_customer: dict[int, list[_Event]] = field(default_factory=lambda: defaultdict(list))


async def _resolve_accounts(
    viewer: Viewer, checked: list[_Event], now: datetime, result: RecordResult
) -> _Batch | None:
    """Phase 2: the customers (those the viewer may see) and the holds the events name. An event naming neither,
    a key seen earlier in the batch (a duplicate) or more than a batch may carry for its customer drops out here.
    None when no event is left."""
    customer_ids = list({e.customer_id for e in checked})
    customers = {c.id: c for c in await restrict(Customer, viewer).filter(id__in=customer_ids)} if checked else {}
    hold_ids = [e.hold_id for e in checked if e.hold_id not in (None, UNKNOWN_HOLD)]
    holds = {h.id: h for h in await UsageHold.filter(id__in=hold_ids)} if hold_ids else {}
    campaign_ids = {e.details.campaign_id for e in checked if e.details.campaign_id is not None}
    # a flat list of (id, customer id) pairs: one query for the batch, only when an event names a campaign
    campaigns: dict[int, int] = (
        dict(await Campaign.filter(id__in=campaign_ids).values_list("id", "customer_id")) if campaign_ids else {}
    )
    admitted: list[_Event] = []
    seen: set[tuple[int, str]] = set()
    totals: dict[tuple[int, UnitType], Decimal] = defaultdict(Decimal)
    for e in checked:
        refusal = _unresolved(e, customers, holds, campaigns)
        if refusal is not None:
            result.rejected.append(refusal)
            continue
        if (e.customer_id, e.key) in seen:
            result.duplicates += 1
            continue
        total = totals[(e.customer_id, e.unit_type)] + e.quantity
        most = QUANTITY_LIMITS[e.unit_type] * BATCH_FACTOR
        if total > most:
            message = f"At most {most:,} {e.unit_type} per customer in one batch."
            result.rejected.append(Rejection(e.index, ErrorCode.LIMIT_EXCEEDED, message, "quantity"))
            continue
        totals[(e.customer_id, e.unit_type)] = total
        seen.add((e.customer_id, e.key))
        admitted.append(e)
    if not admitted:
        return None
    batch = _Batch(viewer, now, result, customers, admitted)
    for e in admitted:
        batch.by_customer[e.customer_id].append(e)
    return batch


def _unresolved(
    e: _Event, customers: Mapping[int, Customer], holds: Mapping[int, UsageHold], campaigns: Mapping[int, int]
) -> Rejection | None:
    if e.customer_id not in customers:
        return Rejection(e.index, ErrorCode.NOT_FOUND, "Customer not found.", "customerId")
    campaign_id = e.details.campaign_id
    if campaign_id is not None and campaigns.get(campaign_id) != e.customer_id:
        return Rejection(e.index, ErrorCode.NOT_FOUND, "Campaign not found.", "campaignId")
    if e.hold_id is not None:
        hold = holds.get(e.hold_id)
        if hold is None or hold.customer_id != e.customer_id:
            return Rejection(e.index, ErrorCode.NOT_FOUND, "Hold not found.", "holdId")
        if hold.unit_type != e.unit_type:
            return Rejection(e.index, ErrorCode.INVALID, "The hold is for another unit type.", "holdId")
    return None


# ---------------------------------------------------------------- phase 3: rate


class _Rated(NamedTuple):
    event: _Event
    price: Decimal  # USD per unit
    cost: Decimal  # USD
    credits: Decimal  # AI credits, when credits pay for the customer's usage (else zero)


@dataclass(frozen=True, slots=True)
class _Priced:
    """One customer's events, rated, what pays for them, and the customer's preferences and toggles (read once
    per batch: the charge, its alerts and the cap use them)."""

    funding: Funding
    rated: list[_Rated]
    prefs: BillingPreferences
    toggles: FeatureToggles


async def _rate(batch: _Batch) -> dict[int, _Priced]:
    """Phase 3: what pays for each customer's usage (its AI-credits switch and billing mode) and each event's
    price at the instant it occurred (late events keep the price of their time)."""
    book = await rate_book({batch.customers[cid].partner_id for cid in batch.by_customer})
    toggles = await toggles_of(list(batch.by_customer))
    prefs = await preferences_of(list(batch.by_customer))
    priced: dict[int, _Priced] = {}
    for customer_id, events in batch.by_customer.items():
        funding = funding_of(toggles[customer_id].ai_credits_enabled, prefs[customer_id])
        partner_id = batch.customers[customer_id].partner_id
        rated = [_rated(e, book, partner_id, funding) for e in events]
        priced[customer_id] = _Priced(funding, rated, prefs[customer_id], toggles[customer_id])
    return priced


def _rated(e: _Event, book: RateBook, partner_id: int, funding: Funding) -> _Rated:
    rate = book.rate(partner_id, e.unit_type, e.occurred_at)
    cost = (e.quantity * rate.price).quantize(MICRO)
    credits = (e.quantity * rate.credit_price).quantize(MICRO) if funding == Funding.CREDITS else ZERO
    return _Rated(e, rate.price, cost, credits)


# ---------------------------------------------------------------- phase 4: settle


async def _settle(batch: _Batch, priced: dict[int, _Priced]) -> tuple[list[store.EventRow], set[tuple[int, str]]]:
    """Phase 4, in the batch's transaction: claims the events' idempotency keys (those recorded before count as
    duplicates), locks every account the batch may post to, and pays each customer's new events (`_pay`). A
    customer whose accounts would pass their limit has its events refused and their keys released, so a retry is
    not a duplicate. Returns the event rows to insert and the keys that were new."""
    result = batch.result
    new_keys = await store.claim_keys([(e.customer_id, e.key) for e in batch.events], batch.now)
    fresh_of = {
        cid: [r for r in priced[cid].rated if (cid, r.event.key) in new_keys] for cid in sorted(batch.by_customer)
    }
    funding_by = {cid: priced[cid].funding for cid, fresh in fresh_of.items() if fresh}
    # Every account the batch may post to, locked at once in id order: partners' revenue accounts are shared by
    # all their customers, so taking them customer by customer deadlocked concurrent batches mixing partners.
    locked = await ledger.lock_accounts(
        *(ref for cid, f in funding_by.items() for ref in _accounts_of(batch.customers[cid], f))
    )
    holds_of = await active_holds_of([cid for cid, f in funding_by.items() if f != Funding.INVOICE], batch.now)
    rows: list[store.EventRow] = []
    refused: list[tuple[int, str]] = []
    for customer_id, fresh in fresh_of.items():
        result.duplicates += len(batch.by_customer[customer_id]) - len(fresh)
        if not fresh:
            continue
        try:
            rows += await _pay(
                batch.customers[customer_id], fresh, priced[customer_id], batch.now, locked, holds_of[customer_id]
            )
        except ledger.LimitExceeded as exc:  # raised before `_pay` wrote anything: the other customers go on
            error = exc.errors[0]
            result.rejected += [Rejection(r.event.index, error.code, error.message, error.field) for r in fresh]
            refused += [(customer_id, r.event.key) for r in fresh]
            continue
        result.accepted += len(fresh)
    if refused:
        await store.release_keys(refused)
        new_keys -= set(refused)
        result.rejected.sort(key=lambda r: r.index)
    return rows, new_keys


def _accounts_of(customer: Customer, funding: Funding) -> list[ledger.AccountRef]:
    """The ledger accounts `_pay` may post to for this customer: what pays, the invoice that takes what it cannot
    pay, and the partner's revenue."""
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


def _payer(customer: Customer, funding: Funding) -> ledger.AccountRef:
    if funding == Funding.CREDITS:
        return ledger.customer_credits(customer.id, customer.partner_id)
    return ledger.customer_wallet(customer.id, customer.partner_id)


async def _pay(
    customer: Customer,
    rated: list[_Rated],
    priced: _Priced,
    now: datetime,
    locked: Mapping[str, LedgerAccount],
    holds: list[tuple[int, Decimal, Decimal]],
) -> list[store.EventRow]:
    """Pays one customer's new events from credits or the wallet while they last, the rest accrues to the month's
    invoice as unpaid. `locked`: the batch's accounts (`_accounts_of`), locked by the caller, whose balances the
    postings keep current; `holds`: the customer's live holds. Returns the event rows to insert; raises
    `ledger.LimitExceeded` before writing anything if an account would pass its limit."""
    funding = priced.funding
    paid = _allot(customer, rated, funding, locked, holds)
    paid_transfer, unpaid_transfer = await _post_charges(customer, rated, paid, priced, locked)
    rows = []
    for r, ok in zip(rated, paid, strict=True):
        is_free = r.cost == ZERO and r.credits == ZERO
        transfer = None if is_free else (paid_transfer if ok else unpaid_transfer)
        rows.append(_event_row(customer, r, ok, is_free, funding, now, transfer))
    return rows


def _allot(
    customer: Customer,
    rated: list[_Rated],
    funding: Funding,
    locked: Mapping[str, LedgerAccount],
    holds: list[tuple[int, Decimal, Decimal]],
) -> list[bool]:
    """Which events credits or the wallet pay for, in order, while the balance not held for other uses lasts (the
    holds of these events are theirs to use); none under invoice billing."""
    if funding not in (Funding.CREDITS, Funding.WALLET):
        return [False] * len(rated)
    by_credits = funding == Funding.CREDITS
    own_holds = {r.event.hold_id for r in rated if r.event.hold_id is not None}
    held = sum(((credits if by_credits else usd) for hold_id, usd, credits in holds if hold_id not in own_holds), ZERO)
    room = locked[_payer(customer, funding).key].balance - held
    paid = []
    for r in rated:
        need = r.credits if by_credits else r.cost  # what it takes from the account that pays
        ok = need <= room
        if ok:
            room -= need
        paid.append(ok)
    return paid


async def _post_charges(
    customer: Customer, rated: list[_Rated], paid: list[bool], priced: _Priced, locked: Mapping[str, LedgerAccount]
) -> tuple[Transfer | None, Transfer | None]:
    """One transfer for what credits or the wallet pay, one for what the invoice takes; both checked against the
    accounts' limits before either is written."""
    funding = priced.funding
    payer = _payer(customer, funding)
    by_credits = funding == Funding.CREDITS
    paid_amount = sum(((r.credits if by_credits else r.cost) for r, ok in zip(rated, paid, strict=True) if ok), ZERO)
    unpaid_cost = sum((r.cost for r, ok in zip(rated, paid, strict=True) if not ok), ZERO)
    invoice = ledger.customer_invoice(customer.id, customer.partner_id)
    revenue_usd = ledger.revenue(Currency.USD, customer.partner_id)
    moves = [(invoice, revenue_usd, unpaid_cost)] if unpaid_cost > ZERO else []
    if paid_amount > ZERO:
        moves.append((payer, ledger.revenue(payer.currency, customer.partner_id), paid_amount))
    ledger.check_limits(locked, moves)
    paid_transfer = unpaid_transfer = None
    meta: JsonObject = {"events": len(rated)}
    if paid_amount > ZERO:
        if funding == Funding.CREDITS:
            paid_transfer = await burn_credits(customer, paid_amount, meta, locked, priced.prefs, priced.toggles)
        else:
            paid_transfer = await charge_wallet(customer, paid_amount, meta, locked, priced.prefs)
    if unpaid_cost > ZERO:
        unpaid_transfer = await ledger.post(
            invoice,
            revenue_usd,
            unpaid_cost,
            TransferKind.USAGE_CHARGE,
            metadata={**meta, "unpaid": True},
            locked=locked,
        )
    return paid_transfer, unpaid_transfer


def _event_row(
    customer: Customer, r: _Rated, ok: bool, is_free: bool, funding: Funding, now: datetime, transfer: Transfer | None
) -> store.EventRow:
    e = r.event
    return {
        "customer_id": customer.id,
        "partner_id": customer.partner_id,
        "unit_type": str(e.unit_type),
        "quantity": e.quantity,
        "occurred_at": e.occurred_at,
        "recorded_at": now,
        "case_type": e.case_type,
        "idempotency_key": e.key,
        "hold_id": e.hold_id,
        "unit_price": r.price,
        "cost": r.cost,
        "credits": r.credits if ok else ZERO,
        "funding": str(funding if ok else Funding.INVOICE),
        "paid": ok or is_free,
        "transfer_id": transfer.id if transfer else None,
        "metadata": e.metadata,
        "direction": e.details.direction,
        "from_number": e.details.from_number,
        "to_number": e.details.to_number,
        "duration_seconds": e.details.duration_seconds,
        "segments": e.details.segments,
        "campaign_id": e.details.campaign_id,
        "call_id": e.details.call_id,
    }


# ---------------------------------------------------------------- phase 5: persist


async def _persist(
    batch: _Batch, rows: list[store.EventRow], new_keys: set[tuple[int, str]], priced: Mapping[int, _Priced]
) -> None:
    """Phase 5, in the batch's transaction: the event rows, the daily rollups and monthly spend they add to, the
    spending cap of each customer whose current month grew, and the holds the new events used."""
    rollups, details = _rollups(rows)
    await store.insert_events(rows)
    await store.add_rollups(rollups)
    await store.add_rollup_details(details)
    spend: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    for row in rows:
        spend[(row["customer_id"], store.month_start(row["occurred_at"]))] += row["cost"]
    totals = await store.add_spends([(customer_id, month, amount) for (customer_id, month), amount in spend.items()])
    this_month = current_month(batch.now)
    for customer_id, month in sorted(spend):
        if month == this_month:
            customer, prefs = batch.customers[customer_id], priced[customer_id].prefs
            await evaluate(customer, batch.viewer, batch.now, prefs=prefs, spent=totals[(customer_id, month)])
    consumed = [e.hold_id for e in batch.events if e.hold_id is not None and (e.customer_id, e.key) in new_keys]
    if consumed:
        await UsageHold.filter(id__in=consumed, status=HoldStatus.ACTIVE).update(
            status=HoldStatus.CONSUMED, closed_at=batch.now
        )


def _rollups(rows: list[store.EventRow]) -> tuple[list[store.RollupRow], list[store.RollupDetailRow]]:
    """(customer, day, unit type) → events, quantity, cost, credits and unpaid cost of the rows; and the same by
    (customer, day, unit type, case type, campaign or 0)."""
    totals: dict[tuple[int, date, str], list[Any]] = {}
    detail: dict[tuple[int, date, str, str, int], list[Any]] = {}
    for row in rows:
        key = (row["customer_id"], row["occurred_at"].date(), row["unit_type"])
        for acc in (
            totals.setdefault(key, [0, ZERO, ZERO, ZERO, ZERO]),
            detail.setdefault((*key, row["case_type"], row["campaign_id"] or 0), [0, ZERO, ZERO, ZERO, ZERO]),
        ):
            acc[0] += 1
            acc[1] += row["quantity"]
            acc[2] += row["cost"]
            acc[3] += row["credits"]
            acc[4] += ZERO if row["paid"] else row["cost"]
    return [(c, d, u, *acc) for (c, d, u), acc in totals.items()], [
        (c, d, u, ct, cp, *acc) for (c, d, u, ct, cp), acc in detail.items()
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
