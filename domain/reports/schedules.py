"""Scheduled reports (seed 001): a format, a frequency and recipients; each complete period is reported once.

A periodic job (`run_due`) requests a report for every schedule whose latest complete period (yesterday, last
Monday-Sunday week, last calendar month, UTC) has not been requested yet; when that report is READY the build emits
`report_delivery.requested` and `deliver` emails its signed link, white-label, once. A customer has at most
`report_max_schedules_per_customer` schedules, and their recipients are limited by `recipients.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import cast

import structlog
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.common.emails import email_templates
from domain.common.validation import Validator
from domain.config import config
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode
from domain.features import pricing
from domain.partners.models import Partner
from domain.reports import recipients as recipient_rules
from domain.reports import services
from domain.reports.commands import ReportScheduleCreate, ReportScheduleDelete
from domain.reports.models import ReportFormat, ReportFrequency, ReportSchedule, ReportStatus, UsageReport
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
}


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
    emails = _recipients(command.recipients)
    await recipient_rules.check(customer.id, emails)
    _, already = last_complete_period(command.frequency, datetime.now(UTC).date())
    async with in_transaction():
        await Customer.select_for_update().get(id=customer.id)  # two concurrent creations count one after the other
        limit = config().report_max_schedules_per_customer
        if await ReportSchedule.filter(customer_id=customer.id).count() >= limit:
            raise DomainError.single(
                ErrorCode.QUOTA_EXCEEDED, f"A customer has at most {limit} report schedules; delete one first."
            )
        schedule = await ReportSchedule.create(
            customer_id=customer.id,
            partner_id=customer.partner_id,
            created_by_user_id=viewer.user_id,
            format=command.format,
            frequency=command.frequency,
            recipients=emails,
            last_period_to=already,
        )
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


async def run_due(today: date | None = None) -> int:
    """Requests the reports of every period that is complete and not yet requested; returns how many."""
    today = today or datetime.now(UTC).date()
    queued = 0
    due: list[int] = []
    for frequency in ReportFrequency:
        _, until = last_complete_period(frequency, today)
        ids = ReportSchedule.filter(Q(last_period_to=None) | Q(last_period_to__lt=until), frequency=frequency)
        due += cast("list[int]", await ids.values_list("id", flat=True))  # a flat list (Tortoise types it as tuples)
    for schedule_id in sorted(due):
        async with in_transaction():
            # re-read under the lock: two schedulers (or a redelivery) request each period once
            schedule = await ReportSchedule.select_for_update().get_or_none(id=schedule_id)
            if schedule is None:
                continue
            since, until = last_complete_period(ReportFrequency(schedule.frequency), today)
            if schedule.last_period_to is not None and schedule.last_period_to >= until:
                continue
            customer = await Customer.get_or_none(id=schedule.customer_id)
            if customer is None or customer.status != CustomerStatus.ACTIVE:
                continue
            report = await services.queue_report(
                customer,
                ReportFormat(schedule.format),
                since,
                until,
                schedule_id=schedule.id,
                with_prices=await pricing.report_with_prices(None, customer.id),  # for the customer's people
            )
            await record(
                SYSTEM,
                AuditEventType.EXPORT,
                "usage_report.create",
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
            schedule.last_period_to = until
            await schedule.save(update_fields=["last_period_to"])
            queued += 1
    return queued


def render_delivery(
    report: UsageReport,
    schedule: ReportSchedule,
    customer: Customer,
    partner: Partner,
    link: str,
    expires: datetime,
    to: list[str],
) -> EmailMessage:
    fmt = ReportFormat(report.format)
    frequency = str(schedule.frequency).lower()
    period = f"{report.period_from.isoformat()} to {report.period_to.isoformat()}"
    context = {
        "headline": f"Your {frequency} usage report",
        "body": f"Your {frequency} usage report for {period} is ready to download.",
        "facts": [("Report", _FORMAT_LABELS[fmt]), ("Period", period), ("File", report.file_name)],
        "customer": customer,
        "partner": partner,
        "link": link,
        "link_label": "Download the report",
        "expires": f"{expires:%Y-%m-%d %H:%M} UTC",
    }
    message = EmailMessage()
    message["Subject"] = f"{partner.name}: {frequency} usage report {period}"
    message["From"] = formataddr((partner.name, partner.sender_email or DEFAULT_SENDER))
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
    link = services.download_url(report, ttl=report.expires_at - datetime.now(UTC))
    if link is None:
        return False
    allowed = await recipient_rules.allowed_for(report.customer_id)
    to = [r for r in schedule.recipients if allowed.admits(r)]
    if len(to) < len(schedule.recipients):
        log.info("report_recipients_dropped", report_id=report.id, dropped=len(schedule.recipients) - len(to))
    if not to:
        return False
    customer = await Customer.get(id=report.customer_id)
    partner = await Partner.get(id=report.partner_id)
    await send(render_delivery(report, schedule, customer, partner, link, report.expires_at, to))
    return await UsageReport.filter(id=report.id, delivered_at=None).update(delivered_at=datetime.now(UTC)) == 1
