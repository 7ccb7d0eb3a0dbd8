"""Billing alerts of a customer, and retrying failed ones."""

from __future__ import annotations

from typing import Any

from domain.alerts import services
from domain.alerts.models import Alert
from domain.customers.models import Customer
from domain.visibility import get_visible
from resolvers.common import Outcome, Page, attempt, decode_global_id, paginate
from resolvers.context import Context


async def alerts(ctx: Context, customer_id: Any, first: int | None, after: str | None) -> Page[Alert]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    customer = await get_visible(Customer, ctx.viewer, pk, field="customerId")
    return await paginate(Alert.filter(customer_id=customer.id), first, after, newest_first=True)


async def alert_retry(ctx: Context, alert_id: Any) -> Outcome[Alert]:
    async def run() -> Alert:
        return await services.retry(ctx.viewer, decode_global_id(alert_id, "Alert", "alert_id"))

    return await attempt(run())
