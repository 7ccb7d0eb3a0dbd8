"""Scheduled reports (seed 001): a format, a frequency, a delivery time in a time zone and recipients; each complete
period is reported once, at the delivery time after it ends.

A periodic job (`run_due`) takes the schedules whose `next_run_at` has come and requests a report for the latest
complete period (yesterday, last Monday-Sunday week, last calendar month, in the schedule's time zone) not requested
yet; when that report is READY the build emits `report_delivery.requested` and `deliver` emails its signed link,
white-label, once. A customer has at most `report_max_schedules_per_customer` usage schedules, plus its one
self-healed contacts report (`healedContactsReportSet`), and their recipients are limited by `recipients.py`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import cast

import structlog
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.common.commands import UNSET
from domain.common.emails import email_templates
from domain.common.json import JsonLike
from domain.common.validation import Validator
from domain.config import config
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode
from domain.features import pricing
from domain.partners.branding import Brand, brand_of
from domain.partners.models import Partner
from domain.reports import healed, periods, queue, services
from domain.reports import recipients as recipient_rules
from domain.reports.commands import (
    HealedContactsReportSet,
    ReportScheduleCreate,
    ReportScheduleDelete,
    ReportScheduleUpdate,
)
from domain.reports.models import (
    USAGE_FORMATS,
    ReportFormat,
    ReportFrequency,
    ReportSchedule,
    ReportStatus,
    UsageReport,
)
from domain.viewer import Viewer
from domain.visibility import get_visible, require_customer_manager

log = structlog.get_logger("partnerdesk.reports")
MAX_RECIPIENTS = 20
SYSTEM = Viewer.system("report schedules")
DEFAULT_SENDER = "reports@partnerdesk.example.com"
_env = email_templates(__file__)
_FORMAT_LABELS = {
    ReportFormat.VOICE_CSV: "Voice CSV",
    ReportFormat.SMS_CSV: "SMS CSV",
    ReportFormat.PDF: "PDF summary",
    ReportFormat.PDF_BY_CASE_TYPE: "PDF by case type (.zip)",
    ReportFormat.HEALED_CONTACTS_CSV: "Self-healed contacts (CSV)",
    ReportFormat.AUDIT_CSV: "System log (CSV)",
}
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def last_complete_period(frequency: ReportFrequency, today: date) -> tuple[date, date]:
    """The latest period that ended before `today` (inclusive days)."""
    if frequency == ReportFrequency.DAILY:
        day = today - timedelta(days=1)
        return day, day
    if frequency == ReportFrequency.WEEKLY:
        end = today - timedelta(days=today.weekday() + 1)  # last Sunday
        return end - timedelta(days=6), end
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def next_period_end(frequency: ReportFrequency, after: date) -> date:
    """The last day of the first complete period that ends after `after`."""
    if frequency == ReportFrequency.DAILY:
        return after + timedelta(days=1)
    if frequency == ReportFrequency.WEEKLY:
        return after + timedelta(days=(6 - after.weekday()) or 7)
    month_end = (after.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    if after < month_end:
        return month_end
    return (month_end + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def _clock(delivery_time: str) -> time:
    hours, minutes = delivery_time.split(":")
    return time(int(hours), int(minutes))


def due_period(schedule: ReportSchedule, now: datetime) -> tuple[date, date]:
    """The latest period whose delivery time (in the schedule's time zone) has come by `now`."""
    local = now.astimezone(periods.zone(schedule.timezone))
    today = local.date() if local.time() >= _clock(schedule.delivery_time) else local.date() - timedelta(days=1)
    return last_complete_period(ReportFrequency(schedule.frequency), today)


def next_run(schedule: ReportSchedule, reported_to: date) -> datetime:
    """When the period after the one ending `reported_to` is due: its delivery time the day after it ends."""
    end = next_period_end(ReportFrequency(schedule.frequency), reported_to)
    local = datetime.combine(end + timedelta(days=1), _clock(schedule.delivery_time), periods.zone(schedule.timezone))
    return local.astimezone(UTC)


def _delivery_time(raw: str | None) -> str:
    if raw is None:
        return "00:00"
    if not _HHMM.match(raw):
        raise DomainError.single(ErrorCode.INVALID, "Give the delivery time as HH:MM (24-hour clock).", "delivery_time")
    return raw


def _plan(schedule: ReportSchedule, now: datetime) -> None:
    """Sets the schedule's next run from now on: the period that is due already counts as reported when the
    schedule starts (or changes), so the first report covers the first period that ends after it."""
    _, already = due_period(schedule, now)
    if schedule.last_period_to is None or schedule.last_period_to < already:
        schedule.last_period_to = already
    schedule.next_run_at = next_run(schedule, schedule.last_period_to)


def _recipients(raw: list[str]) -> list[str]:
    v = Validator()
    if not raw:
        raise DomainError.single(ErrorCode.REQUIRED, "Add at least one recipient.", "recipients")
    if len(raw) > MAX_RECIPIENTS:
        raise DomainError.single(ErrorCode.INVALID, f"At most {MAX_RECIPIENTS} recipients.", "recipients")
    cleaned = [v.email("recipients", r) for r in raw]
    v.raise_if_invalid()
    seen: dict[str, str] = {}
    for email in cleaned:
        if email:
            seen.setdefault(email.lower(), email)
    return list(seen.values())


async def schedule_create(viewer: Viewer, command: ReportScheduleCreate) -> ReportSchedule:
    """Partner staff or the customer's admins; the first report covers the first period that ends after today. At
    most `report_max_schedules_per_customer` per customer (QUOTA_EXCEEDED), to allowed recipients only."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    if command.format not in USAGE_FORMATS:
        raise DomainError.single(
            ErrorCode.INVALID, "Schedule VOICE_CSV, SMS_CSV, PDF or PDF_BY_CASE_TYPE here.", "format"
        )
    emails = _recipients(command.recipients)
    await recipient_rules.check(customer.id, emails)
    delivery_time = _delivery_time(command.delivery_time)
    timezone = periods.check_zone(command.timezone or "UTC")
    async with in_transaction():
        await Customer.select_for_update().get(id=customer.id)  # two concurrent creations count one after the other
        limit = config().report_max_schedules_per_customer
        usage_schedules = ReportSchedule.filter(customer_id=customer.id, format__in=list(USAGE_FORMATS))
        if await usage_schedules.count() >= limit:
            raise DomainError.single(
                ErrorCode.QUOTA_EXCEEDED, f"A customer has at most {limit} report schedules; delete one first."
            )
        schedule = ReportSchedule(
            customer_id=customer.id,
            partner_id=customer.partner_id,
            created_by_user_id=viewer.user_id,
            format=command.format,
            frequency=command.frequency,
            recipients=emails,
            delivery_time=delivery_time,
            timezone=timezone,
        )
        _plan(schedule, datetime.now(UTC))
        await schedule.save()
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "report_schedule.create",
            object_type="ReportSchedule",
            object_id=schedule.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"format": str(command.format), "frequency": str(command.frequency), "recipients": len(emails)},
        )
    return schedule


async def schedule_delete(viewer: Viewer, command: ReportScheduleDelete) -> ReportSchedule:
    schedule = await get_visible(ReportSchedule, viewer, command.report_schedule_id, field="report_schedule_id")
    customer = await Customer.get(id=schedule.customer_id)
    require_customer_manager(viewer, customer)
    async with in_transaction():
        await ReportSchedule.filter(id=schedule.id).delete()
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "report_schedule.delete",
            object_type="ReportSchedule",
            object_id=schedule.id,
            partner_id=schedule.partner_id,
            customer_id=schedule.customer_id,
        )
    return schedule


async def schedules_of(viewer: Viewer, customer_id: int) -> QuerySet[ReportSchedule]:
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    return ReportSchedule.filter(customer_id=customer.id)


async def run_due(now: datetime | date | None = None) -> int:
    """Requests the report of each schedule whose delivery time came, for the latest complete period it has not
    requested yet; returns how many. (A date stands for its midnight UTC.)"""
    if isinstance(now, date) and not isinstance(now, datetime):
        now = datetime.combine(now, time.min, UTC)
    now = now or datetime.now(UTC)
    queued = 0
    ready = ReportSchedule.filter(Q(next_run_at=None) | Q(next_run_at__lte=now), enabled=True)
    due = cast("list[int]", await ready.values_list("id", flat=True))  # a flat list (Tortoise types it as tuples)
    for schedule_id in sorted(due):
        async with in_transaction():
            # re-read under the lock: two schedulers (or a redelivery) request each period once
            schedule = await ReportSchedule.select_for_update().get_or_none(id=schedule_id)
            if schedule is None or not schedule.enabled:
                continue
            since, until = due_period(schedule, now)
            customer = await Customer.get_or_none(id=schedule.customer_id)
            fresh = schedule.last_period_to is None or schedule.last_period_to < until
            if fresh and customer is not None and customer.status == CustomerStatus.ACTIVE:
                report = await _request(schedule, customer, since, until)
                schedule.last_run_at, schedule.last_report_id = now, report.id
                schedule.last_status = ReportStatus.QUEUED
                queued += 1
            if schedule.last_period_to is None or schedule.last_period_to < until:
                schedule.last_period_to = until
            schedule.next_run_at = next_run(schedule, schedule.last_period_to)
            await schedule.save(
                update_fields=["last_period_to", "next_run_at", "last_run_at", "last_report_id", "last_status"]
            )
    return queued


async def _request(schedule: ReportSchedule, customer: Customer, since: date, until: date) -> UsageReport:
    fmt = ReportFormat(schedule.format)
    report = await queue.queue_report(
        customer,
        fmt,
        since,
        until,
        timezone=schedule.timezone,
        columns=schedule.columns,
        schedule_id=schedule.id,
        with_prices=await pricing.report_with_prices(None, customer.id),  # for the customer's people
    )
    action = "healed_contacts_report.create" if fmt == ReportFormat.HEALED_CONTACTS_CSV else "usage_report.create"
    await record(
        SYSTEM,
        AuditEventType.EXPORT,
        action,
        object_type="UsageReport",
        object_id=report.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={
            "format": str(report.format),
            "from": since.isoformat(),
            "to": until.isoformat(),
            "schedule_id": schedule.id,
        },
    )
    return report


async def schedule_update(viewer: Viewer, command: ReportScheduleUpdate) -> ReportSchedule:
    """`reportScheduleUpdate`: only what was sent changes; a new rhythm starts from now (no past period is sent)."""
    found = await get_visible(ReportSchedule, viewer, command.report_schedule_id, field="report_schedule_id")
    for name in ("format", "frequency", "recipients", "delivery_time", "timezone", "enabled"):
        if getattr(command, name) is None:
            raise DomainError.single(ErrorCode.INVALID, "Leave it out to keep it; it cannot be null.", name)
    customer = await Customer.get(id=found.customer_id)
    require_customer_manager(viewer, customer)
    healed_report = found.format == ReportFormat.HEALED_CONTACTS_CSV
    if command.format is not UNSET and (healed_report or command.format not in USAGE_FORMATS):
        raise DomainError.single(ErrorCode.INVALID, "This schedule's format cannot change to that.", "format")
    emails = _recipients(command.recipients) if command.recipients is not UNSET else None
    if emails is not None:
        await recipient_rules.check(customer.id, emails)
    delivery_time = _delivery_time(command.delivery_time) if command.delivery_time is not UNSET else None
    timezone = periods.check_zone(command.timezone) if command.timezone is not UNSET else None
    async with in_transaction():
        schedule = await ReportSchedule.select_for_update().get(id=found.id)
        before = _described(schedule)
        if command.format is not UNSET:
            schedule.format = command.format
        if command.frequency is not UNSET:
            schedule.frequency = command.frequency
        if emails is not None:
            schedule.recipients = emails
        if delivery_time is not None:
            schedule.delivery_time = delivery_time
        if timezone is not None:
            schedule.timezone = timezone
        if command.enabled is not UNSET:
            schedule.enabled = command.enabled
        _plan(schedule, datetime.now(UTC))
        await schedule.save()
        await _audit_change(viewer, schedule, before)
    return schedule


def _described(schedule: ReportSchedule) -> dict[str, JsonLike]:
    return {
        "format": str(schedule.format),
        "frequency": str(schedule.frequency),
        "recipients": len(schedule.recipients),
        "delivery_time": schedule.delivery_time,
        "timezone": schedule.timezone,
        "enabled": schedule.enabled,
        "columns": list(schedule.columns or []),
    }


async def _audit_change(viewer: Viewer, schedule: ReportSchedule, before: dict[str, JsonLike] | None) -> None:
    after = _described(schedule)
    changed: dict[str, JsonLike] = {
        k: {"before": (before or {}).get(k), "after": v} for k, v in after.items() if (before or {}).get(k) != v
    }
    await record(
        viewer,
        AuditEventType.DATA_CHANGE,
        "report_schedule.update" if before is not None else "report_schedule.create",
        object_type="ReportSchedule",
        object_id=schedule.id,
        partner_id=schedule.partner_id,
        customer_id=schedule.customer_id,
        details=changed,
    )


async def healed_contacts_report_set(viewer: Viewer, command: HealedContactsReportSet) -> ReportSchedule:
    """`healedContactsReportSet`: the customer's one self-healed contacts report, created or replaced whole."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    columns = healed.check_columns(command.columns)
    emails = _recipients(command.recipients)
    await recipient_rules.check(customer.id, emails)
    delivery_time = _delivery_time(command.delivery_time)
    timezone = periods.check_zone(command.timezone)
    async with in_transaction():
        await Customer.select_for_update().get(id=customer.id)  # one report per customer, even when two save at once
        schedule = await ReportSchedule.get_or_none(customer_id=customer.id, format=ReportFormat.HEALED_CONTACTS_CSV)
        before = _described(schedule) if schedule is not None else None
        if schedule is None:
            schedule = ReportSchedule(
                customer_id=customer.id,
                partner_id=customer.partner_id,
                created_by_user_id=viewer.user_id,
                format=ReportFormat.HEALED_CONTACTS_CSV,
            )
        rhythm = (schedule.frequency, schedule.delivery_time, schedule.timezone) if before is not None else None
        schedule.enabled, schedule.frequency, schedule.recipients = command.enabled, command.frequency, emails
        schedule.delivery_time, schedule.timezone, schedule.columns = delivery_time, timezone, columns
        if rhythm != (schedule.frequency, schedule.delivery_time, schedule.timezone) or schedule.next_run_at is None:
            _plan(schedule, datetime.now(UTC))
        await schedule.save()
        await _audit_change(viewer, schedule, before)
    return schedule


async def healed_contacts_report_of(viewer: Viewer, customer_id: int) -> ReportSchedule | None:
    """The customer's self-healed contacts report settings (None until set)."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    return await ReportSchedule.get_or_none(customer_id=customer.id, format=ReportFormat.HEALED_CONTACTS_CSV)


def render_delivery(
    report: UsageReport,
    schedule: ReportSchedule,
    customer: Customer,
    partner: Partner,
    link: str,
    expires: datetime,
    to: list[str],
    brand: Brand,
) -> EmailMessage:
    fmt = ReportFormat(report.format)
    frequency = str(schedule.frequency).lower()
    period = f"{report.period_from.isoformat()} to {report.period_to.isoformat()}"
    what = "self-healed contacts report" if fmt == ReportFormat.HEALED_CONTACTS_CSV else "usage report"
    context = {
        "headline": f"Your {frequency} {what}",
        "body": f"Your {frequency} {what} for {period} is ready to download.",
        "facts": [("Report", _FORMAT_LABELS[fmt]), ("Period", period), ("File", report.file_name)],
        "customer": customer,
        "brand": brand,
        "link": link,
        "link_label": "Download the report",
        "expires": f"{expires:%Y-%m-%d %H:%M} UTC",
    }
    message = EmailMessage()
    message["Subject"] = f"{brand.name}: {frequency} {what} {period}"
    message["From"] = brand.from_header
    message["To"] = ", ".join(to)
    message["Message-ID"] = make_msgid(idstring=f"report-{report.id}", domain="partnerdesk")
    message["X-Partnerdesk-Report"] = str(report.id)
    message.set_content(_env.get_template("report.txt.j2").render(context))
    message.add_alternative(_env.get_template("report.html.j2").render(context), subtype="html")
    return message


Send = Callable[[EmailMessage], Awaitable[None]]


async def deliver(report_id: int, send: Send) -> bool:
    """Emails a READY scheduled report's link once (True when sent now) to the schedule's recipients that may still
    receive it. The link lasts as long as the report. A failed send raises, for the broker to retry; a redelivered
    job finds `delivered_at` set and stops."""
    report = await UsageReport.get_or_none(id=report_id)
    if report is None or report.schedule_id is None or report.delivered_at is not None:
        return False
    schedule = await ReportSchedule.get_or_none(id=report.schedule_id)
    if schedule is None or report.status != ReportStatus.READY or report.expires_at is None:
        return False  # deleted since, or nothing to send
    partner = await Partner.get(id=report.partner_id)
    brand = await brand_of(partner, report.customer_id, sender=DEFAULT_SENDER)
    link = services.download_url(report, ttl=report.expires_at - datetime.now(UTC), base_url=brand.base_url)
    if link is None:
        return False
    if report.customer_id is None:
        return False
    allowed = await recipient_rules.allowed_for(report.customer_id)
    to = [r for r in schedule.recipients if allowed.admits(r)]
    if len(to) < len(schedule.recipients):
        log.info("report_recipients_dropped", report_id=report.id, dropped=len(schedule.recipients) - len(to))
    if not to:
        return False
    customer = await Customer.get(id=report.customer_id)
    await send(brand.stamp(render_delivery(report, schedule, customer, partner, link, report.expires_at, to, brand)))
    return await UsageReport.filter(id=report.id, delivered_at=None).update(delivered_at=datetime.now(UTC)) == 1
