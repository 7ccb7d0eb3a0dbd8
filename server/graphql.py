"""The /graphql endpoint: Strawberry over HTTP and `graphql-transport-ws`, with auth, limits and masking."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from domain.viewer import Viewer
from schema import schema
from server.auth import InvalidToken, bearer_token, client_ip, viewer_from_token
from server.context import Context
from server.logging import new_request_id
from server.settings import Settings


def _json_error(status: int, message: str, code: str, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code, "requestId": request_id}}]}, status_code=status
    )


class GraphQLView(GraphQL):
    """Strawberry's ASGI view with our context, bearer auth, a body-size cap and transport-ws only."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.is_dev else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=50,
            allowed_origins=settings.allowed_origins,
            multipart_uploads_enabled=True,
        )
        self.settings = settings

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            request_id = scope.get("state", {}).get("request_id") or new_request_id()
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > self.settings.max_body_bytes:
                await _json_error(413, "Request body too large.", "PAYLOAD_TOO_LARGE", request_id)(scope, receive, send)
                return
            try:
                scope.setdefault("state", {})["viewer"] = await self._viewer(request, request_id)
            except InvalidToken as exc:
                response = _json_error(401, str(exc), "UNAUTHENTICATED", request_id)
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _viewer(self, request: Request | WebSocket, request_id: str) -> Viewer:
        base = Viewer.anonymous(
            ip=client_ip(request.client and (request.client.host, request.client.port)),
            user_agent=request.headers.get("user-agent"),
            request_id=request_id,
        )
        return await viewer_from_token(bearer_token(request.headers), base)

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket | None = None) -> Context:
        state = request.scope.get("state", {})
        request_id = state.get("request_id") or new_request_id()
        viewer = state.get("viewer")
        if viewer is None:
            viewer = Viewer.anonymous(
                ip=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
                request_id=request_id,
            )
        return Context(request=request, response=response, viewer=viewer, request_id=request_id)

    def encode_json(self, data: object) -> str:
        return json.dumps(data, separators=(",", ":"))
