"""The ASGI application: /graphql (HTTP + WebSocket), /v1/usage/events, /v1/contacts/healed, /v1/stripe/webhook,
/exports/<signed>, /invoices/<signed>, /avatars/<name>, /logos/<name>, /invite (the invitation page), /embed and
/embed.js (the embed widget), /static (the widget's and the console's assets), /healthz, /metrics."""

from __future__ import annotations

import asyncio
import gc
import hmac
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from tortoise import Tortoise
from tortoise.contrib.starlette import RegisterTortoise
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from domain.access import token_cache
from domain.events.services import ACCESS_REVOKED
from jobs.broker import EmbeddedConsumer
from server.assets import static_files
from server.avatars import avatar_download
from server.bootstrap import bootstrap
from server.cors import OriginCORS, has_origin, vary_on_origin
from server.embed import WIDGET_OPERATIONS, embed_snippet, embed_view
from server.exports import export_download
from server.graphql import GraphQLView
from server.ingest import contacts_healed_endpoint, usage_events_endpoint
from server.invite import invite_page
from server.live import LiveEndpoint
from server.locks import Leases
from server.logging import RequestIdMiddleware, bind_request_id
from server.logos import logo_download
from server.payments import invoice_download, stripe_webhook
from server.persisted import PersistedDocuments
from server.pubsub import PubSub, live_publisher
from server.ratelimit import RateLimitHeaders, limit_headers
from server.relay import Relay
from server.scheduler import Scheduler
from server.sequencer import AuditSequencer
from server.settings import Settings, get_settings


async def healthz(request: Request) -> JSONResponse:
    try:
        await Tortoise.get_connection("default").execute_query("SELECT 1")
    except Exception as exc:
        return JSONResponse({"status": "error", "database": str(type(exc).__name__)}, status_code=503)
    return JSONResponse({"status": "ok"})


def metrics_allowed(settings: Settings, authorization: str | None) -> bool | None:
    """Whether /metrics answers this `Authorization` header; None when it is not served at all.

    Metrics name queues, tasks and subscriber counts: in production only a scraper holding METRICS_TOKEN reads
    them. Elsewhere they are open unless a token is set."""
    if settings.metrics_token is None:
        return True if settings.is_dev else None
    scheme, _, token = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode("utf-8", "surrogatepass"), settings.metrics_token.encode()
    )


async def metrics(request: Request) -> Response:
    """Prometheus metrics, plus live-subscription and task gauges of this process (leak checks use them)."""
    allowed = metrics_allowed(request.app.state.settings, request.headers.get("authorization"))
    if allowed is None:
        return PlainTextResponse("Not Found", status_code=404)
    if not allowed:
        return PlainTextResponse("Unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    pubsub = getattr(request.app.state, "pubsub", None)
    extra = (
        "# HELP partnerdesk_live_subscriptions Subscribers waiting for changes in this process.\n"
        "# TYPE partnerdesk_live_subscriptions gauge\n"
        f"partnerdesk_live_subscriptions {pubsub.subscriber_count() if pubsub else 0}\n"
        "# HELP partnerdesk_asyncio_tasks Tasks alive on this process's event loop.\n"
        "# TYPE partnerdesk_asyncio_tasks gauge\n"
        f"partnerdesk_asyncio_tasks {len(asyncio.all_tasks())}\n"
    )
    return Response(generate_latest() + extra.encode(), media_type=CONTENT_TYPE_LATEST)


async def index(request: Request) -> Response:
    return RedirectResponse("/graphql")


class App(Starlette):
    """Websockets of /graphql go straight to the live endpoint: the HTTP middleware stack (request ids, error
    pages, routing) would otherwise keep a frame per layer alive for as long as each socket stays open.

    Behind proxies listed in TRUSTED_PROXIES, uvicorn's proxy-headers middleware first takes the client address
    (and scheme) from their X-Forwarded-For (and X-Forwarded-Proto), for HTTP and websockets alike; anyone else's
    headers are ignored, so a client cannot choose the address that sign-in throttling and audit see."""

    live: LiveEndpoint
    graphql: GraphQLView
    forwarded: ProxyHeadersMiddleware | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # stays a coroutine function: uvicorn tells ASGI 3 apps from ASGI 2 ones by it
        await (self.forwarded or self.dispatch)(scope, receive, send)

    def trust_proxies(self, proxies: list[str]) -> None:
        """Takes the client address from X-Forwarded-For when the peer is one of `proxies` (IPs or CIDRs)."""
        self.forwarded = ProxyHeadersMiddleware(self.dispatch, trusted_hosts=proxies) if proxies else None

    def dispatch(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        """The handler of a request, not awaited here: a plain function leaves no frame of its own alive for as
        long as each socket stays open (a coroutine's was 248 bytes per idle subscription, bench/push.py)."""
        if scope["type"] != "lifespan" and scope["path"] == "/graphql":
            if scope["type"] == "websocket":
                return self.live(scope, receive, send)
            if scope["type"] == "http" and scope["method"] == "POST" and not has_origin(scope):
                return self.graphql_post(scope, receive, send)
        return super().__call__(scope, receive, send)

    async def graphql_post(self, scope: Any, receive: Any, send: Any) -> None:
        """A POST to /graphql from a server (no `Origin`: a voice platform at call rate, not a browser), through the
        same middleware collapsed into one layer: the request id (`RequestIdMiddleware`), the API key's rate-limit
        headers (`RateLimitHeaders`) and what CORS adds for a request without `Origin` (`Vary: Origin`), without
        Starlette's error and exception layers and router (the view answers every failure itself; an exception
        escaping it gets uvicorn's plain 500, as Starlette's error layer would send). Browsers' requests (they
        carry `Origin`) and every other method go through the full stack."""
        scope["app"] = self
        request_id = bind_request_id(scope)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *limit_headers(scope)]
                vary_on_origin(message)
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id, path=scope["path"]):
            await self.graphql(scope, receive, send_with_headers)


