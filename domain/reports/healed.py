"""Self-healed contacts (seed 001): numbers found by enrichment and confirmed by a successful call.

The platform reports them in batches (`contactsHealedRecord`, `POST /v1/contacts/healed`; the same rights, limits
and answer as usage ingestion). A contact is recorded once per (customer, external id, new number): sending it
again is a duplicate, except that `wrongNumber: true` flags a recorded number as wrong, which takes it out of every
list and report for good. A batch is one transaction of two statements whatever its size (an insert that skips the
contacts already there, and the flags). Each batch is one INTEGRATION audit event: a sync from another system.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.common.validation import text_problem
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.reports import periods, queue
from domain.reports.commands import ContactsHealedExportCreate, ContactsHealedRecord, HealedContactIn
from domain.reports.models import HealedContact, HealedContactColumn, ReportFormat, UsageReport
from domain.usage.rules import CLOCK_SKEW, MAX_BATCH, require_recorder
from domain.usage.services import RecordResult, Rejection, phone_number_problem
from domain.viewer import Viewer
from domain.visibility import get_visible, restrict

_KEY = tuple[int, str, str]  # (customer id, external id, new number)


@dataclass(frozen=True, slots=True)
class _Contact:
    index: int
    customer_id: int
    external_id: str
    new_number: str
    old_number: str
    enriched_at: datetime | None
    confirmed_at: datetime
    call_id: str
    wrong_number: bool

    @property
    def key(self) -> _KEY:
        return (self.customer_id, self.external_id, self.new_number)


class _Refused(Exception):
    """(code, message, field)"""


def _text(raw: object, name: str, most: int, *, required: bool) -> str:
    if raw is None or raw == "":
        if required:
            raise _Refused(ErrorCode.REQUIRED, f"{name} is required.", name)
        return ""
    if not isinstance(raw, str) or len(raw) > most:
        raise _Refused(ErrorCode.INVALID, f"{name} must be text of at most {most} characters.", name)
    problem = text_problem(raw)
    if problem:
        raise _Refused(ErrorCode.INVALID, problem, name)
    return raw


def _number(raw: object, name: str, *, required: bool) -> str:
    if raw is None or raw == "":
        if required:
            raise _Refused(ErrorCode.REQUIRED, f"{name} is required.", name)
        return ""
    problem = phone_number_problem(raw, name)
    if problem:
        raise _Refused(ErrorCode.INVALID, problem, name)
    assert isinstance(raw, str)
    return raw


def _moment(raw: object, name: str, now: datetime, *, required: bool) -> datetime | None:
    if raw is None:
        if required:
            raise _Refused(ErrorCode.REQUIRED, f"{name} is required.", name)
        return None
    moment = raw
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            raise _Refused(ErrorCode.INVALID, f"{name} is not an ISO-8601 timestamp.", name) from None
    if not isinstance(moment, datetime):
        raise _Refused(ErrorCode.INVALID, f"{name} must be an ISO-8601 timestamp string.", name)
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise _Refused(ErrorCode.INVALID, f"{name} is out of range.", name) from None
    if moment > now + CLOCK_SKEW:
        raise _Refused(ErrorCode.EVENT_IN_FUTURE, f"{name} is in the future.", name)
    if moment.year < periods.EARLIEST_DAY.year:
        raise _Refused(ErrorCode.INVALID, f"{name} is out of range.", name)
    return moment


def _check(index: int, raw: HealedContactIn, now: datetime) -> _Contact | Rejection:
    try:
        if raw.malformed:
            raise _Refused(ErrorCode.INVALID, "Each contact must be a JSON object.", None)
        if raw.customer_id is None:
            raise _Refused(ErrorCode.NOT_FOUND, "Customer not found.", "customerId")
        external_id = _text(raw.external_id, "externalId", 128, required=True)
        new_number = _number(raw.new_number, "newNumber", required=True)
        old_number = _number(raw.old_number, "oldNumber", required=False)
        confirmed_at = _moment(raw.confirmed_at, "confirmedAt", now, required=True)
        enriched_at = _moment(raw.enriched_at, "enrichedAt", now, required=False)
        call_id = _text(raw.call_id, "callId", 64, required=False)
        if raw.wrong_number is not None and not isinstance(raw.wrong_number, bool):
            raise _Refused(ErrorCode.INVALID, "wrongNumber must be true or false.", "wrongNumber")
    except _Refused as refused:
        code, message, field = refused.args
        return Rejection(index, code, message, field)
    assert confirmed_at is not None
    return _Contact(
        index,
        raw.customer_id,
        external_id,
        new_number,
        old_number,
        enriched_at,
        confirmed_at,
        call_id,
        raw.wrong_number is True,
    )


async def contacts_healed_record(viewer: Viewer, command: ContactsHealedRecord) -> RecordResult:
    """Records a batch of self-healed contacts: `accepted` counts those recorded or newly flagged as wrong,
    `duplicates` those that changed nothing, and a bad one is refused alone."""
    require_recorder(viewer)
    if len(command.events) > MAX_BATCH:
        raise DomainError.single(ErrorCode.INVALID, f"At most {MAX_BATCH} contacts per call.", "events")
    now = datetime.now(UTC)
    result = RecordResult()
    checked: list[_Contact] = []
    for i, raw in enumerate(command.events):
        outcome = _check(i, raw, now)
        if isinstance(outcome, Rejection):
            result.rejected.append(outcome)
        else:
            checked.append(outcome)
    wanted = {c.customer_id for c in checked}
    customers = {c.id: c for c in await restrict(Customer, viewer).filter(id__in=wanted)} if wanted else {}
    admitted: dict[_KEY, _Contact] = {}
    flags: set[_KEY] = set()
    for c in checked:
        if c.customer_id not in customers:
            result.rejected.append(Rejection(c.index, ErrorCode.NOT_FOUND, "Customer not found.", "customerId"))
        elif c.key in admitted:
            flags |= {c.key} if c.wrong_number else set()
            result.duplicates += 1  # counted again below if it flagged the number
        else:
            admitted[c.key] = c
            flags |= {c.key} if c.wrong_number else set()
    result.rejected.sort(key=lambda r: r.index)
    if admitted:
        async with in_transaction():
            partners = {cid: c.partner_id for cid, c in customers.items()}
            inserted = await _insert(list(admitted.values()), partners, now)
            flagged = await _flag(sorted(flags - inserted), now)
        changed = inserted | flagged
        result.accepted = len(changed)
        result.duplicates += len(admitted) - len(changed)
    async with in_transaction():
        await record(
            viewer,
            AuditEventType.INTEGRATION,
            "contacts_healed.sync",
            object_type="HealedContactBatch",
            details={
                "source": command.source,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": len(result.rejected),
            },
        )
    return result


def _placeholders(rows: int, width: int, postgres: bool) -> str:
    if not postgres:
        return ", ".join("(" + ", ".join("?" * width) + ")" for _ in range(rows))
    return ", ".join("(" + ", ".join(f"${r * width + i + 1}" for i in range(width)) + ")" for r in range(rows))


_COLUMNS = (
    "customer_id",
    "partner_id",
    "external_id",
    "new_number",
    "old_number",
    "enriched_at",
    "confirmed_at",
    "call_id",
    "wrong_number",
    "flagged_at",
    "created_at",
)


async def _insert(contacts: Sequence[_Contact], partners: dict[int, int], now: datetime) -> set[_KEY]:
    """Inserts the contacts not recorded yet (one statement); returns the keys that were new."""
    conn = connections.get("default")
    postgres = conn.capabilities.dialect == "postgres"
    values: list[Any] = []
    for c in sorted(contacts, key=lambda c: c.key):  # one order for every batch: concurrent ones cannot deadlock
        flagged_at = now if c.wrong_number else None
        row = [c.customer_id, partners[c.customer_id], c.external_id, c.new_number, c.old_number]
        row += [c.enriched_at, c.confirmed_at, c.call_id, c.wrong_number, flagged_at, now]
        values += row if postgres else [_sqlite(v) for v in row]
    rows = await conn.execute_query_dict(
        f"INSERT INTO healed_contact ({', '.join(_COLUMNS)}) VALUES {_placeholders(len(contacts), len(_COLUMNS), postgres)} "
        "ON CONFLICT (customer_id, external_id, new_number) DO NOTHING "
        "RETURNING customer_id, external_id, new_number",
        values,
    )
    return {(r["customer_id"], r["external_id"], r["new_number"]) for r in rows}


async def _flag(keys: Sequence[_KEY], now: datetime) -> set[_KEY]:
    """Flags recorded numbers as wrong (one statement); returns those that were not flagged before."""
    if not keys:
        return set()
    conn = connections.get("default")
    postgres = conn.capabilities.dialect == "postgres"
    params: list[Any] = [now if postgres else _sqlite(now)]
    for key in keys:
        params += list(key)
    matches = " OR ".join(
        f"(customer_id = ${i * 3 + 2} AND external_id = ${i * 3 + 3} AND new_number = ${i * 3 + 4})"
        if postgres
        else "(customer_id = ? AND external_id = ? AND new_number = ?)"
        for i in range(len(keys))
    )
    first = "$1" if postgres else "?"
    rows = await conn.execute_query_dict(
        f"UPDATE healed_contact SET wrong_number = TRUE, flagged_at = {first} "
        f"WHERE wrong_number = FALSE AND ({matches}) RETURNING customer_id, external_id, new_number",
        params,
    )
    return {(r["customer_id"], r["external_id"], r["new_number"]) for r in rows}


def _sqlite(value: object) -> object:
    if isinstance(value, datetime):
        return str(value.astimezone(UTC))  # the text form Tortoise writes, so comparisons agree
    if isinstance(value, bool):
        return int(value)
    return value


# ---------------------------------------------------------------- reading and exporting


def in_reports(customer_id: int) -> QuerySet[HealedContact]:
    """The contacts a customer's lists and reports show: every confirmed number not flagged as wrong."""
    return HealedContact.filter(customer_id=customer_id, wrong_number=False)


