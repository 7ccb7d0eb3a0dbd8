"""Which browser origins may use the API: call it cross-origin (CORS), open its WebSocket, and frame the embed widget.

One list for all three: the deployment's `ALLOWED_ORIGINS` plus every partner's verified domains (a partner puts
portals and widgets on its own sites). The embed page of a token narrows `frame-ancestors` to the deployment's
origins and the domains of the token's partner (`frame_ancestors`).

The partner part comes from one function, `partner_domains()` (partners' verified domains: `partnerUpdate{domains}`
and the DNS check of domain/partners/domains.py). Reading it costs a query, so the
whole list is kept for `ORIGINS_CACHE_SECONDS` and read again after that, or at once after `invalidate()` (which a
change of a partner's domains calls in its process; other processes see it when their copy ages out).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog

from domain.config import config
from domain.partners.domains import verified_domains

log = structlog.get_logger("partnerdesk.origins")

ORIGINS_CACHE_SECONDS = 10.0
RETRY_SECONDS = 1.0  # after a failed read, the last list (or the deployment's) serves this long
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` as browsers send it in `Origin` (lower case, no default port, no path), or None when
    `value` is not an http(s) origin. `https://App.Example.com:443/` → `https://app.example.com`."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def origin_of_url(url: str) -> str | None:
    """The origin of a URL (`https://api.example.com/base/` → `https://api.example.com`)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return normalize_origin(f"{parts.scheme}://{parts.netloc}")


def origin_of_domain(domain: str) -> str | None:
    """The origin a verified domain stands for: `acme.example` → `https://acme.example` (partners' sites are
    served over TLS); a full origin is taken as it is."""
    domain = domain.strip()
    return normalize_origin(domain if "://" in domain else f"https://{domain}")


async def partner_domains() -> Mapping[int, Iterable[str]]:
    """Every active partner's verified domains, by partner id (domain/partners/domains.py decides what is
    verified; a change there calls `invalidate()`)."""
    return await verified_domains()


@dataclass(frozen=True, slots=True)
class AllowedOrigins:
    """A snapshot of the allowed origins: the deployment's and each partner's."""

    deployment: frozenset[str]
    partners: Mapping[int, frozenset[str]] = field(default_factory=dict)
    everyone: frozenset[str] = frozenset()

    def allows(self, origin: str | None) -> bool:
        normalized = normalize_origin(origin) if origin else None
        return normalized is not None and normalized in self.everyone

    def frame_ancestors(self, partner_id: int | None) -> list[str]:
        """Origins that may frame a page of `partner_id` (None: of any partner), sorted."""
        if partner_id is None:
            return sorted(self.everyone)
        return sorted(self.deployment | self.partners.get(partner_id, frozenset()))


def _deployment() -> frozenset[str]:
    return frozenset(o for o in (normalize_origin(v) for v in config().allowed_origins) if o)


async def _read() -> AllowedOrigins:
    deployment = _deployment()
    partners = {
        partner_id: frozenset(o for o in (origin_of_domain(d) for d in domains) if o)
        for partner_id, domains in (await partner_domains()).items()
    }
    everyone = deployment.union(*partners.values())
    return AllowedOrigins(deployment, partners, everyone)


class _Cache:
    """The process's snapshot, refreshed by one read at a time when it is older than ORIGINS_CACHE_SECONDS."""

    def __init__(self) -> None:
        self.value: AllowedOrigins | None = None
        self.read_at = 0.0
        self.pending: asyncio.Future[AllowedOrigins] | None = None

    async def get(self) -> AllowedOrigins:
        if self.value is not None and time.monotonic() - self.read_at < ORIGINS_CACHE_SECONDS:
            return self.value
        if self.pending is None or self.pending.done():
            self.pending = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self.pending)

    async def _refresh(self) -> AllowedOrigins:
        started = time.monotonic()
        try:
            value = await _read()
        except Exception:
            # the database is down or restarting: browsers keep what they had (at least the deployment's origins)
            # rather than every response failing; tried again shortly
            log.warning("allowed_origins_unavailable", exc_info=True)
            value = self.value or AllowedOrigins(_deployment(), everyone=_deployment())
            started -= ORIGINS_CACHE_SECONDS - RETRY_SECONDS
        self.value, self.read_at = value, started
        return value

    def invalidate(self) -> None:
        self.value = None
        self.pending = None


_cache = _Cache()


async def allowed_origins() -> AllowedOrigins:
    """The allowed origins now (cached for a few seconds)."""
    return await _cache.get()


def invalidate() -> None:
    """Forget the cached list: call after a partner's domains (or the deployment's settings in tests) change."""
    _cache.invalidate()
