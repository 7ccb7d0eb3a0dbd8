"""Webhook endpoints and their deliveries, a page at a time (the writes are mutations calling their domain services
through `perform`: schema/webhooks.py)."""

from __future__ import annotations

from domain.webhooks import endpoints
from domain.webhooks.models import WebhookDelivery, WebhookEndpoint
from resolvers.common import Page, decode_global_id, paginate
from resolvers.context import Context


async def webhook_endpoints(
    ctx: Context, customer_id: str | None, first: int | None, after: str | None
) -> Page[WebhookEndpoint]:
    pk = decode_global_id(customer_id, "Customer", "customerId") if customer_id is not None else None
    return await paginate(endpoints.endpoints_of(ctx.viewer, pk), first, after, newest_first=True)


async def webhook_deliveries(
    ctx: Context, endpoint_id: str, status: str | None, event_type: str | None, first: int | None, after: str | None
) -> Page[WebhookDelivery]:
    pk = decode_global_id(endpoint_id, "WebhookEndpoint", "endpointId")
    qs = await endpoints.deliveries_of(ctx.viewer, pk, status, event_type)
    return await paginate(qs, first, after, newest_first=True)
