"""The /graphql endpoint: Strawberry over HTTP and `graphql-transport-ws`, with auth, limits and masking.

HTTP follows the GraphQL-over-HTTP draft (https://graphql.github.io/graphql-over-http/draft/), checked by the
`graphql-http` audit in tests/test_http.py:

- The response media type is negotiated from `Accept`: `application/graphql-response+json` when the client asks
  for it (and prefers it), `application/json` for `*/*`, no `Accept`, or when preferred. Nothing acceptable → 406.
- A request error (the document does not parse or validate, or the variables do not coerce) gets no `data` entry.
  Under `application/graphql-response+json` it answers 400; under `application/json` it stays 200, as the spec
  asks for legacy clients. Field errors (a resolver failed) answer 200 under both.
- Transport failures answer a GraphQL-shaped JSON error (`errors[0].extensions.code`, `requestId`), never a
  traceback: 400 unreadable body, 401 bad token, 405 mutation over GET, 406, 413 body over the cap, 415 wrong
  content type, 500 (masked) anything unexpected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from typing import Any

import structlog
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.parse_content_type import parse_content_type
from strawberry.http.types import QueryParams
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from domain.errors import ErrorCode
from domain.viewer import Viewer
from resolvers.context import Context
from schema import schema
from schema.extensions import INTERNAL_ERROR_CODE, TIMEOUT_CODE, field_suggestions, mask_unexpected
from server.auth import InvalidToken, bearer_token, client_ip, viewer_from_token
from server.console import console_page
from server.logging import new_request_id
from server.persisted import PersistedDocuments, PersistedQueryError
from server.ratelimit import ApiRateLimiter, RateLimited, remember
from server.settings import Settings

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"

_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
    500: ErrorCode.INTERNAL_SERVER_ERROR,
}

log = structlog.get_logger("partnerdesk.http")

Receive = Callable[[], Awaitable[Any]]


class HTTPError(HTTPException):
    """An HTTP failure with extra response headers (`Allow`, `WWW-Authenticate`)."""

    def __init__(self, status_code: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code, reason)
        self.headers = dict(headers or {})


_POST_OPERATIONS = frozenset(OperationType.from_http("POST"))
_VARY = b"Accept, Authorization"


def _is_json(content_type: str | None) -> bool:
    """`Content-Type: application/json` (with parameters), as Strawberry's parser reads it (case included);
    anything else (multipart uploads, refusals) takes Strawberry's way."""
    return content_type is not None and content_type.partition(";")[0].strip() == APPLICATION_JSON


class PayloadTooLarge(Exception):
    """The request body grew past the cap while it was read (no or a false Content-Length)."""


@lru_cache(maxsize=128)  # clients send a handful of distinct Accept headers
def negotiate(accept: str | None) -> str | None:
    """The response media type for an `Accept` header, or None when it admits neither of ours.

    Each of our two types takes the q-value of the most specific range matching it. The higher q wins; on a tie
    `application/graphql-response+json` wins only when named explicitly, so `*/*` (browsers, curl, older
    clients) keeps getting `application/json` as the spec requires.
    """
    if accept is None or not accept.strip():
        return APPLICATION_JSON
    # media type → (specificity, q) of the most specific range matching it so far
    matches: dict[str, tuple[int, float]] = {}
    for item in accept.split(","):
        media_range, _, params = item.partition(";")
        media_range = media_range.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        for media_type in (APPLICATION_JSON, GRAPHQL_RESPONSE_JSON):
            specificity = {media_type: 2, "application/*": 1, "*/*": 0}.get(media_range)
            if specificity is not None and specificity >= matches.get(media_type, (-1, 0.0))[0]:
                matches[media_type] = (specificity, q)

    def rank(media_type: str) -> tuple[float, bool]:
        specificity, q = matches[media_type]
        return q, media_type == GRAPHQL_RESPONSE_JSON and specificity == 2

    acceptable = [m for m in (APPLICATION_JSON, GRAPHQL_RESPONSE_JSON) if m in matches and matches[m][1] > 0]
    return max(acceptable, key=rank) if acceptable else None


