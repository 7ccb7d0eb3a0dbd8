"""Exports: request a usage report (validated, QUEUED, announced through the outbox), build any export in a job
(streaming its rows in keyset chunks into a file: usage calls and summaries, self-healed contacts, the system log),
push its progress, and hand out signed download links.

A request waits QUEUED until the export queue (`queue.py`) gives it a build slot. Each status change (RUNNING,
READY, FAILED) is its own committed transaction emitting `usage_report.updated`, so live subscribers see it. A
build is idempotent: a redelivered job finds the report final, or RUNNING under a live build, and stops. A running
build renews a heartbeat; a RUNNING report without one within the lease lost its worker and is built again by the
next delivery (or by the sweep, which re-sends it). While RUNNING, `rowsDone` of `rowCount` is pushed at least every
`export_progress_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.audit import read as audit_read
from domain.audit.models import AuditEventType
from domain.audit.services import record, record_standalone
from domain.campaigns.models import Campaign
from domain.common import ids
from domain.config import config
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.events.services import REPORT_DELIVERY_REQUESTED, USAGE_REPORT_UPDATED, emit
from domain.features import pricing
from domain.partners.models import Partner
from domain.reports import healed, links, periods, queue, render, system_log
from domain.reports.commands import UsageExportCreate
from domain.reports.models import (
    FINAL_STATUSES,
    USAGE_FORMATS,
    HealedContactColumn,
    ReportFormat,
    ReportSchedule,
    ReportStatus,
    UsageReport,
)
from domain.reports.storage import ExportStorage, storage
from domain.usage.models import UnitType, UsageEvent
from domain.viewer import Viewer
from domain.visibility import audit_actors_shown, get_visible, restrict

log = structlog.get_logger("partnerdesk.reports")
CSV_UNITS = {ReportFormat.VOICE_CSV: UnitType.VOICE_MINUTES, ReportFormat.SMS_CSV: UnitType.SMS_SEGMENTS}
_FILES = {
    ReportFormat.VOICE_CSV: ("voice", ".csv", "text/csv; charset=utf-8"),
    ReportFormat.SMS_CSV: ("sms", ".csv", "text/csv; charset=utf-8"),
    ReportFormat.PDF: ("summary", ".pdf", "application/pdf"),
    ReportFormat.PDF_BY_CASE_TYPE: ("by-case-type", ".zip", "application/zip"),
    ReportFormat.HEALED_CONTACTS_CSV: ("healed-contacts", ".csv", "text/csv; charset=utf-8"),
    ReportFormat.AUDIT_CSV: ("system-log", ".csv", "text/csv; charset=utf-8"),
}


# ---------------------------------------------------------------- requesting


async def usage_export_create(viewer: Viewer, command: UsageExportCreate) -> UsageReport:
    """`usageExportCreate`: anyone who can see the customer may export its usage (NOT_FOUND otherwise)."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    if command.format not in USAGE_FORMATS:
        raise DomainError.single(
            ErrorCode.INVALID, "Usage exports are VOICE_CSV, SMS_CSV, PDF or PDF_BY_CASE_TYPE.", "format"
        )
    since, until = command.from_, command.to
    periods.validate_period(since, until)
    timezone = periods.check_zone(command.timezone or "UTC")
    with_prices = await pricing.report_with_prices(viewer, customer.id)
    async with in_transaction():
        report = await queue.queue_report(
            customer,
            command.format,
            since,
            until,
            timezone=timezone,
            requested_by_user_id=viewer.user_id,
            with_prices=with_prices,
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
    return restrict(UsageReport, viewer).filter(customer_id=customer.id)


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


_READY_FIELDS = (
    "status",
    "completed_at",
    "expires_at",
    "storage_key",
    "file_name",
    "content_type",
    "byte_size",
    "row_count",
    "rows_done",
    "error",
)


class Progress:
    """Counts the rows a build has written and pushes the count (a `usage_report.updated` event with the report's
    `rowsDone`) at most every `export_progress_seconds`, while this attempt still owns the report."""

    def __init__(self, report: UsageReport) -> None:
        self.report = report
        self.done = 0
        self.every = config().export_progress_seconds
        self._last = time.monotonic()

    async def start(self, total: int) -> None:
        self.report.row_count = total
        await self._push(row_count=total)

    async def advance(self, rows: int) -> None:
        self.done += rows
        if time.monotonic() - self._last >= self.every:
            await self._push()

    async def _push(self, **extra: int) -> None:
        report = self.report
        async with in_transaction():
            changed = await UsageReport.filter(
                id=report.id, status=ReportStatus.RUNNING, attempts=report.attempts
            ).update(rows_done=self.done, **extra)
            if changed:
                await _announce(report, rows_done=self.done)
        self._last = time.monotonic()


async def _keyset(
    qs: QuerySet[Any], columns: Sequence[str], time_field: str | None, chunk: int
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """Rows of `qs` in (time_field, id) order (or id order), `chunk` at a time: each query seeks past the last row
    seen, and nothing is held beyond one chunk. `columns` begin with "id" (then `time_field`)."""
    last: tuple[Any, int] | None = None
    order = (time_field, "id") if time_field else ("id",)
    while True:
        window = qs
        if last is not None:
            if time_field:
                window = window.filter(
                    Q(**{f"{time_field}__gt": last[0]}) | Q(**{time_field: last[0], "id__gt": last[1]})
                )
            else:
                window = window.filter(id__gt=last[1])
        rows = await window.order_by(*order).limit(chunk).values_list(*columns)
        if not rows:
            return
        yield rows
        if len(rows) < chunk:
            return
        last = (rows[-1][1] if time_field else None, rows[-1][0])


def _events_of(report: UsageReport, unit_type: UnitType | None = None) -> QuerySet[UsageEvent]:
    start, end = periods.day_bounds(report.period_from, report.period_to, report.timezone)
    qs = UsageEvent.filter(customer_id=report.customer_id, occurred_at__gte=start, occurred_at__lt=end)
    return qs.filter(unit_type=unit_type) if unit_type is not None else qs


_CALL_COLUMNS = (
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
    "direction",
    "from_number",
    "to_number",
    "duration_seconds",
    "segments",
    "campaign_id",
    "call_id",
)


async def stream_events(
    report: UsageReport, unit_type: UnitType | None = None, chunk: int | None = None
) -> AsyncIterator[list[render.CallRow]]:
    """The report's events (of one unit type) in (occurred_at, id) order, `chunk` rows at a time, with their call
    or message details, times in the report's time zone."""
    tz = periods.zone(report.timezone)
    names = dict(await Campaign.filter(customer_id=report.customer_id).values_list("id", "name"))
    size = chunk or config().export_chunk_rows
    async for rows in _keyset(_events_of(report, unit_type), _CALL_COLUMNS, "occurred_at", size):
        yield [_call_row(r, tz, names) for r in rows]


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _call_row(r: tuple[Any, ...], tz: tzinfo, campaigns: dict[int, str]) -> render.CallRow:
    campaign = r[15]
    return render.CallRow(
        occurred_at=_local(r[1], tz),
        unit_type=UnitType(r[2]),
        quantity=_decimal(r[3]),
        unit_price=_decimal(r[4]),
        cost=_decimal(r[5]),
        credits=_decimal(r[6]),
        funding=str(r[7]),
        case_type=r[8] or "",
        paid=bool(r[9]),
        direction=str(r[10]) if r[10] else None,
        from_number=r[11],
        to_number=r[12],
        duration_seconds=r[13],
        segments=r[14],
        campaign_id=ids.encode("Campaign", campaign) if campaign else "",
        campaign=campaigns.get(campaign, "") if campaign else "",
        call_id=r[16],
    )


def _local(moment: datetime, tz: tzinfo) -> datetime:
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return utc.astimezone(tz)


class _CsvFile:
    """A CSV written chunk by chunk (file I/O off the event loop): RFC 4180, UTF-8, CRLF."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.rows = 0
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    async def __aenter__(self) -> _CsvFile:
        self._handle = await asyncio.to_thread(self.target.open, "w", encoding="utf-8", newline="")
        return self

    async def write(self, rows: Sequence[Sequence[str]], *, header: bool = False) -> None:
        self._writer.writerows(rows)
        self.rows += 0 if header else len(rows)
        await asyncio.to_thread(self._handle.write, self._buffer.getvalue())
        self._buffer.seek(0)
        self._buffer.truncate()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._handle.close)


async def _write_calls(report: UsageReport, target: Path, progress: Progress) -> int:
    """VOICE_CSV / SMS_CSV: one row per call or message; no prices where the customer's pricing is hidden."""
    unit = CSV_UNITS[ReportFormat(report.format)]
    assert report.customer_id is not None
    prices = report.with_prices
    await progress.start(await _events_of(report, unit).count())
    async with _CsvFile(target) as out:
        await out.write([render.call_columns(unit, prices)], header=True)
        async for rows in stream_events(report, unit):
            await out.write([render.call_cells(r, prices) for r in rows])
            await progress.advance(len(rows))
    return out.rows


async def _write_healed(report: UsageReport, target: Path, progress: Progress) -> int:
    """HEALED_CONTACTS_CSV: the contacts confirmed in the period (not flagged wrong), only the chosen columns."""
    assert report.customer_id is not None
    columns = [HealedContactColumn(c) for c in report.columns or []]
    start, end = periods.day_bounds(report.period_from, report.period_to, report.timezone)
    tz = periods.zone(report.timezone)
    qs = healed.in_reports(report.customer_id).filter(confirmed_at__gte=start, confirmed_at__lt=end)
    await progress.start(await qs.count())
    async with _CsvFile(target) as out:
        await out.write([[render.HEALED_HEADERS[c] for c in columns]], header=True)
        fields = ("id", "confirmed_at", *healed.ROW_FIELDS)
        async for rows in _keyset(qs, fields, "confirmed_at", config().export_chunk_rows):
            chunk = []
            for r in rows:
                values = list(r[2:])
                values[3] = _local(values[3], tz) if values[3] else None
                values[4] = _local(values[4], tz)
                chunk.append(render.healed_cells(healed.row_of(tuple(values)), columns))
            await out.write(chunk)
            await progress.advance(len(rows))
    return out.rows


async def _write_audit(report: UsageReport, target: Path, progress: Progress) -> int:
    """AUDIT_CSV: the system log as its requester saw it (the same rows and redactions as `auditEvents`)."""
    viewer, f = system_log.scope_of(report)
    qs = audit_read.audit_events(viewer, f)
    await progress.start(await qs.count())
    tz = periods.zone(report.timezone)
    async with _CsvFile(target) as out:
        await out.write([render.AUDIT_COLUMNS], header=True)
        async for events in system_log.stream(qs, config().export_chunk_rows):
            shown = await audit_actors_shown(viewer, [(e.actor_user_id, e.actor_api_key_id) for e in events])
            await out.write(
                [render.audit_cells(system_log.cells(viewer, e, ok, tz)) for e, ok in zip(events, shown, strict=True)]
            )
            await progress.advance(len(events))
    return out.rows


async def summarise(
    report: UsageReport, by_case_type: bool, progress: Progress | None = None
) -> tuple[dict[str, render.Summary], int]:
    """Exact Decimal sums by (case type, local day, unit type) of the period, in one streaming pass."""
    summaries: dict[str, render.Summary] = {}
    count = 0
    tz = periods.zone(report.timezone)
    qs = _events_of(report)
    if progress is not None:
        await progress.start(await qs.count())
    columns = ("id", "occurred_at", "unit_type", "quantity", "cost", "case_type")
    async for rows in _keyset(qs, columns, "occurred_at", config().export_chunk_rows):
        for _id, occurred_at, unit, quantity, cost, case_type in rows:
            key = case_type if by_case_type else ""
            summary = summaries.get(key)
            if summary is None:
                summary = summaries[key] = render.Summary()
            summary.add(_local(occurred_at, tz).date(), UnitType(unit), _decimal(quantity), _decimal(cost))
        count += len(rows)
        if progress is not None:
            await progress.advance(len(rows))
    return summaries, count


async def _heading(report: UsageReport, now: datetime) -> render.Heading:
    assert report.customer_id is not None
    customer = await Customer.get(id=report.customer_id)
    partner = await Partner.get(id=report.partner_id)
    brand = render.Branding(
        partner.name, partner.primary_color, partner.secondary_color, render.logo_bytes(partner.logo_url)
    )
    prices = report.with_prices
    return render.Heading(brand, customer.name, report.period_from, report.period_to, report.timezone, now, prices)


async def _write_pdf(report: UsageReport, target: Path, now: datetime, progress: Progress) -> int:
    summaries, count = await summarise(report, by_case_type=False, progress=progress)
    heading = await _heading(report, now)
    pdf = await asyncio.to_thread(render.summary_pdf, heading, summaries.get("", render.Summary()))
    await asyncio.to_thread(target.write_bytes, pdf)
    return count


async def _write_zip(report: UsageReport, target: Path, now: datetime, stem: str, progress: Progress) -> int:
    summaries, count = await summarise(report, by_case_type=True, progress=progress)
    heading = await _heading(report, now)
    await asyncio.to_thread(render.write_case_type_zip, target, heading, summaries, stem)
    return count


def file_name_of(report: UsageReport) -> str:
    kind, ext, _ = _FILES[ReportFormat(report.format)]
    prefix = (
        "" if ReportFormat(report.format) in (ReportFormat.HEALED_CONTACTS_CSV, ReportFormat.AUDIT_CSV) else "usage-"
    )
    return f"{prefix}{kind}-{report.period_from.isoformat()}_{report.period_to.isoformat()}{ext}"


async def render_report(report: UsageReport, store: ExportStorage, now: datetime) -> Built:
    """Builds the report's file in a scratch directory and hands it to the store."""
    fmt = ReportFormat(report.format)
    _, ext, content_type = _FILES[fmt]
    file_name = file_name_of(report)
    progress = Progress(report)
    with tempfile.TemporaryDirectory(prefix="partnerdesk-export-") as scratch:
        target = Path(scratch) / file_name
        if fmt in CSV_UNITS:
            rows = await _write_calls(report, target, progress)
        elif fmt is ReportFormat.HEALED_CONTACTS_CSV:
            rows = await _write_healed(report, target, progress)
        elif fmt is ReportFormat.AUDIT_CSV:
            rows = await _write_audit(report, target, progress)
        elif fmt is ReportFormat.PDF:
            rows = await _write_pdf(report, target, now, progress)
        else:
            rows = await _write_zip(report, target, now, file_name.removesuffix(ext), progress)
        owner = report.customer_id if report.customer_id is not None else f"p{report.partner_id}"
        key = f"{owner}/{report.id}-{secrets.token_hex(8)}{ext}"
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
        report.attempts, report.rows_done = report.attempts + 1, 0
        await report.save(update_fields=["status", "started_at", "heartbeat_at", "attempts", "rows_done"])
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


async def _announce(report: UsageReport, rows_done: int | None = None) -> None:
    """`usage_report.updated` for live views (keyed by the customer; partner-wide exports by none)."""
    progress = {} if rows_done is None else {"rows_done": rows_done}
    await emit(
        USAGE_REPORT_UPDATED,
        customer_id=report.customer_id,
        partner_id=report.partner_id,
        report_id=report.id,
        status=str(report.status),
        **progress,
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
        if report.schedule_id is not None:
            await ReportSchedule.filter(id=report.schedule_id, last_report_id=report.id).update(
                last_status=report.status
            )
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
        r.byte_size, r.row_count, r.rows_done, r.error = built.byte_size, built.row_count, built.row_count, ""
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


def download_url(
    report: UsageReport, now: datetime | None = None, ttl: timedelta = links.LINK_TTL, base_url: str | None = None
) -> str | None:
    """A signed link valid for `ttl` (never beyond the report's expiry), under `base_url` (else PUBLIC_URL); None
    unless the report is READY."""
    now = now or datetime.now(UTC)
    if not is_downloadable(report, now):
        return None
    assert report.expires_at is not None
    return links.download_url(report.id, links.link_expiry(report.expires_at, now, ttl), base_url)


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
