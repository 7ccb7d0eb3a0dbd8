"""Usage reports: request one (validated, QUEUED, announced through the outbox), build it in a job (streaming the
customer's events in keyset chunks into a file), and hand out signed download links.

A request waits QUEUED until the export queue (`queue.py`) gives it a build slot. Each status change (RUNNING,
READY, FAILED) is its own committed transaction emitting `usage_report.updated`, so live subscribers see it. A
build is idempotent: a redelivered job finds the report final, or RUNNING under a live build, and stops. A running
build renews a heartbeat; a RUNNING report without one within the lease lost its worker and is built again by the
next delivery (or by the sweep, which re-sends it).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record, record_standalone
from domain.config import config
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.events.services import REPORT_DELIVERY_REQUESTED, USAGE_REPORT_UPDATED, emit
from domain.features import pricing
from domain.partners.models import Partner
from domain.reports import links, queue, render
from domain.reports.commands import UsageExportCreate
from domain.reports.models import FINAL_STATUSES, ReportFormat, ReportStatus, UsageReport
from domain.reports.storage import ExportStorage, storage
from domain.usage.models import UnitType, UsageEvent
from domain.viewer import Viewer
from domain.visibility import get_visible

log = structlog.get_logger("partnerdesk.reports")
MAX_DAYS = 366
CHUNK = 2000
CSV_UNITS = {ReportFormat.VOICE_CSV: UnitType.VOICE_MINUTES, ReportFormat.SMS_CSV: UnitType.SMS_SEGMENTS}
_FILES = {
    ReportFormat.VOICE_CSV: ("voice", ".csv", "text/csv; charset=utf-8"),
    ReportFormat.SMS_CSV: ("sms", ".csv", "text/csv; charset=utf-8"),
    ReportFormat.PDF: ("summary", ".pdf", "application/pdf"),
    ReportFormat.PDF_BY_CASE_TYPE: ("by-case-type", ".zip", "application/zip"),
}


# ---------------------------------------------------------------- requesting


# Reports cover days in this range: day bounds are computed one day past `to`, which must stay a real date.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2999, 12, 31)


def validate_period(since: date, until: date) -> None:
    for name, day in (("from", since), ("to", until)):
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            raise DomainError.single(ErrorCode.INVALID, f"Choose days between {EARLIEST_DAY} and {LATEST_DAY}.", name)
    if until < since:
        raise DomainError.single(ErrorCode.INVALID, "`to` is before `from`.", "to")
    if (until - since).days + 1 > MAX_DAYS:
        raise DomainError.single(ErrorCode.INVALID, f"A report covers at most {MAX_DAYS} days.", "to")


async def queue_report(
    customer: Customer,
    fmt: ReportFormat,
    since: date,
    until: date,
    *,
    requested_by_user_id: int | None = None,
    schedule_id: int | None = None,
    with_prices: bool = True,
) -> UsageReport:
    """Stores a QUEUED report and gives it a build slot if its customer and partner have one free (call inside the
    transaction that requests it). A person's request beyond the customer's quota of pending exports is refused
    (QUOTA_EXCEEDED); scheduled reports are bounded by the cap on schedules instead."""
    await queue.lock_partner(customer.partner_id)
    if schedule_id is None:
        await queue.check_quota(customer.id)
    report = await UsageReport.create(
        customer_id=customer.id,
        partner_id=customer.partner_id,
        requested_by_user_id=requested_by_user_id,
        schedule_id=schedule_id,
        format=fmt,
        period_from=since,
        period_to=until,
        with_prices=with_prices,
    )
    await queue.dispatch(customer.partner_id)
    return report


async def usage_export_create(viewer: Viewer, command: UsageExportCreate) -> UsageReport:
    """`usageExportCreate`: anyone who can see the customer may export its usage (NOT_FOUND otherwise)."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    since, until = command.from_, command.to
    validate_period(since, until)
    with_prices = await pricing.report_with_prices(viewer, customer.id)
    async with in_transaction():
        report = await queue_report(
            customer, command.format, since, until, requested_by_user_id=viewer.user_id, with_prices=with_prices
        )
        await record(
            viewer,
            AuditEventType.EXPORT,
            "usage_report.create",
            object_type="UsageReport",
            object_id=report.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={
                "format": str(command.format),
                "from": since.isoformat(),
                "to": until.isoformat(),
                "with_prices": with_prices,
            },
        )
    return report


