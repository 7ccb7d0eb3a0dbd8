"""The per-request GraphQL context: who asks, request metadata, and fresh DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from domain.viewer import Viewer
from resolvers.loaders import Loaders


@dataclass
class Context:
    request: Request | WebSocket | None  # None on live websockets (server/live.py), which need no request object
    response: Response | WebSocket | None
    viewer: Viewer
    request_id: str
    loaders: Loaders = field(init=False)
    pubsub: Any = None  # the process's pub/sub, for live streams iterated outside the websocket endpoint
    execution_timeout: float | None = None  # seconds a query may run (schema/extensions.py); None: unbounded
    introspection: bool = True  # whether this caller may introspect the schema

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.viewer)

    def reset_loaders(self) -> None:
        """After the viewer changes (login, organization switch) cached rows may no longer be visible."""
        self.loaders = Loaders(self.viewer)
