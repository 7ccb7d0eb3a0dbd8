"""Billing alerts of a customer (retrying one goes straight to its service)."""

from __future__ import annotations

from domain.alerts import services
from domain.alerts.models import Alert
from resolvers.common import Page, decode_global_id, paginate
from resolvers.context import Context


async def alerts(ctx: Context, customer_id: str, first: int | None, after: str | None) -> Page[Alert]:
    pk = decode_global_id(customer_id, "Customer", "customer_id")
    return await paginate(await services.customer_alerts(ctx.viewer, pk), first, after, newest_first=True)
