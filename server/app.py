"""The ASGI application: /graphql (HTTP + WebSocket), /healthz, /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from tortoise import Tortoise
from tortoise.contrib.starlette import RegisterTortoise

from jobs.broker import EmbeddedConsumer
from server.bootstrap import bootstrap
from server.graphql import GraphQLView
from server.ingest import usage_events_endpoint
from server.logging import RequestIdMiddleware
from server.settings import Settings, get_settings


async def healthz(request: Request) -> JSONResponse:
    try:
        await Tortoise.get_connection("default").execute_query("SELECT 1")
    except Exception as exc:
        return JSONResponse({"status": "error", "database": str(type(exc).__name__)}, status_code=503)
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def index(request: Request) -> Response:
    return RedirectResponse("/graphql")


def create_app(settings: Settings | None = None, *, manage_db: bool = True) -> Starlette:
    """`manage_db=False` when the caller (tests) already initialised Tortoise for the process."""
    settings = settings or get_settings()
    broker = bootstrap(settings)
    graphql = GraphQLView(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        consumer = None
        if settings.redis_url is None:
            consumer = EmbeddedConsumer(broker)  # type: ignore[arg-type]
            app.state.consumer = consumer
        if manage_db:
            async with RegisterTortoise(app, config=settings.tortoise_config(), generate_schemas=False):
                if consumer:
                    consumer.start()
                yield
        else:
            if consumer:
                consumer.start()
            yield
        if consumer:
            await consumer.stop()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/v1/usage/events", usage_events_endpoint, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.broker = broker
    app.add_middleware(RequestIdMiddleware)
    return app
