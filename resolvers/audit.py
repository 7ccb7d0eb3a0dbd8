"""The audit log as the viewer may see it."""

from __future__ import annotations

from datetime import datetime

from domain.audit import read
from domain.audit.models import AuditEvent, AuditEventType
from domain.audit.read import AuditFilter
from domain.common import ids
from domain.common.json import JsonValue
from domain.reports import system_log
from domain.reports.commands import AuditExportCreate
from domain.reports.models import ReportFormat, UsageReport
from domain.visibility import audit_details, sees_partner_figures
from resolvers.common import Outcome, Page, attempt, decode_global_id, paginate
from resolvers.context import Context


async def audit_events(
    ctx: Context,
    *,
    type: AuditEventType | None,
    user_id: str | None,
    customer_id: str | None,
    since: datetime | None,
    until: datetime | None,
    search: str | None = None,
    first: int | None,
    after: str | None,
) -> Page[AuditEvent]:
    """Newest first. Unknown or foreign user/customer ids simply match nothing."""
    f = AuditFilter(
        type=type,
        user_id=decode_global_id(user_id, "User", "userId") if user_id is not None else None,
        customer_id=decode_global_id(customer_id, "Customer", "customerId") if customer_id is not None else None,
        since=since,
        until=until,
        search=search,
    )
    return await paginate(read.audit_events(ctx.viewer, f), first, after, newest_first=True)


async def audit_event(ctx: Context, event_id: str) -> AuditEvent | None:
    pk = ids.decode(event_id, "AuditEvent")
    return await ctx.loaders.audit_event_by_id.load(pk) if pk is not None else None


async def audit_export_create(
    ctx: Context,
    *,
    type: AuditEventType | None,
    user_id: str | None,
    customer_id: str | None,
    since: datetime | None,
    until: datetime | None,
    search: str | None,
) -> Outcome[UsageReport]:
    async def run() -> UsageReport:
        command = AuditExportCreate(
            format=ReportFormat.AUDIT_CSV,
            type=type,
            user_id=decode_global_id(user_id, "User", "userId") if user_id is not None else None,
            customer_id=decode_global_id(customer_id, "Customer", "customerId") if customer_id is not None else None,
            since=since,
            until=until,
            search=search,
        )
        return await system_log.audit_export_create(ctx.viewer, command)

    return await attempt(run())


def object_id_of(event: AuditEvent) -> str:
    return read.object_global_id(event) or event.object_id


def changes_of(ctx: Context, event: AuditEvent) -> list[tuple[str, JsonValue, JsonValue]]:
    """The `{field: {before, after}}` entries of the details the viewer may read."""
    details = audit_details(ctx.viewer, event)
    if not isinstance(details, dict):
        return []
    return [
        (key, value.get("before"), value.get("after"))
        for key, value in details.items()
        if isinstance(value, dict) and set(value) == {"before", "after"}
    ]


def details_of(ctx: Context, event: AuditEvent) -> JsonValue:
    return audit_details(ctx.viewer, event)


async def actor_shown(ctx: Context, event: AuditEvent) -> bool:
    """Whether the viewer may see who acted on the event and from where (label, IP, user agent)."""
    return bool(await ctx.loaders.audit_actor_shown.load((event.actor_user_id, event.actor_api_key_id)))


def chain_position(ctx: Context, event: AuditEvent) -> int | None:
    """The event's place in its partner's chain: a count of the partner's events, so not for customer users."""
    return event.seq if sees_partner_figures(ctx.viewer) else None
