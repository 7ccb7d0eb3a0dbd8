"""The per-request context every resolver and field receives: who asks, request metadata, configuration, and
fresh DataLoaders. The server builds it (server/graphql.py over HTTP, server/live.py for live pushes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from domain.config import DomainConfig, config
from domain.viewer import Viewer
from resolvers.loaders import Loaders

T = TypeVar("T")


class LiveSubscription(Protocol):
    payload: dict[str, Any]

    async def wait(self, within: float | None = None) -> bool: ...


class LivePubSub(Protocol):
    """What a live stream needs of the process's pub/sub (server/pubsub.py) when iterated outside the websocket
    endpoint."""

    def subscribe(self, key: str) -> AbstractContextManager[LiveSubscription]: ...

    async def shared_read(self, subscription: Any, read: Callable[[], Awaitable[T]]) -> T: ...


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