async def usage_reports(viewer: Viewer, customer_id: int) -> QuerySet[UsageReport]:
    """The reports of one visible customer (a queryset for pagination)."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    return UsageReport.filter(customer_id=customer.id)


async def visible_report(viewer: Viewer, report_id: int, field: str = "id") -> UsageReport:
    return await get_visible(UsageReport, viewer, report_id, field=field)


# ---------------------------------------------------------------- building


@dataclass(frozen=True, slots=True)
class Built:
    storage_key: str
    file_name: str
    content_type: str
    byte_size: int
    row_count: int


def day_bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """[start of `since`, start of the day after `until`) in UTC."""
    return datetime.combine(since, time.min, UTC), datetime.combine(until + timedelta(days=1), time.min, UTC)


_READY_FIELDS = (
    "status",
    "completed_at",
    "expires_at",
    "storage_key",
    "file_name",
    "content_type",
    "byte_size",
    "row_count",
    "error",
)
_EVENT_COLUMNS = (
    "id",
    "occurred_at",
    "unit_type",
    "quantity",
    "unit_price",
    "cost",
    "credits",
    "funding",
    "case_type",
    "paid",
)


async def stream_events(
    customer_id: int, since: date, until: date, unit_type: UnitType | None = None, chunk: int = CHUNK
) -> AsyncIterator[list[render.EventRow]]:
    """The customer's events of the period in (occurred_at, id) order, `chunk` rows at a time (keyset: each query
    uses the (customer_id, occurred_at) index and nothing is held beyond one chunk). Rows are `_EVENT_COLUMNS`
    without the id."""
    start, end = day_bounds(since, until)
    last: tuple[datetime, int] | None = None
    while True:
        qs = UsageEvent.filter(customer_id=customer_id, occurred_at__gte=start, occurred_at__lt=end)
        if unit_type is not None:
            qs = qs.filter(unit_type=unit_type)
        if last is not None:
            qs = qs.filter(Q(occurred_at__gt=last[0]) | Q(occurred_at=last[0], id__gt=last[1]))
        rows = await qs.order_by("occurred_at", "id").limit(chunk).values_list(*_EVENT_COLUMNS)
        if not rows:
            return
        yield [_event_row(r) for r in rows]
        if len(rows) < chunk:
            return
        last = (rows[-1][1], rows[-1][0])


def _event_row(r: tuple[Any, ...]) -> render.EventRow:
    """An `_EVENT_COLUMNS` row as an event row (without the id), its amounts exact Decimals."""
    quantity, unit_price, cost, credits = (Decimal(str(v)) for v in r[3:7])
    return (_utc(r[1]), UnitType(r[2]), quantity, unit_price, cost, credits, r[7], r[8], bool(r[9]))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def _write_csv(report: UsageReport, target: Path) -> int:
    """Writes the CSV chunk by chunk (file I/O off the event loop); returns the number of data rows."""
    unit = CSV_UNITS[ReportFormat(report.format)]
    count = 0
    handle = await asyncio.to_thread(target.open, "w", encoding="utf-8", newline="")
    try:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(render.csv_columns(report.with_prices))
        async for rows in stream_events(report.customer_id, report.period_from, report.period_to, unit):
            writer.writerows(render.csv_row(r, report.with_prices) for r in rows)
            count += len(rows)
            await asyncio.to_thread(handle.write, buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            await asyncio.to_thread(handle.write, buffer.getvalue())
    finally:
        await asyncio.to_thread(handle.close)
    return count


async def summarise(report: UsageReport, by_case_type: bool) -> tuple[dict[str, render.Summary], int]:
    """Exact Decimal sums by (case type, day, unit type) of the period, in one streaming pass."""
    summaries: dict[str, render.Summary] = {}
    count = 0
    async for rows in stream_events(report.customer_id, report.period_from, report.period_to):
        for occurred_at, unit, quantity, _price, cost, _credits, _funding, case_type, _paid in rows:
            key = case_type if by_case_type else ""
            summary = summaries.get(key)
            if summary is None:
                summary = summaries[key] = render.Summary()
            summary.add(occurred_at.date(), unit, quantity, cost)
            count += 1
    return summaries, count


async def _heading(report: UsageReport, now: datetime) -> render.Heading:
    customer = await Customer.get(id=report.customer_id)
    partner = await Partner.get(id=report.partner_id)
    return render.Heading(
        partner.name, customer.name, report.period_from, report.period_to, now, with_prices=report.with_prices
    )


async def _write_pdf(report: UsageReport, target: Path, now: datetime) -> int:
    summaries, count = await summarise(report, by_case_type=False)
    heading = await _heading(report, now)
    pdf = await asyncio.to_thread(render.summary_pdf, heading, summaries.get("", render.Summary()))
    await asyncio.to_thread(target.write_bytes, pdf)
    return count


async def _write_zip(report: UsageReport, target: Path, now: datetime, stem: str) -> int:
    summaries, count = await summarise(report, by_case_type=True)
    heading = await _heading(report, now)
    await asyncio.to_thread(render.write_case_type_zip, target, heading, summaries, stem)
    return count


def file_name_of(report: UsageReport) -> str:
    kind, ext, _ = _FILES[ReportFormat(report.format)]
    return f"usage-{kind}-{report.period_from.isoformat()}_{report.period_to.isoformat()}{ext}"


async def render_report(report: UsageReport, store: ExportStorage, now: datetime) -> Built:
    """Builds the report's file in a scratch directory and hands it to the store."""
    fmt = ReportFormat(report.format)
    _, ext, content_type = _FILES[fmt]
    file_name = file_name_of(report)
    with tempfile.TemporaryDirectory(prefix="partnerdesk-export-") as scratch:
        target = Path(scratch) / file_name
        if fmt in CSV_UNITS:
            rows = await _write_csv(report, target)
        elif fmt is ReportFormat.PDF:
            rows = await _write_pdf(report, target, now)
        else:
            rows = await _write_zip(report, target, now, file_name.removesuffix(ext))
        key = f"{report.customer_id}/{report.id}-{secrets.token_hex(8)}{ext}"
        size = await store.put(key, target)
    return Built(key, file_name, content_type, size, rows)


