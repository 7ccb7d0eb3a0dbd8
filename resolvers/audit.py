"""The audit log as the viewer may see it."""

from __future__ import annotations

from datetime import datetime

from domain.audit.models import AuditEvent, AuditEventType
from domain.common.json import JsonValue
from domain.visibility import audit_details, restrict, sees_partner_figures
from resolvers.common import Page, decode_global_id, paginate
from resolvers.context import Context


async def audit_events(
    ctx: Context,
    *,
    type: AuditEventType | None,
    user_id: str | None,
    customer_id: str | None,
    since: datetime | None,
    until: datetime | None,
    first: int | None,
    after: str | None,
) -> Page[AuditEvent]:
    """Newest first. Unknown or foreign user/customer ids simply match nothing."""
    qs = restrict(AuditEvent, ctx.viewer)
    if type is not None:
        qs = qs.filter(type=type)
    if user_id is not None:
        qs = qs.filter(actor_user_id=decode_global_id(user_id, "User", "userId"))
    if customer_id is not None:
        qs = qs.filter(customer_id=decode_global_id(customer_id, "Customer", "customerId"))
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return await paginate(qs, first, after, newest_first=True)


def details_of(ctx: Context, event: AuditEvent) -> JsonValue:
    return audit_details(ctx.viewer, event)


async def actor_shown(ctx: Context, event: AuditEvent) -> bool:
    """Whether the viewer may see who acted on the event and from where (label, IP, user agent)."""
    return bool(await ctx.loaders.audit_actor_shown.load((event.actor_user_id, event.actor_api_key_id)))


def chain_position(ctx: Context, event: AuditEvent) -> int | None:
    """The event's place in its partner's chain: a count of the partner's events, so not for customer users."""
    return event.seq if sees_partner_figures(ctx.viewer) else None
