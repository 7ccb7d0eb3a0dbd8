"""What the server and the resolvers hand each other: the per-request `Context` every resolver and field receives
(who asks, request metadata, configuration, fresh DataLoaders; built by server/graphql.py over HTTP and server/live.py
for live pushes), and the `LiveStream` a subscription resolver returns for the websocket endpoint to drive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from domain.common.json import JsonObject
from domain.config import DomainConfig, config
from domain.events.services import live_key
from domain.viewer import Viewer
from resolvers.loaders import Loaders

T = TypeVar("T")


class LiveSubscription(Protocol):
    payload: JsonObject

    async def wait(self, within: float | None = None) -> bool: ...


class LivePubSub(Protocol):
    """What a live stream needs of the process's pub/sub (server/pubsub.py) when iterated outside the websocket
    endpoint."""

    def subscribe(self, key: str) -> AbstractContextManager[LiveSubscription]: ...

    async def shared_read(self, subscription: Any, read: Callable[[], Awaitable[T]]) -> T: ...


@dataclass(slots=True, eq=False)
class LiveStream:
    """One subscription's source: `render(state, payload)` turns a change into the object to push (None: nothing
    for this subscriber); `state` is what `read()` returned after the change (None without `read`).

    `each_change`: every change matters (alerts, report updates), so changes arriving faster than pushes are
    rendered one by one instead of coalesced into the latest state.

    `initial`: the current state is pushed at once, before any change (state views: a client needs no query first).
    """

    customer_id: int
    topic: str
    render: Callable[[Any, JsonObject], Awaitable[Any | None]]
    read: Callable[[], Awaitable[Any]] | None = None
    each_change: bool = False
    pubsub: LivePubSub | None = None  # only for iteration outside the websocket endpoint
    initial: bool = False

    @property
    def key(self) -> str:
        return live_key(self.topic, self.customer_id)

    async def __aiter__(self) -> AsyncIterator[Any]:
        if self.pubsub is None:
            raise RuntimeError("live streams need the pub/sub of the process")
        with self.pubsub.subscribe(self.key) as subscription:
            changed = not self.initial
            while True:
                if changed:
                    await subscription.wait()
                changed = True
                state = await self.pubsub.shared_read(subscription, self.read) if self.read else None
                value = await self.render(state, subscription.payload)
                if value is not None:
                    yield value


@dataclass
class Context:
    request: Request | WebSocket | None  # None on live websockets (server/live.py), which need no request object
    response: Response | WebSocket | None
    viewer: Viewer
    request_id: str
    loaders: Loaders = field(init=False)
    pubsub: LivePubSub | None = None  # for live streams iterated outside the websocket endpoint
    execution_timeout: float | None = None  # seconds a query may run (schema/extensions.py); None: unbounded
    introspection: bool = True  # whether this caller may introspect the schema
    config: DomainConfig = field(default_factory=config)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.viewer)

    def reset_loaders(self) -> None:
        """After the viewer changes (login, organization switch) cached rows may no longer be visible."""
        self.loaders = Loaders(self.viewer)