def is_request_error(result: ExecutionResult) -> bool:
    """True when the operation never started: the document did not parse or validate, or variables did not coerce.

    Such a response must carry no `data`. Errors raised while executing fields always carry a `path`; errors
    raised before execution never do, which tells the two apart whatever phase produced them. The one exception
    is a timeout: it stops the whole execution (no path), yet the operation did start (`data: null`, 200).
    """
    return (
        result.data is None
        and bool(result.errors)
        and all(
            error.path is None and (error.extensions or {}).get("code") != TIMEOUT_CODE for error in result.errors or ()
        )
    )


def _capped(receive: Receive, limit: int) -> Receive:
    """Counts body bytes as they arrive: a chunked or lying request cannot get past the cap either."""
    received = 0

    async def wrapped() -> Any:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLarge
        return message

    return wrapped


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view over HTTP with our context, bearer auth and a body-size cap."""

    def __init__(self, settings: Settings, persisted: PersistedDocuments | None = None) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.is_dev else None,
            subscription_protocols=(),  # websockets are served by server/live.py
            multipart_uploads_enabled=True,
        )
        self.settings = settings
        # APQ and PERSISTED_ONLY (server/persisted.py); without one, APQ kept in this process
        self.persisted = persisted or PersistedDocuments(only=False, allowlist={})
        # shared with the ingestion endpoint (server/app.py): one window per key whichever endpoint it calls
        self.rate_limiter = ApiRateLimiter(settings.redis_url, f"{settings.redis_key_prefix}:limits")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Field suggestions help while developing and map the schema for an attacker in production.
        with field_suggestions(self.settings.is_dev):
            if scope["type"] == "http":
                response = await self._handle_http(scope, receive)
                await response(scope, receive, send)
            else:
                await super().__call__(scope, receive, send)

    async def _handle_http(self, scope: Any, receive: Receive) -> Response:
        request_id = scope.get("state", {}).get("request_id") or new_request_id()
        request = Request(scope, _capped(receive, self.settings.max_body_bytes))
        # Error responses follow the negotiated type too (they are GraphQL-shaped), application/json by default.
        media_type = negotiate(request.headers.get("accept")) or APPLICATION_JSON

        def fail(
            status: int, message: str, headers: Mapping[str, str] | None = None, code: str | None = None
        ) -> Response:
            return self._error_response(status, message, request_id, media_type, headers, code)

        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.settings.max_body_bytes:
            return fail(413, "Request body too large.")
        try:
            viewer = await self._viewer(request, request_id)
            remember(scope, await self.rate_limiter.check(viewer))
            scope.setdefault("state", {})["viewer"] = viewer
            if request.method == "POST" and _is_json(request.headers.get("content-type")):
                return await self._run_json_post(request)
            return await self.run(request)
        except InvalidToken as exc:
            return fail(401, str(exc), {"WWW-Authenticate": "Bearer"})
        except RateLimited as exc:
            remember(scope, exc.state)
            return fail(429, str(exc), {"Retry-After": str(exc.retry_after)})
        except PayloadTooLarge:
            return fail(413, "Request body too large.")
        except PersistedQueryError as exc:
            return fail(exc.status, exc.message, code=exc.code)
        except HTTPError as exc:
            return fail(exc.status_code, exc.reason, exc.headers)
        except HTTPException as exc:
            return fail(exc.status_code, exc.reason, {"Allow": "GET, POST"} if exc.status_code == 405 else None)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the request itself is being cancelled (the client went away, the server stops)
            # a cancellation that leaked out of the operation (a bug, once: graphql-core cancelling the siblings
            # of a failed field reached a shared DataLoader future): still a JSON error, never a plain-text 500
            log.error("unexpected_cancellation", request_id=request_id, exc_info=True)
            return fail(500, f"Unexpected error. Quote request id {request_id} to support.")
        except Exception:
            log.exception("unexpected_http_error", request_id=request_id)
            return fail(500, f"Unexpected error. Quote request id {request_id} to support.")

    async def _run_json_post(self, request: Request) -> Response:
        """`run` (Strawberry's) for the usual request: one operation POSTed as `application/json`, with the same
        checks, errors and response, minus the generic machinery (request adapter, content-type parser, stream
        transports, IDE check). Anything else it hands to `run`."""
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            raise HTTPError(406, f"Accept {APPLICATION_JSON} or {GRAPHQL_RESPONSE_JSON}.")
        data = self.parse_json(await request.body())
        if not isinstance(data, dict):
            return await self.run(request)  # a batch: refused there, as it always was
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        # Strawberry's checks of a JSON body (strawberry/http/async_base_view.py, parse_http_body), then ours
        query, variables, extensions = data.get("query"), data.get("variables"), data.get("extensions")
        operation_name = data.get("operationName")
        if not isinstance(query, str | None):
            raise HTTPException(400, "The GraphQL operation's `query` must be a string or null, if provided.")
        if not isinstance(variables, dict | None):
            raise HTTPException(400, "The GraphQL operation's `variables` must be an object or null, if provided.")
        if not isinstance(extensions, dict | None):
            raise HTTPException(400, "The GraphQL operation's `extensions` must be an object or null, if provided.")
        if not isinstance(operation_name, str | None):
            raise HTTPError(400, "The GraphQL operation's `operationName` must be a string or null, if provided.")
        document_id = data.get("documentId") if query is None and not extensions else None
        query = await self.persisted.resolve(query, extensions, document_id)
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=_POST_OPERATIONS,
                operation_extensions=extensions,
            )
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:  # every type is allowed over POST
            raise HTTPException(400, exc.as_http_error_reason("POST")) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc
        return self.create_response(await self.process_result(request, result), sub_response)

    def _error_response(
        self,
        status: int,
        message: str,
        request_id: str,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> Response:
        code = code or str(_CODES.get(status, ErrorCode.BAD_REQUEST if status < 500 else INTERNAL_ERROR_CODE))
        body = {"errors": [{"message": message, "extensions": {"code": code, "requestId": request_id}}]}
        response = Response(
            self.encode_json(body),
            status_code=status,
            headers=dict(headers or {}),
            media_type=f"{media_type}; charset=utf-8",
        )
        response.headers.add_vary_header("Accept")
        return response

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
        pubsub = getattr(request.app.state, "pubsub", None)
        return Context(
            request=request,
            response=response,
            viewer=viewer,
            request_id=request_id,
            pubsub=pubsub,
            execution_timeout=self.settings.execution_timeout_seconds,
            introspection=self.settings.introspection_for_anonymous
            or viewer.is_authenticated
            or viewer.user_id is not None,
        )

    # --- GraphQL over HTTP ---------------------------------------------------------------------------------------

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        # The sub-response (resolvers may set headers and a status on it) also carries the negotiated media type;
        # `process_result` finds it in the request state to set the status of a request error.
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = negotiate(request.headers.get("accept")) or APPLICATION_JSON
        request.state.graphql_sub_response = sub_response
        return sub_response

    async def render_graphql_ide(self, request: Request) -> Response:
        return console_page(request)  # GraphiQL from this app's own assets, never a CDN

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        # A GET naming a persisted document by hash has no `query` either: it is an operation, not a visit.
        params = request.query_params
        return (
            super().should_render_graphql_ide(request)
            and params.get("extensions") is None
            and params.get("documentId") is None
        )

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        # Checked here rather than earlier so a browser asking for text/html still gets GraphiQL in dev.
        if negotiate(request.headers.get("accept")) is None:
            raise HTTPError(406, f"Accept {APPLICATION_JSON} or {GRAPHQL_RESPONSE_JSON}.")
        if request.method == "POST":
            content_type, _ = parse_content_type(request.content_type or "")
            multipart = self.multipart_uploads_enabled and content_type == "multipart/form-data"
            if content_type != APPLICATION_JSON and not multipart:
                raise HTTPError(415, f"Send the request as Content-Type: {APPLICATION_JSON}.")
        data = await super().parse_http_body(request)
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item.operation_name, str | None):
                raise HTTPError(400, "The GraphQL operation's `operationName` must be a string or null, if provided.")
            document_id = await self._document_id(request) if item.query is None and not item.extensions else None
            item.query = await self.persisted.resolve(item.query, item.extensions, document_id)
        return data

    async def _document_id(self, request: AsyncHTTPRequestAdapter) -> Any:
        """A trusted document's `documentId` (GraphQL-over-HTTP persisted documents), read only when the request
        has neither a query nor extensions: Strawberry's parsing leaves it out."""
        if request.method == "GET":
            return request.query_params.get("documentId")
        with contextlib.suppress(ValueError):
            body = json.loads(await request.get_body())
            return body.get("documentId") if isinstance(body, dict) else None
        return None

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        # `?variables=null` means no variables, as `"variables": null` does in a body; `parse_json` refuses a bare null.
        params = dict(params)
        for key in ("variables", "extensions"):
            value = params.get(key)
            if isinstance(value, str) and value.strip() == "null":
                params[key] = None
        return super().parse_query_params(params)

    def parse_json(self, data: str | bytes) -> Any:
        try:
            value = super().parse_json(data)
        except RecursionError as exc:  # json.loads on pathologically nested arrays or objects
            raise HTTPError(400, "The JSON is nested too deeply.") from exc
        except UnicodeDecodeError as exc:
            raise HTTPError(400, "The request body is not UTF-8.") from exc
        # Every JSON document we read (the body, `variables`, `extensions`, multipart `operations` and `map`)
        # must be an object (or a batch list); anything else would fail later with an AttributeError → 500.
        if not isinstance(value, dict | list):
            raise HTTPError(400, "Expected a JSON object.")
        return value

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as exc:
            cause = exc.__cause__
            # The spec asks for 405 when a GET would run a mutation (Strawberry answers 400).
            if isinstance(cause, InvalidOperationTypeError) and cause.operation_type == OperationType.MUTATION:
                raise HTTPError(405, "Mutations must be sent with POST.", {"Allow": "POST"}) from exc
            raise

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        if result.errors:
            result.errors = mask_unexpected(result.errors, request.scope.get("state", {}).get("request_id", ""))
        response_data = await super().process_result(request, result)
        if is_request_error(result):
            response_data.pop("data", None)
            sub_response: Response | None = getattr(request.state, "graphql_sub_response", None)
            if sub_response is not None and sub_response.media_type == GRAPHQL_RESPONSE_JSON:
                internal = any((e.extensions or {}).get("code") == INTERNAL_ERROR_CODE for e in result.errors or ())
                sub_response.status_code = 500 if internal else 400
        return response_data

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        content_type = f"{sub_response.media_type or APPLICATION_JSON}; charset=utf-8"
        if not sub_response.raw_headers and sub_response.background is None:
            # what the general way below builds (Content-Length, Content-Type, Vary), without editing headers
            response = Response(self.encode_json(response_data), status_code=sub_response.status_code or 200)
            response.raw_headers += [(b"content-type", content_type.encode()), (b"vary", _VARY)]
            return response
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = content_type
        response.headers.add_vary_header("Accept")
        # a query by GET (a persisted query's hash) may meet a cache: its answer depends on who asks
        response.headers.add_vary_header("Authorization")
        return response

    def encode_json(self, data: object) -> str:
        return json.dumps(data, separators=(",", ":"))
