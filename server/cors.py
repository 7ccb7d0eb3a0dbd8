"""Browser origins at the transport: CORS for HTTP (Starlette's middleware, its origin check made dynamic) and the
origin rule of WebSocket handshakes. Which origins are allowed is decided in domain/access/origins.py.

No response ever says `Access-Control-Allow-Origin: *`: an allowed origin is echoed (with `Vary: Origin`), any other
gets no CORS headers, so the browser keeps the response from the page. Credentials are allowed for those origins
(Apollo's `credentials: "include"` works), though the API reads bearer tokens only and sets no cookie.
"""

from __future__ import annotations

import enum

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.access.origins import AllowedOrigins, allowed_origins, normalize_origin, origin_of_url
from domain.config import config

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "x-request-id",
    # what Apollo Client and Apollo's upload link send
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
)
EXPOSED_HEADERS = ("RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-ID", "WWW-Authenticate")
PREFLIGHT_MAX_AGE = 600  # seconds a browser may keep a preflight answer (Chromium caps it at 7,200)


class OriginCORS(CORSMiddleware):
    """Starlette's CORS middleware with the allowed origins read (cached) from the domain on each request."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(
            app,
            allow_origins=(),
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=True,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE,
        )
        self._allowed = AllowedOrigins(frozenset())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and has_origin(scope):
            # the newest snapshot for this request (and the ones running beside it: snapshots only get newer)
            self._allowed = await allowed_origins()
        await super().__call__(scope, receive, send)

    def is_allowed_origin(self, origin: str) -> bool:
        return self._allowed.allows(origin)


def vary_on_origin(message: Message) -> None:
    """What `OriginCORS` (Starlette's CORS middleware) does to the response to a request without `Origin`: its
    `Vary` values joined in one header, with `Origin` added."""
    headers = MutableHeaders(scope=message)
    headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])


def has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope.get("headers") or ())


class SocketOrigin(enum.Enum):
    """What a WebSocket handshake's `Origin` allows."""

    ANY = "any"  # no browser origin (a server, a mobile app), our own origin, or an allowed one
    EMBED_ONLY = "embed_only"  # `null`: a sandboxed iframe, the embed widget: embed tokens only
    REFUSED = "refused"


async def socket_origin(scope: Scope) -> SocketOrigin:
    """Decides a handshake by its `Origin` header, by the same list as CORS."""
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is None:
        return SocketOrigin.ANY
    if origin.strip() == "null":
        return SocketOrigin.EMBED_ONLY
    if _same_origin(origin, headers, scope) or (await allowed_origins()).allows(origin):
        return SocketOrigin.ANY
    return SocketOrigin.REFUSED


def _same_origin(origin: str, headers: Headers, scope: Scope) -> bool:
    """The page comes from the API itself (GraphiQL, the embed page opened in a tab): its origin is the
    deployment's public URL, or the scheme and host the request was sent to."""
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    if normalized == origin_of_url(config().public_url):
        return True
    host = headers.get("host")
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "ws"), "http")
    return host is not None and normalized == normalize_origin(f"{scheme}://{host}")
