"""System log exports (seed 001): `auditExportCreate` puts the log, filtered as `auditEvents` filters it, through
the export pipeline as AUDIT_CSV, and is itself an EXPORT event.

The build reads the log as the requester could: partner staff their partner's events, a customer's admins their
customer's (without the partner-only details, and without who acted unless it was one of their own). A platform
admin exports one customer's log (`customerId` in the filter), under that customer's partner.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, datetime, tzinfo

from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.accounts.models import Role
from domain.audit.models import AuditEvent, AuditEventType
from domain.audit.read import AuditFilter, object_global_id
from domain.audit.services import record
from domain.common import ids
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.reports import periods, queue
from domain.reports.commands import AuditExportCreate
from domain.reports.models import ReportFormat, UsageReport
from domain.viewer import Viewer
from domain.visibility import audit_details, get_visible

_PARTNER = "partner"
_CUSTOMER = "customer"


def _may_read_log(viewer: Viewer) -> bool:
    return viewer.is_platform_admin or viewer.is_partner_staff or viewer.is_customer_admin


async def audit_export_create(viewer: Viewer, command: AuditExportCreate) -> UsageReport:
    """`auditExportCreate`: whoever may read the log exports what `auditEvents` would show them."""
    if command.format != ReportFormat.AUDIT_CSV:
        raise DomainError.single(ErrorCode.INVALID, "The system log exports as AUDIT_CSV.", "format")
    if not _may_read_log(viewer):
        raise DomainError.single(ErrorCode.FORBIDDEN, "Only administrators may export the system log.")
    customer: Customer | None = None
    if viewer.is_customer_user:
        customer = await get_visible(Customer, viewer, viewer.customer_id, field="customer_id")
        if command.customer_id is not None and command.customer_id != customer.id:
            raise DomainError.single(ErrorCode.NOT_FOUND, "Customer not found.", "customer_id")
    elif command.customer_id is not None:
        customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    elif viewer.is_platform_admin:
        raise DomainError.single(ErrorCode.REQUIRED, "Choose the customer whose log to export.", "customer_id")
    if command.since and command.until and command.until <= command.since:
        raise DomainError.single(ErrorCode.INVALID, "`to` is before `from`.", "to")
    partner_id = customer.partner_id if customer is not None else viewer.partner_id
    assert partner_id is not None
    filters: dict[str, str] = {
        "scope": _CUSTOMER if viewer.is_customer_user else _PARTNER,
        **({"type": str(command.type)} if command.type else {}),
        **({"user_id": str(command.user_id)} if command.user_id is not None else {}),
        **({"customer_id": str(customer.id)} if customer is not None else {}),
        **({"from": command.since.isoformat()} if command.since else {}),
        **({"to": command.until.isoformat()} if command.until else {}),
        **({"search": command.search[:100]} if command.search else {}),
    }
    since = command.since.date() if command.since else periods.EARLIEST_DAY
    until = command.until.date() if command.until else date.today()
    async with in_transaction():
        report = await queue.queue_report(
            customer,
            ReportFormat.AUDIT_CSV,
            min(since, until),
            until,
            partner_id=partner_id,
            filters=filters,
            requested_by_user_id=viewer.user_id,
        )
        await record(
            viewer,
            AuditEventType.EXPORT,
            "audit_log.export",
            object_type="UsageReport",
            object_id=report.id,
            partner_id=partner_id,
            customer_id=customer.id if customer is not None else None,
            details={k: v for k, v in filters.items() if k != "scope"},
        )
    return report


def scope_of(report: UsageReport) -> tuple[Viewer, AuditFilter]:
    """The reader a build stands in for (its requester's reach) and the filter it was asked with."""
    f = report.filters or {}
    if f.get("scope") == _CUSTOMER:
        viewer = Viewer(role=Role.CUSTOMER_ADMIN, partner_id=report.partner_id, customer_id=report.customer_id)
    else:
        viewer = Viewer(role=Role.PARTNER_ADMIN, partner_id=report.partner_id)
    return viewer, AuditFilter(
        type=AuditEventType(f["type"]) if "type" in f else None,
        user_id=int(f["user_id"]) if "user_id" in f else None,
        customer_id=int(f["customer_id"]) if "customer_id" in f else None,
        since=datetime.fromisoformat(f["from"]) if "from" in f else None,
        until=datetime.fromisoformat(f["to"]) if "to" in f else None,
        search=f.get("search"),
    )


async def stream(qs: QuerySet[AuditEvent], chunk: int) -> AsyncIterator[list[AuditEvent]]:
    """The events newest first, `chunk` at a time (keyset on id)."""
    last: int | None = None
    while True:
        window = qs.filter(id__lt=last) if last is not None else qs
        rows = await window.order_by("-id").limit(chunk)
        if not rows:
            return
        yield rows
        if len(rows) < chunk:
            return
        last = rows[-1].id


def cells(viewer: Viewer, event: AuditEvent, actor_shown: bool, tz: tzinfo) -> list[str | datetime | None]:
    """One event as `render.AUDIT_COLUMNS` values, redacted as the requester would see it."""
    created = event.created_at.astimezone(tz)
    return [
        created,
        str(event.type),
        event.action,
        event.object_type,
        object_global_id(event) or event.object_id,
        event.actor_label if actor_shown else None,
        ids.encode("User", event.actor_user_id) if event.actor_user_id and actor_shown else None,
        ids.encode("Customer", event.customer_id) if event.customer_id else None,
        event.ip if actor_shown else None,
        event.user_agent if actor_shown else None,
        event.request_id,
        json.dumps(audit_details(viewer, event), sort_keys=True, ensure_ascii=False),
    ]