def create_app(settings: Settings | None = None, *, manage_db: bool = True) -> Starlette:
    """`manage_db=False` when the caller (tests) already initialised Tortoise for the process."""
    settings = settings or get_settings()
    broker = bootstrap(settings)
    persisted = PersistedDocuments.for_deployment(
        only=settings.persisted_only,
        path=settings.persisted_documents,
        builtin=WIDGET_OPERATIONS.values(),
        redis_url=settings.redis_url,
        key_prefix=settings.redis_key_prefix,
    )
    graphql = GraphQLView(settings, persisted)
    pubsub = PubSub(
        settings.redis_url,
        settings.redis_key_prefix,
        database_url=settings.database_url if settings.is_postgres else None,
    )
    live = LiveEndpoint(settings, pubsub, graphql.rate_limiter, persisted)
    # a revocation committed by any process clears this process's cached viewers (domain/access/token_cache.py)
    pubsub.add(ACCESS_REVOKED, lambda _: token_cache.tokens.clear())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if manage_db:
                await stack.enter_async_context(
                    RegisterTortoise(app, config=settings.tortoise_config(), generate_schemas=False)
                )
            stack.push_async_callback(persisted.close)
            stack.push_async_callback(graphql.rate_limiter.close)
            # without Redis, processes sharing a PostgreSQL database elect their relay and sequencer there
            leases = Leases(
                settings.redis_url,
                settings.redis_key_prefix,
                database_url=settings.database_url if settings.is_postgres else None,
            )
            stack.push_async_callback(leases.close)
            await pubsub.start()
            stack.push_async_callback(pubsub.stop)
            live.start()
            stack.push_async_callback(live.stop)
            if settings.redis_url is None:
                consumer = EmbeddedConsumer(broker)  # type: ignore[arg-type]
                app.state.consumer = consumer
                consumer.start()
                stack.push_async_callback(consumer.stop)
            if settings.background_tasks:
                wake = settings.database_url if settings.is_postgres else None
                relay = Relay(leases, publish=live_publisher(pubsub), wake_dsn=wake)
                scheduler = Scheduler(leases)
                sequencer = AuditSequencer(leases)
                app.state.relay, app.state.scheduler, app.state.sequencer = relay, scheduler, sequencer
                relay.start()
                scheduler.start()
                sequencer.start()
                stack.push_async_callback(relay.stop)
                stack.push_async_callback(scheduler.stop)
                stack.push_async_callback(sequencer.stop)
            # objects alive after start-up (schema, models, modules) are never garbage: keep them out of full
            # collections, whose pauses set the p99 of live pushes (bench/push.py)
            gc.freeze()
            # and make full collections rare: with ~1,000 idle subscriptions a full pass paused pushes 300-500 ms
            gc.set_threshold(700, 10, 1000)
            yield

    app = App(
        routes=[
            Route("/", index),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/v1/usage/events", usage_events_endpoint, methods=["POST"]),
            Route("/v1/contacts/healed", contacts_healed_endpoint, methods=["POST"]),
            Route("/exports/{token}", export_download, methods=["GET"]),
            Route("/avatars/{name}", avatar_download, methods=["GET"]),
            Route("/v1/stripe/webhook", stripe_webhook, methods=["POST"]),
            Route("/invoices/{token}", invoice_download, methods=["GET"]),
            Route("/logos/{name}", logo_download, methods=["GET"]),
            Route("/invite", invite_page, methods=["GET"]),
            Route("/embed", embed_view, methods=["GET"]),
            Route("/embed.js", embed_snippet, methods=["GET"]),
            Mount("/static", static_files(), name="static"),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.broker = broker
    app.state.pubsub = pubsub
    app.state.rate_limiter = graphql.rate_limiter
    app.live = live
    app.graphql = graphql
    app.trust_proxies(settings.trusted_proxies)
    app.add_middleware(RateLimitHeaders)  # on every response to an API key, whichever endpoint answered
    app.add_middleware(OriginCORS)  # preflights answered before routing (the routes take GET and POST only)
    app.add_middleware(RequestIdMiddleware)
    return app
