"""Outgoing webhooks: endpoints (the signing secret shown once), their deliveries and the event catalogue."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.webhooks import endpoints as services
from domain.webhooks.catalog import EVENT_TYPES
from domain.webhooks.commands import (
    WebhookEndpointCreate,
    WebhookEndpointDelete,
    WebhookEndpointSecretRotate,
    WebhookEndpointUpdate,
    WebhookRedeliver,
)
from domain.webhooks.delivery import api_status
from domain.webhooks.models import EndpointStatus as DomainEndpointStatus
from domain.webhooks.models import WebhookDelivery as WebhookDeliveryRow
from domain.webhooks.models import WebhookEndpoint as WebhookEndpointRow
from resolvers import webhooks as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import WebhookError
from schema.nodes import Connection, ModelNode, maybe_view, shows
from schema.scalars import JSON

if TYPE_CHECKING:
    from schema.customers import Customer

WebhookEndpointStatus = strawberry.enum(DomainEndpointStatus, name="WebhookEndpointStatus")


@strawberry.enum(description="PENDING: waiting for its next attempt or in flight; FAILED: retries exhausted.")
class WebhookDeliveryStatus(enum.Enum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@strawberry.type(description="An event type endpoints can subscribe to (`<object>.<event>`).")
class WebhookEventType:
    name: str
    description: str


@shows(WebhookEndpointRow)
@strawberry.type(description="Where webhooks go: a partner's (its customers' events) or one customer's own.")
class WebhookEndpoint(ModelNode):
    loader = "webhook_endpoint_by_id"
    id: relay.NodeID[int]
    url: str
    description: str
    event_types: list[str]
    status: WebhookEndpointStatus  # type: ignore[valid-type]
    disabled_reason: str
    failing_since: datetime | None = strawberry.field(
        description="First failure since the last success; after 3 days of failures the endpoint is disabled."
    )
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field(description="The customer whose events it receives; null: every customer of the partner.")
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        cid = self.model.customer_id
        return maybe_view(await info.context.loaders.customer_by_id.load(cid)) if cid else None


@strawberry.type(description="The request a delivery sends (every attempt sends the same body and webhook-id).")
class WebhookRequest:
    url: str
    headers: JSON = strawberry.field(description="As last sent, without the signature.")
    body: str


@strawberry.type(description="One HTTP request of a delivery.")
class WebhookAttempt:
    attempt: int
    started_at: datetime
    response_status: int | None
    latency_ms: int | None
    error: str | None


@shows(WebhookDeliveryRow)
@strawberry.type(description="One event sent to one endpoint, with its retries.")
class WebhookDelivery(ModelNode):
    loader = "webhook_delivery_by_id"
    id: relay.NodeID[int]
    event_type: str
    attempts: int = strawberry.field(description="How many requests were sent so far.")
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    response_status: int | None = strawberry.field(description="The last response's HTTP status.")
    response_body: str = strawberry.field(description="The start of the last response's body.")
    latency_ms: int | None = strawberry.field(description="How long the last request took.")
    last_error: str
    created_at: datetime
    completed_at: datetime | None
    model: strawberry.Private[Any]

    @strawberry.field
    def status(self) -> WebhookDeliveryStatus:
        return WebhookDeliveryStatus(api_status(self.model.state))

    @strawberry.field(description="The `webhook-id` header: the same for every attempt (receivers dedupe on it).")
    async def webhook_id(self, info: Info) -> str:
        message = await info.context.loaders.webhook_message_by_id.load(self.model.message_id)
        return str(message.msg_id)

    @strawberry.field
    async def request(self, info: Info) -> WebhookRequest | None:
        endpoint = await info.context.loaders.webhook_endpoint_by_id.load(self.model.endpoint_id)
        message = await info.context.loaders.webhook_message_by_id.load(self.model.message_id)
        attempts = await info.context.loaders.webhook_attempts_by_delivery.load(self.model.id)
        headers = attempts[0].request_headers if attempts else {}
        return WebhookRequest(url=endpoint.url if endpoint else "", headers=JSON(headers), body=message.body)

    @strawberry.field(description="Every attempt, newest first (the latest 50).")
    async def attempt_log(self, info: Info) -> list[WebhookAttempt]:
        rows = await info.context.loaders.webhook_attempts_by_delivery.load(self.model.id)
        return [
            WebhookAttempt(
                attempt=a.attempt,
                started_at=a.started_at,
                response_status=a.response_status,
                latency_ms=a.latency_ms,
                error=a.error or None,
            )
            for a in rows[:50]
        ]


@strawberry.input
class WebhookDeliveryFilter:
    status: WebhookDeliveryStatus | None = None
    event_type: str | None = None


@strawberry.input
class WebhookEndpointCreateInput:
    url: str
    event_types: list[str] = strawberry.field(description="Names from `webhookEventTypes`.")
    description: str | None = None
    partner_id: strawberry.ID | None = strawberry.field(default=None, description="Platform admins only.")


@strawberry.type
class WebhookEndpointCreatePayload:
    webhook_endpoint: WebhookEndpoint | None
    secret: str | None = strawberry.field(description="The signing secret (`whsec_…`), shown this once only.")
    errors: list[WebhookError]


@strawberry.input
class WebhookEndpointUpdateInput:
    webhook_endpoint_id: strawberry.ID
    url: str | None = strawberry.UNSET
    event_types: list[str] | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.field(
        default=strawberry.UNSET, description="false pauses the endpoint; true enables it again (and resumes)."
    )


@strawberry.type
class WebhookEndpointUpdatePayload:
    webhook_endpoint: WebhookEndpoint | None
    errors: list[WebhookError]


@strawberry.input
class WebhookEndpointDeleteInput:
    webhook_endpoint_id: strawberry.ID


@strawberry.type
class WebhookEndpointDeletePayload:
    webhook_endpoint: WebhookEndpoint | None
    errors: list[WebhookError]


@strawberry.input
class WebhookEndpointSecretRotateInput:
    webhook_endpoint_id: strawberry.ID


@strawberry.type
class WebhookEndpointSecretRotatePayload:
    webhook_endpoint: WebhookEndpoint | None
    secret: str | None = strawberry.field(
        description="The new secret, shown once; the old one also signs for 24 hours (two signatures)."
    )
    errors: list[WebhookError]


@strawberry.input
class WebhookRedeliverInput:
    delivery_id: strawberry.ID


@strawberry.type
class WebhookRedeliverPayload:
    delivery: WebhookDelivery | None
    errors: list[WebhookError]


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="The events webhook endpoints can subscribe to.")
    def webhook_event_types(self) -> list[WebhookEventType]:
        return [WebhookEventType(name=name, description=text) for name, text in EVENT_TYPES.items()]

    @strawberry.field(description="Webhook endpoints the viewer sees (of one customer, when given), newest first.")
    async def webhook_endpoints(
        self, info: Info, customer_id: strawberry.ID | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[WebhookEndpoint]:
        return Connection.of(await r.webhook_endpoints(info.context, customer_id, first, after), WebhookEndpoint)

    @strawberry.field(description="An endpoint's deliveries, newest first.")
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint_id: strawberry.ID,
        filter: WebhookDeliveryFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[WebhookDelivery]:
        status = filter.status.value if filter and filter.status else None
        event_type = filter.event_type if filter else None
        page = await r.webhook_deliveries(info.context, endpoint_id, status, event_type, first, after)
        return Connection.of(page, WebhookDelivery)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(description="Registers an endpoint; answers its signing secret once.")
    async def webhook_endpoint_create(
        self, info: Info, input: WebhookEndpointCreateInput
    ) -> WebhookEndpointCreatePayload:
        outcome = await perform(info.context, services.webhook_endpoint_create, input, WebhookEndpointCreate)
        made = outcome.value
        return WebhookEndpointCreatePayload(
            webhook_endpoint=WebhookEndpoint.maybe(made.endpoint if made else None),
            secret=made.secret if made else None,
            errors=WebhookError.list(outcome.errors),
        )

    @strawberry.mutation(description="Changes an endpoint's URL, event types or description, or pauses/enables it.")
    async def webhook_endpoint_update(
        self, info: Info, input: WebhookEndpointUpdateInput
    ) -> WebhookEndpointUpdatePayload:
        outcome = await perform(info.context, services.webhook_endpoint_update, input, WebhookEndpointUpdate)
        return WebhookEndpointUpdatePayload(
            webhook_endpoint=WebhookEndpoint.maybe(outcome.value), errors=WebhookError.list(outcome.errors)
        )

    @strawberry.mutation(description="Removes an endpoint for good; its waiting deliveries fail.")
    async def webhook_endpoint_delete(
        self, info: Info, input: WebhookEndpointDeleteInput
    ) -> WebhookEndpointDeletePayload:
        outcome = await perform(info.context, services.webhook_endpoint_delete, input, WebhookEndpointDelete)
        return WebhookEndpointDeletePayload(
            webhook_endpoint=WebhookEndpoint.maybe(outcome.value), errors=WebhookError.list(outcome.errors)
        )

    @strawberry.mutation(description="A new signing secret, shown once; the old one keeps signing for 24 hours.")
    async def webhook_endpoint_secret_rotate(
        self, info: Info, input: WebhookEndpointSecretRotateInput
    ) -> WebhookEndpointSecretRotatePayload:
        outcome = await perform(
            info.context, services.webhook_endpoint_secret_rotate, input, WebhookEndpointSecretRotate
        )
        made = outcome.value
        return WebhookEndpointSecretRotatePayload(
            webhook_endpoint=WebhookEndpoint.maybe(made.endpoint if made else None),
            secret=made.secret if made else None,
            errors=WebhookError.list(outcome.errors),
        )

    @strawberry.mutation(description="Sends a delivery again now, on a fresh retry schedule, with the same webhook-id.")
    async def webhook_redeliver(self, info: Info, input: WebhookRedeliverInput) -> WebhookRedeliverPayload:
        outcome = await perform(info.context, services.webhook_redeliver, input, WebhookRedeliver)
        return WebhookRedeliverPayload(
            delivery=WebhookDelivery.maybe(outcome.value), errors=WebhookError.list(outcome.errors)
        )
