"""The system log (seed 001): who did what, when, from where."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.audit.models import AuditEvent as AuditEventRow
from domain.audit.models import AuditEventType as DomainAuditEventType
from resolvers import audit as r
from schema.common import Info
from schema.errors import ReportError
from schema.nodes import Connection, ModelNode, maybe_view, shows
from schema.scalars import JSON

if TYPE_CHECKING:
    from schema.access import ApiKey
    from schema.accounts import User
    from schema.customers import Customer
    from schema.partners import Partner
    from schema.reports import UsageReport

AuditEventType = strawberry.enum(DomainAuditEventType, name="AuditEventType")


@shows(AuditEventRow)
@strawberry.type
class AuditEvent(ModelNode):
    loader = "audit_event_by_id"
    id: relay.NodeID[int]
    type: AuditEventType  # type: ignore[valid-type]
    action: str
    object_type: str
    request_id: str
    created_at: datetime
    hash: str | None = strawberry.field(
        description="This event's hash in its chain; null for the moment (under a second) until the sequencer has "
        "linked the event into the chain."
    )
    model: strawberry.Private[Any]

    @strawberry.field(
        description="The object acted on as a global id (`node(id:)` finds it while it exists and is visible); its "
        "raw key when it is no single object."
    )
    def object_id(self) -> str:
        return r.object_id_of(self.model)

    @strawberry.field(description="The fields the event changed, each with its value before and after.")
    def changes(self, info: Info) -> list[AuditChange]:
        return [
            AuditChange(field=k, before=JSON(b), after=JSON(a)) for k, b, a in r.changes_of(info.context, self.model)
        ]

    @strawberry.field(
        description="Email of the acting user (redacted after retention). Customer users see it only for their "
        "own members and API keys: null for partner staff, platform admins and jobs."
    )
    async def actor_label(self, info: Info) -> str | None:
        return self.model.actor_label if await r.actor_shown(info.context, self.model) else None

    @strawberry.field(description="Where the actor came from; shown like `actorLabel`.")
    async def ip(self, info: Info) -> str | None:
        return self.model.ip if await r.actor_shown(info.context, self.model) else None

    @strawberry.field(description="The actor's user agent; shown like `actorLabel`.")
    async def user_agent(self, info: Info) -> str | None:
        return self.model.user_agent if await r.actor_shown(info.context, self.model) else None

    @strawberry.field(
        description="What the event changed. Customer users get the customer's part: no partner pool, revenue or "
        "funding figures and no package's restricted emails."
    )
    def details(self, info: Info) -> JSON:
        return JSON(r.details_of(info.context, self.model))

    @strawberry.field(
        description="Position in the partner's hash chain; null for customer users, and until the sequencer has "
        "linked the event (under a second after it was recorded)."
    )
    def seq(self, info: Info) -> int | None:
        return r.chain_position(info.context, self.model)

    @strawberry.field
    async def actor(self, info: Info) -> Annotated[User, strawberry.lazy("schema.accounts")] | None:
        uid = self.model.actor_user_id
        return maybe_view(await info.context.loaders.user_by_id.load(uid)) if uid else None

    @strawberry.field(description="The API key that acted, when one did (null for people, or when not visible).")
    async def actor_api_key(self, info: Info) -> Annotated[ApiKey, strawberry.lazy("schema.access")] | None:
        kid = self.model.actor_api_key_id
        return maybe_view(await info.context.loaders.api_key_by_id.load(kid)) if kid else None

    @strawberry.field
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        cid = self.model.customer_id
        return maybe_view(await info.context.loaders.customer_by_id.load(cid)) if cid else None

    @strawberry.field
    async def partner(self, info: Info) -> Annotated[Partner, strawberry.lazy("schema.partners")] | None:
        pid = self.model.partner_id
        return maybe_view(await info.context.loaders.partner_by_id.load(pid)) if pid else None


@strawberry.type(description="One field an event changed.")
class AuditChange:
    field: str
    before: JSON
    after: JSON


@strawberry.input
class AuditEventFilter:
    type: AuditEventType | None = None  # type: ignore[valid-type]
    user_id: strawberry.ID | None = None
    customer_id: strawberry.ID | None = None
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None
    search: str | None = strawberry.field(
        default=None, description="Text in the action or the object's type, or an object's global id."
    )


@strawberry.enum
class AuditExportFormat(enum.Enum):
    CSV = "CSV"


@strawberry.input
class AuditExportCreateInput:
    filter: AuditEventFilter | None = None
    format: AuditExportFormat = AuditExportFormat.CSV


@strawberry.type
class AuditExportCreatePayload:
    usage_report: Annotated[UsageReport, strawberry.lazy("schema.reports")] | None
    errors: list[ReportError]


def _utc(value: datetime | None) -> datetime | None:
    """Bounds in any offset (naive means UTC) compare correctly with the UTC timestamps stored."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@strawberry.type
class AuditQueries:
    @strawberry.field(description="Audit events within the viewer's tenancy, newest first.")
    async def audit_events(
        self, info: Info, filter: AuditEventFilter | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[AuditEvent]:
        f = filter or AuditEventFilter()
        page = await r.audit_events(
            info.context,
            type=f.type,
            user_id=f.user_id,
            customer_id=f.customer_id,
            since=_utc(f.from_),
            until=_utc(f.to),
            search=f.search,
            first=first,
            after=after,
        )
        return Connection.of(page, AuditEvent)

    @strawberry.field(description="One event of the system log with its details; null when not visible.")
    async def audit_event(self, info: Info, id: strawberry.ID) -> AuditEvent | None:
        return AuditEvent.maybe(await r.audit_event(info.context, id))


@strawberry.type
class AuditMutations:
    @strawberry.mutation(description="Exports the system log, filtered as `auditEvents` filters it (an EXPORT event).")
    async def audit_export_create(self, info: Info, input: AuditExportCreateInput) -> AuditExportCreatePayload:
        f = input.filter or AuditEventFilter()
        outcome = await r.audit_export_create(
            info.context,
            type=f.type,
            user_id=f.user_id,
            customer_id=f.customer_id,
            since=_utc(f.from_),
            until=_utc(f.to),
            search=f.search,
        )
        return AuditExportCreatePayload(usage_report=maybe_view(outcome.value), errors=ReportError.list(outcome.errors))
