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

from domain.audit.models import AuditEvent, AuditEventType
from domain.audit.services import new_event
from domain.billing.cap import apply_cap, current_month, evaluate
from domain.billing.credits import burn_credits, credit_checks
from domain.billing.models import BillingPreferences
from domain.billing.wallet import charge_wallet, wallet_checks
from domain.common.json import JsonObject
from domain.common.rows import raw_sql
from domain.common.validation import Validator, json_problem, parse_amount, text_problem
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.events.services import CREDITS_CHANGED, SPENDING_CAP_CHANGED, WALLET_CHANGED, take_wake
from domain.features.models import FeatureToggles
from domain.ledger import services as ledger
from domain.ledger.idempotency import check_key
from domain.ledger.models import Currency, LedgerAccount, Transfer, TransferKind
from domain.usage import store, store_pg
from domain.usage.commands import UNKNOWN_CAMPAIGN, UNKNOWN_HOLD, UsageEventIn, UsageRecord
from domain.usage.holds import active_holds_of
from domain.usage.lookup import HoldRef, Lookup, lookup
from domain.usage.models import Direction, Funding, HoldStatus, PhoneNumber, UnitType, UsageHold
from domain.usage.rating import RateBook
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
    await _call_event(viewer, source, result).save()


def _call_event(viewer: Viewer, source: str, result: RecordResult) -> AuditEvent:
    """The API_CALL audit event of a batch sent to the API, not saved yet."""
    return new_event(
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
    checked = _validate(events, now, result)
    if raw_sql():
        await _record_sql(viewer, checked, now, result, source)
    else:
        await _record_orm(viewer, checked, now, result, source)
    return result


async def _record_orm(
    viewer: Viewer, checked: list[_Event], now: datetime, result: RecordResult, source: str | None
) -> None:
    """The batch through the ORM (the embedded default, SQLite): the reads first, then one transaction."""
    batch, priced = _admit(viewer, checked, now, result, await _lookup(viewer, checked, raw=False))
    if batch is None:
        if source is not None:
            async with in_transaction():
                await _audit_call(viewer, source, result)
        return
    # outside the transaction: DDL on the parent table should hold its lock only for an instant
    await store.ensure_partitions([store.month_start(e.occurred_at) for e in batch.events])
    async with in_transaction():
        rows, new_keys = await _settle(batch, priced)
        await _persist(batch, rows, new_keys, priced)
        if source is not None:
            await _audit_call(viewer, source, result)


async def _record_sql(
    viewer: Viewer, checked: list[_Event], now: datetime, result: RecordResult, source: str | None
) -> None:
    """The batch on PostgreSQL, in one transaction of four statements whatever it holds: the reads
    (`lookup.lookup`), the idempotency keys claimed, the accounts locked, the live holds read; then the settle and
    persist phases decided in Python and written as one statement (`_settle_and_persist_sql`)."""
    # outside the transaction: DDL on the parent table should hold its lock only for an instant (the months of
    # every valid event: those refused later only make a partition exist a little earlier)
    await store.ensure_partitions([store.month_start(e.occurred_at) for e in checked])
    async with in_transaction():
        batch, priced = _admit(viewer, checked, now, result, await _lookup(viewer, checked, raw=True))
        if batch is not None:
            await _settle_and_persist_sql(batch, priced, source)
        elif source is not None:
            await _audit_call(viewer, source, result)


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
assert _Details._fields == store.EventRow.__struct_fields__[-len(_Details._fields) :]  # `_event_row` relies on it


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


async def _lookup(viewer: Viewer, checked: list[_Event], *, raw: bool) -> Lookup:
    """Phase 2's reads: the customers, holds and campaigns the events name (and what phase 3 needs of them)."""
    return await lookup(
        viewer,
        {e.customer_id for e in checked},
        {e.hold_id for e in checked if e.hold_id not in (None, UNKNOWN_HOLD)},
        {e.details.campaign_id for e in checked if e.details.campaign_id is not None},
        raw=raw,
    )


def _admit(
    viewer: Viewer, checked: list[_Event], now: datetime, result: RecordResult, found: Lookup
) -> tuple[_Batch | None, dict[int, _Priced]]:
    """Phases 2 and 3 on what `_lookup` read: the events admitted (`_resolve_accounts`), rated (`_rate`)."""
    batch = _resolve_accounts(viewer, checked, now, result, found)
    result.rejected.sort(key=lambda r: r.index)
    return batch, (_rate(batch, found) if batch is not None else {})


def _resolve_accounts(
    viewer: Viewer, checked: list[_Event], now: datetime, result: RecordResult, found: Lookup
) -> _Batch | None:
    """Phase 2: the customers (those the viewer may see) and the holds the events name. An event naming neither,
    a key seen earlier in the batch (a duplicate) or more than a batch may carry for its customer drops out here.
    None when no event is left."""
    admitted: list[_Event] = []
    seen: set[tuple[int, str]] = set()
    totals: dict[tuple[int, UnitType], Decimal] = defaultdict(Decimal)
    for e in checked:
        refusal = _unresolved(e, found.customers, found.holds, found.campaigns)
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
    batch = _Batch(viewer, now, result, found.customers, admitted)
    for e in admitted:
        batch.by_customer[e.customer_id].append(e)
    return batch


def _unresolved(
    e: _Event, customers: Mapping[int, Customer], holds: Mapping[int, HoldRef], campaigns: Mapping[int, int]
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


def _rate(batch: _Batch, found: Lookup) -> dict[int, _Priced]:
    """Phase 3: what pays for each customer's usage (its AI-credits switch and billing mode) and each event's
    price at the instant it occurred (late events keep the price of their time)."""
    priced: dict[int, _Priced] = {}
    for customer_id, events in batch.by_customer.items():
        prefs, toggles = found.prefs[customer_id], found.toggles[customer_id]
        funding = funding_of(toggles.ai_credits_enabled, prefs)
        partner_id = batch.customers[customer_id].partner_id
        rated = [_rated(e, found.rates, partner_id, funding) for e in events]
        priced[customer_id] = _Priced(funding, rated, prefs, toggles)
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
    new_keys, fresh_of, locked = await _claim_and_lock(batch, priced)
    holds_of = await active_holds_of(_holders(fresh_of, priced), batch.now)
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


async def _claim_and_lock(
    batch: _Batch, priced: dict[int, _Priced]
) -> tuple[set[tuple[int, str]], dict[int, list[_Rated]], dict[str, LedgerAccount]]:
    """Claims the events' idempotency keys, then locks every account the batch may post to. Returns the keys that
    were new, each customer's new events (in customer order) and the locked accounts."""
    new_keys = await store.claim_keys([(e.customer_id, e.key) for e in batch.events], batch.now)
    fresh_of = {
        cid: [r for r in priced[cid].rated if (cid, r.event.key) in new_keys] for cid in sorted(batch.by_customer)
    }
    funding_by = {cid: priced[cid].funding for cid, fresh in fresh_of.items() if fresh}
    # Every account the batch may post to, locked at once in id order: partners' revenue accounts are shared by
    # their customers, so taking them customer by customer deadlocked concurrent batches mixing partners.
    locked = await ledger.lock_accounts(
        *(ref for cid, f in funding_by.items() for ref in _accounts_of(batch.customers[cid], f))
    )
    return new_keys, fresh_of, locked


async def _claim_and_lock_sql(
    batch: _Batch, priced: dict[int, _Priced]
) -> tuple[set[tuple[int, str]], dict[int, list[_Rated]], dict[str, LedgerAccount]]:
    """`_claim_and_lock` in one statement (`store_pg.claim_and_lock`): the same claims and locks, in the same order,
    but the accounts of every customer in the batch are locked, also one whose events all turn out to be
    duplicates (what `_claim_and_lock` learns only from the claim)."""
    refs = [ref for cid in sorted(batch.by_customer) for ref in _accounts_of(batch.customers[cid], priced[cid].funding)]
    pairs = [(e.customer_id, e.key) for e in batch.events]
    duplicates, rows = await store_pg.claim_and_lock(pairs, batch.now, sorted({r.key for r in refs}))
    locked = await ledger.lock_accounts(*refs, locked=rows)
    new_keys = set(pairs) - duplicates
    fresh_of = {
        cid: [r for r in priced[cid].rated if (cid, r.event.key) in new_keys] for cid in sorted(batch.by_customer)
    }
    return new_keys, fresh_of, locked


def _holders(fresh_of: Mapping[int, list[_Rated]], priced: Mapping[int, _Priced]) -> list[int]:
    """The customers with new events whose credits or wallet pay: their live holds count against the balance."""
    return [cid for cid, fresh in fresh_of.items() if fresh and priced[cid].funding != Funding.INVOICE]


def _accounts_of(customer: Customer, funding: Funding) -> list[ledger.AccountRef]:
    """The ledger accounts `_pay` may post to for this customer: what pays, the invoice that takes what it cannot
    pay, and the partner's revenue."""
    refs = [
        ledger.revenue(Currency.USD, customer.partner_id, customer.id),
        ledger.customer_invoice(customer.id, customer.partner_id),
    ]
    if funding == Funding.CREDITS:
        refs += [
            ledger.customer_credits(customer.id, customer.partner_id),
            ledger.revenue(Currency.CREDITS, customer.partner_id, customer.id),
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
    charge = _charge(customer, rated, paid, priced.funding)
    ledger.check_limits(locked, charge.moves)
    paid_transfer = unpaid_transfer = None
    if charge.paid > ZERO:
        if priced.funding == Funding.CREDITS:
            paid_transfer = await burn_credits(customer, charge.paid, charge.meta, locked, priced.prefs, priced.toggles)
        else:
            paid_transfer = await charge_wallet(customer, charge.paid, charge.meta, locked, priced.prefs)
    if charge.unpaid > ZERO:
        unpaid_transfer = await ledger.post(
            charge.invoice,
            charge.revenue_usd,
            charge.unpaid,
            TransferKind.USAGE_CHARGE,
            metadata={**charge.meta, "unpaid": True},
            locked=locked,
        )
    return paid_transfer, unpaid_transfer


class _Charge(NamedTuple):
    """What one customer's new events cost: `paid` from `payer` (credits or USD) to the partner's revenue, `unpaid`
    USD from the month's invoice to revenue; `moves` for the limit check; the transfers' metadata."""

    payer: ledger.AccountRef
    paid: Decimal
    unpaid: Decimal
    invoice: ledger.AccountRef
    revenue_usd: ledger.AccountRef
    moves: list[tuple[ledger.AccountRef, ledger.AccountRef, Decimal]]
    meta: JsonObject


def _charge(customer: Customer, rated: list[_Rated], paid: list[bool], funding: Funding) -> _Charge:
    payer = _payer(customer, funding)
    by_credits = funding == Funding.CREDITS
    paid_amount = sum(((r.credits if by_credits else r.cost) for r, ok in zip(rated, paid, strict=True) if ok), ZERO)
    unpaid_cost = sum((r.cost for r, ok in zip(rated, paid, strict=True) if not ok), ZERO)
    invoice = ledger.customer_invoice(customer.id, customer.partner_id)
    revenue_usd = ledger.revenue(Currency.USD, customer.partner_id, customer.id)
    moves = [(invoice, revenue_usd, unpaid_cost)] if unpaid_cost > ZERO else []
    if paid_amount > ZERO:
        moves.append((payer, ledger.revenue(payer.currency, customer.partner_id, customer.id), paid_amount))
    return _Charge(payer, paid_amount, unpaid_cost, invoice, revenue_usd, moves, {"events": len(rated)})


def _event_row(
    customer: Customer, r: _Rated, ok: bool, is_free: bool, funding: Funding, now: datetime, transfer: Transfer | None
) -> store.EventRow:
    e = r.event
    return store.EventRow(
        customer.id,
        customer.partner_id,
        e.unit_type.value,
        e.quantity,
        e.occurred_at,
        e.key,
        r.price,
        r.cost,
        (funding if ok else Funding.INVOICE).value,
        ok or is_free,
        r.credits if ok else ZERO,
        e.case_type,
        e.metadata,
        e.hold_id,
        transfer.id if transfer else None,
        *e.details,
    )


# ---------------------------------------------------------------- phase 5: persist


async def _persist(
    batch: _Batch, rows: list[store.EventRow], new_keys: set[tuple[int, str]], priced: Mapping[int, _Priced]
) -> None:
    """Phase 5, in the batch's transaction: the event rows, the daily rollups and monthly spend they add to, the
    spending cap of each customer whose current month grew, and the holds the new events used."""
    rollups, details = _rollups(rows)
    await store.insert_events(rows, batch.now)
    await store.add_rollups(rollups)
    await store.add_rollup_details(details)
    spend = _spend(rollups)
    totals = await store.add_spends(spend)
    for customer_id, month in _capped(batch, spend):
        customer, prefs = batch.customers[customer_id], priced[customer_id].prefs
        await evaluate(customer, batch.viewer, batch.now, prefs=prefs, spent=totals[(customer_id, month)])
    consumed = _consumed(batch, new_keys)
    if consumed:
        await UsageHold.filter(id__in=consumed, status=HoldStatus.ACTIVE).update(
            status=HoldStatus.CONSUMED, closed_at=batch.now
        )


def _spend(rollups: list[store.RollupRow]) -> list[tuple[int, date, Decimal]]:
    """(customer, month, cost) the rows of these rollups (`_rollups`) add to the monthly spend, one per (customer,
    month): the sum of their days' costs."""
    spend: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    for customer_id, day, _, _, _, cost, _, _ in rollups:
        spend[(customer_id, store.month_start(day))] += cost
    return [(customer_id, month, amount) for (customer_id, month), amount in spend.items()]


def _capped(batch: _Batch, spend: list[tuple[int, date, Decimal]]) -> list[tuple[int, date]]:
    """The (customer, month) whose spending cap a batch applies: those whose current month grew, in order."""
    this_month = current_month(batch.now)
    return sorted((customer_id, month) for customer_id, month, _ in spend if month == this_month)


def _consumed(batch: _Batch, new_keys: set[tuple[int, str]]) -> list[int]:
    """The holds the batch's new events used."""
    return [e.hold_id for e in batch.events if e.hold_id is not None and (e.customer_id, e.key) in new_keys]


def _rollups(rows: list[store.EventRow]) -> tuple[list[store.RollupRow], list[store.RollupDetailRow]]:
    """(customer, day, unit type, case type, campaign or 0) → events, quantity, cost, credits and unpaid cost of
    the rows; and the same by (customer, day, unit type), summed from those."""
    detail: dict[tuple[int, date, str, str, int], list[Any]] = {}
    for row in rows:
        key = (row.customer_id, row.occurred_at.date(), row.unit_type, row.case_type, row.campaign_id or 0)
        acc = detail.get(key)
        if acc is None:
            acc = detail[key] = [0, ZERO, ZERO, ZERO, ZERO]
        acc[0] += 1
        acc[1] += row.quantity
        acc[2] += row.cost
        acc[3] += row.credits
        if not row.paid:
            acc[4] += row.cost
    totals: dict[tuple[int, date, str], list[Any]] = {}
    for (c, d, u, _, _), acc in detail.items():
        total = totals.setdefault((c, d, u), [0, ZERO, ZERO, ZERO, ZERO])
        for i in range(5):
            total[i] += acc[i]
    return [(c, d, u, *acc) for (c, d, u), acc in totals.items()], [
        (c, d, u, ct, cp, *acc) for (c, d, u, ct, cp), acc in detail.items()
    ]


# ---------------------------------------------------------------- phases 4 and 5 on PostgreSQL


async def _settle_and_persist_sql(batch: _Batch, priced: dict[int, _Priced], source: str | None) -> None:
    """Phases 4 and 5 on PostgreSQL, with the ORM path's rules and outcome (`_settle`, `_pay`, `_persist`): the keys
    claimed and the accounts locked as there and the live holds read after them, each customer's events allotted
    and its charges planned against the locked balances (`ledger.Postings`), then one statement writes the
    transfers, balances, credits taken from grants, event rows, rollups, spend, outbox events, holds consumed and
    the API_CALL audit event (`store_pg.write_batch`). What only some customers need (a refill request, a
    threshold alert, a cap crossed or lifted) then runs through the billing services, as on the ORM path; it sends
    no statement for a customer without refill or alert settings whose spend is under its cap."""
    result = batch.result
    new_keys, fresh_of, locked = await _claim_and_lock_sql(batch, priced)
    holds_of: dict[int, list[tuple[int, Decimal, Decimal]]] = defaultdict(list)
    for customer_id, hold_id, usd, credits in await store_pg.live_holds(_holders(fresh_of, priced), batch.now):
        holds_of[customer_id].append((hold_id, usd, credits))
    postings = ledger.Postings(locked)
    rows: list[store.EventRow] = []
    debits: list[int | None] = []
    refused: list[tuple[int, str]] = []
    outbox: list[tuple[str, int | None, int | None]] = []
    burns: list[tuple[int, Decimal]] = []
    checks: list[tuple[Customer, _Priced, Decimal]] = []
    for customer_id, fresh in fresh_of.items():
        result.duplicates += len(batch.by_customer[customer_id]) - len(fresh)
        if not fresh:
            continue
        customer, p = batch.customers[customer_id], priced[customer_id]
        paid = _allot(customer, fresh, p.funding, locked, holds_of[customer_id])
        charge = _charge(customer, fresh, paid, p.funding)
        try:
            ledger.check_limits(locked, charge.moves)
        except ledger.LimitExceeded as exc:  # nothing planned for this customer: the others go on
            error = exc.errors[0]
            result.rejected += [Rejection(r.event.index, error.code, error.message, error.field) for r in fresh]
            refused += [(customer_id, r.event.key) for r in fresh]
            continue
        paid_transfer = unpaid_transfer = None
        if charge.paid > ZERO:
            revenue = ledger.revenue(charge.payer.currency, customer.partner_id, customer.id)
            paid_transfer = postings.add(
                charge.payer, revenue, charge.paid, TransferKind.USAGE_CHARGE, metadata=charge.meta
            )
            by_credits = p.funding == Funding.CREDITS
            if by_credits:  # `burn_credits`: the grants give what the account lost
                burns.append((customer_id, charge.paid))
            outbox.append((CREDITS_CHANGED if by_credits else WALLET_CHANGED, customer_id, customer.partner_id))
            checks.append((customer, p, paid_transfer.debit_balance_after))
        if charge.unpaid > ZERO:
            unpaid_transfer = postings.add(
                charge.invoice,
                charge.revenue_usd,
                charge.unpaid,
                TransferKind.USAGE_CHARGE,
                metadata={**charge.meta, "unpaid": True},
            )
        for r, ok in zip(fresh, paid, strict=True):
            is_free = r.cost == ZERO and r.credits == ZERO
            transfer = None if is_free else (paid_transfer if ok else unpaid_transfer)
            rows.append(_event_row(customer, r, ok, is_free, p.funding, batch.now, None))
            debits.append(transfer.debit_account_id if transfer else None)
        result.accepted += len(fresh)
    if refused:
        await store.release_keys(refused)
        new_keys -= set(refused)
        result.rejected.sort(key=lambda r: r.index)
    rollups, details = _rollups(rows)
    spend = _spend(rollups)
    capped = _capped(batch, spend)
    outbox += [(SPENDING_CAP_CHANGED, cid, batch.customers[cid].partner_id) for cid, _ in capped]
    now = datetime.now(UTC)
    written = await store_pg.write_batch(
        store_pg.BatchWrite(
            transfers=postings.transfers,
            deltas=postings.deltas,
            events=rows,
            event_debits=debits,
            rollups=rollups,
            details=details,
            spends=spend,
            burns=burns,
            outbox=outbox,
            holds=_consumed(batch, new_keys),
            audit=_call_event(batch.viewer, source, result) if source is not None else None,
            now=batch.now,
            written_at=now,
            wake=bool(outbox) and take_wake(),
        )
    )
    for customer_id, credits in burns:
        if written.burned.get(customer_id, ZERO) != credits:  # as `burn_credits` refuses it, the batch with it
            raise DomainError.single(ErrorCode.INSUFFICIENT_CREDITS, "The customer does not have enough live credits.")
    for customer, p, balance in checks:
        if p.funding == Funding.CREDITS:
            await credit_checks(customer, balance, p.prefs, p.toggles)
        else:
            await wallet_checks(customer, balance, p.prefs)
    for customer_id, month in capped:
        customer, prefs = batch.customers[customer_id], priced[customer_id].prefs
        await apply_cap(customer, batch.viewer, batch.now, prefs=prefs, spent=written.spent[(customer_id, month)])


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
