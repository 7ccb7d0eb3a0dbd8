"""Files the app serves itself from `server/static/` (the embed widget, the GraphQL console and its vendored
GraphiQL): nothing is loaded from a CDN at run time. Pages link them with a content hash (`?v=`), so a new release
is fetched anew while browsers may keep the rest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

STATIC = Path(__file__).resolve().parent / "static"
TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    version: str  # a content hash


@cache
def asset(name: str) -> Asset:
    body = (STATIC / name).read_bytes()
    return Asset(body, hashlib.sha256(body).hexdigest()[:12])


@cache
def templates() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))


def static_files() -> ASGIApp:
    """`/static`: ETags for revalidation, gzip for the larger scripts (GraphiQL's is 3.5 MB, ~1 MB compressed)."""
    return GZipMiddleware(StaticFiles(directory=STATIC), minimum_size=1024)
