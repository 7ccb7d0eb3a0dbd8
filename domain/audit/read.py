"""Reading the system log (seed 001): the events a viewer may see, narrowed by type, user, customer, time and a
search over the action and the object. The `auditEvents` query and the log's CSV export share it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from domain.audit.models import AuditEvent, AuditEventType
from domain.common import ids
from domain.viewer import Viewer
from domain.visibility import restrict

MAX_SEARCH = 100


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """None: any. `user_id` and `customer_id` are decoded primary keys (0 matches nothing)."""

    type: AuditEventType | None = None
    user_id: int | None = None
    customer_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None


def _matching(search: str) -> Q:
    """Case-insensitive text in the action or the object's type, or the object itself named by its global id."""
    text = search.strip()[:MAX_SEARCH]
    condition = Q(action__icontains=text) | Q(object_type__icontains=text) | Q(object_id=text)
    named = ids.parse(text)
    if named is not None:
        condition |= Q(object_type=named[0], object_id=str(named[1]))
    return condition


def audit_events(viewer: Viewer, f: AuditFilter) -> QuerySet[AuditEvent]:
    """The visible events matching `f` (a queryset: pages newest first, exports stream it)."""
    qs = restrict(AuditEvent, viewer)
    if f.type is not None:
        qs = qs.filter(type=f.type)
    if f.user_id is not None:
        qs = qs.filter(actor_user_id=f.user_id)
    if f.customer_id is not None:
        qs = qs.filter(customer_id=f.customer_id)
    if f.since is not None:
        qs = qs.filter(created_at__gte=f.since)
    if f.until is not None:
        qs = qs.filter(created_at__lt=f.until)
    if f.search and f.search.strip():
        qs = qs.filter(_matching(f.search))
    return qs


def object_global_id(event: AuditEvent) -> str | None:
    """The event's object as a global id (`UsageReport:12` → its id); None when it names no single object."""
    raw = event.object_id
    if not event.object_type or not raw or ids.pk_of(raw) is None:
        return None
    return ids.encode(event.object_type, raw)