async def _claim(report_id: int, now: datetime) -> UsageReport | None:
    """QUEUED (or RUNNING without a live build) → RUNNING, committed with its event; None when there is nothing to
    build or a live build holds it."""
    async with in_transaction():
        report = await UsageReport.select_for_update().get_or_none(id=report_id)
        if report is None or report.status in FINAL_STATUSES or queue.is_held(report, now):
            return None
        report.status, report.started_at, report.heartbeat_at = ReportStatus.RUNNING, now, now
        report.attempts += 1
        await report.save(update_fields=["status", "started_at", "heartbeat_at", "attempts"])
        await _announce(report)
    return report


@contextlib.asynccontextmanager
async def _heartbeat(report_id: int, attempt: int) -> AsyncIterator[None]:
    """Renews this attempt's lease while the block runs, so a long build is never mistaken for a dead one."""

    async def beat() -> None:
        every = queue.lease().total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                await UsageReport.filter(id=report_id, status=ReportStatus.RUNNING, attempts=attempt).update(
                    heartbeat_at=datetime.now(UTC)
                )
            except Exception:  # a missed beat only risks a takeover, which `_finish` resolves
                log.warning("usage_report_heartbeat_failed", report_id=report_id, exc_info=True)

    task = asyncio.create_task(beat(), name=f"usage-report-{report_id}-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _announce(report: UsageReport) -> None:
    await emit(
        USAGE_REPORT_UPDATED,
        customer_id=report.customer_id,
        partner_id=report.partner_id,
        report_id=report.id,
        status=str(report.status),
    )


async def _finish(claimed: UsageReport, apply: Callable[[UsageReport], list[str]]) -> UsageReport | None:
    """Applies the outcome if this attempt still owns the report (a takeover may have replaced it), and hands the
    freed build slot to the partner's next waiting report."""
    async with in_transaction():
        await queue.lock_partner(claimed.partner_id)
        report = await UsageReport.select_for_update().get_or_none(id=claimed.id)
        if report is None or report.status != ReportStatus.RUNNING or report.attempts != claimed.attempts:
            return None
        await report.save(update_fields=apply(report))
        await _announce(report)
        if report.status == ReportStatus.READY and report.schedule_id is not None:
            await emit(
                REPORT_DELIVERY_REQUESTED,
                customer_id=report.customer_id,
                partner_id=report.partner_id,
                report_id=report.id,
            )
        await queue.dispatch(report.partner_id)
    return report


async def build(report_id: int, store: ExportStorage | None = None, now: datetime | None = None) -> str:
    """The job: builds a dispatched report once. A failure is final (FAILED, with a message the customer may read);
    the cause is logged. Returns the report's status afterwards."""
    store = store or storage()
    now = now or datetime.now(UTC)
    report = await _claim(report_id, now)
    if report is None:
        current = await UsageReport.get_or_none(id=report_id)
        return str(current.status) if current else "MISSING"
    try:
        async with _heartbeat(report.id, report.attempts):
            built = await render_report(report, store, now)
    except Exception:
        log.exception("usage_report_failed", report_id=report_id)
        message = "Building the report failed; request it again, or quote the report id to support."

        def failed(r: UsageReport) -> list[str]:
            r.status, r.error, r.completed_at = ReportStatus.FAILED, message, datetime.now(UTC)
            return ["status", "error", "completed_at"]

        await _finish(report, failed)
        return str(ReportStatus.FAILED)

    def ready(r: UsageReport) -> list[str]:
        done = datetime.now(UTC)
        r.status, r.completed_at = ReportStatus.READY, done
        r.expires_at = done + timedelta(hours=config().export_retention_hours)
        r.storage_key, r.file_name, r.content_type = built.storage_key, built.file_name, built.content_type
        r.byte_size, r.row_count, r.error = built.byte_size, built.row_count, ""
        return [*_READY_FIELDS]

    if await _finish(report, ready) is None:
        await store.delete(built.storage_key)  # another attempt took over: its file is the one kept
        current = await UsageReport.get_or_none(id=report_id)
        return str(current.status) if current else "MISSING"
    return str(ReportStatus.READY)


# ---------------------------------------------------------------- downloading


def is_downloadable(report: UsageReport, now: datetime | None = None) -> bool:
    return (
        report.status == ReportStatus.READY
        and report.expires_at is not None
        and report.expires_at > (now or datetime.now(UTC))
    )


def download_url(report: UsageReport, now: datetime | None = None, ttl: timedelta = links.LINK_TTL) -> str | None:
    """A signed link valid for `ttl` (never beyond the report's expiry); None unless the report is READY."""
    now = now or datetime.now(UTC)
    if not is_downloadable(report, now):
        return None
    assert report.expires_at is not None
    return links.download_url(report.id, links.link_expiry(report.expires_at, now, ttl))


class Gone(Exception):
    """The link was authentic but the report is expired, deleted or not built."""


@dataclass(frozen=True, slots=True)
class Download:
    report: UsageReport
    path: Path | None  # a local file to stream
    url: str | None  # or a store's own address to redirect to


async def open_download(token: str, viewer: Viewer, now: datetime | None = None, audit: bool = True) -> Download:
    """Checks a signed link (LinkInvalid / LinkExpired / Gone) and audits the download as an export (`audit`:
    False for a HEAD request, which sends no file)."""
    now = now or datetime.now(UTC)
    report_id = links.verify(token, now)
    report = await UsageReport.get_or_none(id=report_id)
    if report is None or not is_downloadable(report, now):
        raise Gone(report_id)
    store = storage()
    path = store.local_path(report.storage_key)
    url = None if path is not None else store.url(report.storage_key, report.file_name, 300)
    if path is None and url is None:
        raise Gone(report_id)
    if not audit:
        return Download(report, path, url)
    await record_standalone(
        viewer,
        AuditEventType.EXPORT,
        "usage_report.download",
        object_type="UsageReport",
        object_id=report.id,
        partner_id=report.partner_id,
        customer_id=report.customer_id,
        actor_label=viewer.label or "signed link",
        details={"format": str(report.format), "file": report.file_name, "bytes": report.byte_size},
    )
    return Download(report, path, url)


async def purge_expired(now: datetime | None = None, limit: int = 500) -> int:
    """Deletes the files of reports past their expiry (the rows stay, without a download)."""
    now = now or datetime.now(UTC)
    store = storage()
    expired: Sequence[UsageReport] = (
        await UsageReport.filter(status=ReportStatus.READY, expires_at__lte=now).exclude(storage_key="").limit(limit)
    )
    for report in expired:
        await store.delete(report.storage_key)
        await UsageReport.filter(id=report.id).update(storage_key="")
    return len(expired)
