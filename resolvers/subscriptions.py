"""Live views: authorise like the query, then push the current object after each committed change.

A subscription resolver returns a `LiveStream`: which pub/sub key to watch, an optional read of the current state
(shared by every subscriber of the key in a process: the state of the customer is the same for every viewer
allowed to see it) and how a change becomes the object to push. The websocket endpoint (server/live.py) drives
streams with callbacks, without a task or a generator per idle subscription; anything else iterating the stream
(graphql-core's own `subscribe`) gets a plain async iterator over the same definition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from domain.customers.models import Customer
from domain.events.services import live_key
from domain.visibility import get_visible
from resolvers.common import decode_global_id
from resolvers.context import Context


class CustomerRef(NamedTuple):
    """What state reads need of a customer; held by idle subscriptions instead of a whole model row."""

    id: int
    partner_id: int


@dataclass(slots=True, eq=False)
class LiveStream:
    """One subscription's source: `render(state, payload)` turns a change into the object to push (None: nothing
    for this subscriber); `state` is what `read()` returned after the change (None without `read`).

    `each_change`: every change matters (alerts, report updates), so changes arriving faster than pushes are
    rendered one by one instead of coalesced into the latest state.
    """

    customer_id: int
    topic: str
    render: Callable[[Any, dict[str, Any]], Awaitable[Any | None]]
    read: Callable[[], Awaitable[Any]] | None = None
    each_change: bool = False
    pubsub: Any = None  # only for iteration outside the websocket endpoint

    @property
    def key(self) -> str:
        return live_key(self.topic, self.customer_id)

    async def __aiter__(self) -> AsyncIterator[Any]:
        if self.pubsub is None:
            raise RuntimeError("live streams need the pub/sub of the process")
        with self.pubsub.subscribe(self.key) as subscription:
            while True:
                await subscription.wait()
                state = await self.pubsub.shared_read(subscription, self.read) if self.read else None
                value = await self.render(state, subscription.payload)
                if value is not None:
                    yield value


async def visible_customer(ctx: Context, customer_id: Any) -> CustomerRef:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    customer = await get_visible(Customer, ctx.viewer, pk, field="customerId")
    return CustomerRef(customer.id, customer.partner_id)


def live(
    ctx: Context,
    topic: str,
    customer_id: int,
    render: Callable[[Any, dict[str, Any]], Awaitable[Any | None]],
    read: Callable[[], Awaitable[Any]] | None = None,
    *,
    each_change: bool = False,
) -> LiveStream:
    return LiveStream(customer_id, topic, render, read, each_change, getattr(ctx, "pubsub", None))


async def watch(
    ctx: Context, topic: str, customer_id: int, read: Callable[[], Awaitable[Any]] | None = None
) -> AsyncIterator[Any]:
    """Generator form for resolvers that yield themselves: the payload of each change, or `read()` after it."""

    async def render(state: Any, payload: dict[str, Any]) -> Any:
        return state if read is not None else payload

    async for value in live(ctx, topic, customer_id, render, read, each_change=read is None):
        yield value