async def contacts_healed(
    viewer: Viewer, customer_id: int, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[HealedContact]:
    """`contactsHealed`: a visible customer's self-healed contacts confirmed in [since, until)."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    qs = in_reports(customer.id)
    if since is not None:
        qs = qs.filter(confirmed_at__gte=since)
    if until is not None:
        qs = qs.filter(confirmed_at__lt=until)
    return qs


def check_columns(columns: Sequence[HealedContactColumn]) -> list[str]:
    if not columns:
        raise DomainError.single(ErrorCode.REQUIRED, "Choose at least one column.", "columns")
    if len(set(columns)) != len(columns):
        raise DomainError.single(ErrorCode.INVALID, "Choose each column once.", "columns")
    return [str(c) for c in columns]


async def contacts_healed_export_create(viewer: Viewer, command: ContactsHealedExportCreate) -> UsageReport:
    """`contactsHealedExportCreate`: anyone who sees the customer; a CSV with only the chosen columns, in order."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    columns = check_columns(command.columns)
    timezone = periods.check_zone(command.timezone or "UTC")
    today = datetime.now(periods.zone(timezone)).date()
    since, until = command.from_ or periods.EARLIEST_DAY, command.to or today
    periods.validate_period(since, until, max_days=None)
    async with in_transaction():
        report = await queue.queue_report(
            customer,
            ReportFormat.HEALED_CONTACTS_CSV,
            since,
            until,
            timezone=timezone,
            columns=columns,
            requested_by_user_id=viewer.user_id,
        )
        await record(
            viewer,
            AuditEventType.EXPORT,
            "healed_contacts_report.create",
            object_type="UsageReport",
            object_id=report.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"columns": columns, "from": since.isoformat(), "to": until.isoformat()},
        )
    return report


def row_of(contact: tuple[Any, ...]) -> dict[HealedContactColumn, object]:
    """A (external_id, new_number, old_number, enriched_at, confirmed_at, call_id) row by column."""
    external_id, new_number, old_number, enriched_at, confirmed_at, call_id = contact
    return {
        HealedContactColumn.EXTERNAL_ID: external_id,
        HealedContactColumn.NEW_NUMBER: new_number,
        HealedContactColumn.OLD_NUMBER: old_number,
        HealedContactColumn.ENRICHED_AT: enriched_at,
        HealedContactColumn.CONFIRMED_AT: confirmed_at,
        HealedContactColumn.CALL_ID: call_id,
    }


ROW_FIELDS = ("external_id", "new_number", "old_number", "enriched_at", "confirmed_at", "call_id")
