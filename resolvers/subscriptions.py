"""Live views: authorise like the query, then push the current object after each committed change.

A subscription resolver returns a `LiveStream`: which pub/sub key to watch, an optional read of the current state
(shared by every subscriber of the key in a process: the state of the customer is the same for every viewer
allowed to see it) and how a change becomes the object to push. The websocket endpoint (server/live.py) drives
streams with callbacks, without a task or a generator per idle subscription; anything else iterating the stream
(graphql-core's own `subscribe`) gets a plain async iterator over the same definition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

from domain.common.json import JsonObject
from domain.customers.models import Customer
from domain.visibility import get_visible
from resolvers.common import decode_global_id
from resolvers.context import Context, LiveStream


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
) -> LiveStream:
    return LiveStream(customer_id, topic, render, read, each_change, ctx.pubsub)


async def watch(
    ctx: Context, topic: str, customer_id: int, read: Callable[[], Awaitable[Any]] | None = None
) -> AsyncIterator[Any]:
    """Generator form for resolvers that yield themselves: the payload of each change, or `read()` after it."""

    async def render(state: Any, payload: JsonObject) -> Any:
        return state if read is not None else payload

    async for value in live(ctx, topic, customer_id, render, read, each_change=read is None):
        yield value
