"""Live views: authorise like the query, then push the current object after each committed change.

A subscription resolver returns a `LiveStream`: which pub/sub key to watch, an optional read of the current state
(shared by every subscriber of the key in a process: the state of the customer is the same for every viewer
allowed to see it) and how a change becomes the object to push. The websocket endpoint (server/live.py) drives
streams with callbacks, without a task or a generator per idle subscription; anything else iterating the stream
(graphql-core's own `subscribe`) gets a plain async iterator over the same definition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any, NamedTuple, TypeVar

from domain.common.json import JsonObject
from domain.customers.models import Customer
from domain.events.services import SPENDING_CAP_CHANGED
from domain.features import pricing
from domain.usage.read import SummaryRow, summary_period, usage_summary
from domain.visibility import get_visible
from resolvers.common import decode_global_id
from resolvers.context import Context, LiveStream

T = TypeVar("T")


class CustomerRef(NamedTuple):
    """What state reads need of a customer; held by idle subscriptions instead of a whole model row."""

    id: int
    partner_id: int


async def visible_customer(ctx: Context, customer_id: Any) -> CustomerRef:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    customer = await get_visible(Customer, ctx.viewer, pk, field="customerId")
    return CustomerRef(customer.id, customer.partner_id)


def live(
    ctx: Context,
    topic: str,
    customer_id: int,
    render: Callable[[Any, JsonObject], Awaitable[Any | None]],
    read: Callable[[], Awaitable[Any]] | None = None,
    *,
    each_change: bool = False,
    initial: bool = False,
) -> LiveStream:
    """`initial`: push the current state first, then after each change (state views)."""
    return LiveStream(customer_id, topic, render, read, each_change, ctx.pubsub, initial)


async def watch(
    ctx: Context, topic: str, customer_id: int, read: Callable[[], Awaitable[Any]] | None = None
) -> AsyncIterator[Any]:
    """Generator form for resolvers that yield themselves: the payload of each change, or `read()` after it."""

    async def render(state: Any, payload: JsonObject) -> Any:
        return state if read is not None else payload

    async for value in live(ctx, topic, customer_id, render, read, each_change=read is None):
        yield value


async def usage_summary_updates(
    ctx: Context,
    customer_id: Any,
    since: date | None,
    until: date | None,
    group_by: str,
    present: Callable[[SummaryRow, bool], T],
) -> LiveStream:
    """`usageSummaryUpdated`: the summary now, then after each usage batch of the customer's current month (which
    moves the month's spend: `spending_cap.changed`). Each subscriber reads its own period and grouping; a period
    left open is the current month, taken again at each push so the view rolls over with the month."""
    customer = await visible_customer(ctx, customer_id)
    summary_period(since, until)  # a bad period is refused now, not at the first push
    viewer = ctx.viewer
    priced = (await pricing.prices_visible(viewer, [customer.id]))[customer.id]  # `present` leaves hidden costs out

    async def render(_: None, __: JsonObject) -> list[T]:
        period = summary_period(since, until)
        return [present(row, priced) for row in await usage_summary(viewer, customer.id, *period, group_by)]

    return live(ctx, SPENDING_CAP_CHANGED, customer.id, render, initial=True)
