"""Browser origins: CORS preflights and actual requests for allowed, unlisted and partner-domain origins, and the same
list at WebSocket handshakes (through the ASGI app; tests/test_browser.py does it from Chromium)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx
import pytest

from domain import config as domain_config
from domain.access import origins
from domain.access.origins import normalize_origin, origin_of_domain
from server.cors import SocketOrigin, socket_origin

APP_ORIGIN = "https://app.example.com"
PARTNER_ORIGIN = "https://portal.acme.example"
UNLISTED = "https://evil.example.net"
QUERY = {"query": "{ me { id } }"}


@contextmanager
def allowed(deployment: list[str], partners: Mapping[int, list[str]] | None = None) -> Iterator[None]:
    """ALLOWED_ORIGINS and partners' verified domains (through the hook issue 15 connects) for the block."""

    async def partner_domains() -> Mapping[int, list[str]]:
        return partners or {}

    with pytest.MonkeyPatch.context() as patch, domain_config.overridden(allowed_origins=deployment):
        patch.setattr(origins, "partner_domains", partner_domains)
        origins.invalidate()
        try:
            yield
        finally:
            origins.invalidate()


def preflight(origin: str, headers: str = "authorization, content-type") -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": "POST", "access-control-request-headers": headers}


async def test_a_preflight_from_an_allowed_origin_is_answered(client: httpx.AsyncClient) -> None:
    # given
    with allowed([APP_ORIGIN]):
        # when
        response = await client.options("/graphql", headers=preflight(APP_ORIGIN))
    # then
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    allowed_headers = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    assert int(response.headers["access-control-max-age"]) > 0
    assert "Origin" in response.headers["vary"]


async def test_a_preflight_from_an_unlisted_origin_gets_no_allow_origin(client: httpx.AsyncClient) -> None:
    with allowed([APP_ORIGIN]):
        response = await client.options("/graphql", headers=preflight(UNLISTED))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_actual_requests_carry_the_origin_only_when_it_is_allowed(client: httpx.AsyncClient) -> None:
    # given
    with allowed([APP_ORIGIN]):
        # when
        ok = await client.post("/graphql", json=QUERY, headers={"origin": APP_ORIGIN})
        other = await client.post("/graphql", json=QUERY, headers={"origin": UNLISTED})
        refused = await client.post("/graphql", json=QUERY, headers={"origin": APP_ORIGIN, "authorization": "x"})
    # then
    assert ok.status_code == 200 and ok.json() == {"data": {"me": None}}
    assert ok.headers["access-control-allow-origin"] == APP_ORIGIN
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in ok.headers["vary"]
    assert "RateLimit" in ok.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in other.headers  # the browser keeps the answer from the page
    assert refused.status_code == 401  # errors are readable by allowed pages too
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN


async def test_no_response_ever_allows_any_origin(client: httpx.AsyncClient) -> None:
    with allowed([]):
        for origin in (APP_ORIGIN, "null", "*"):
            response = await client.post("/graphql", json=QUERY, headers={"origin": origin})
            answer = await client.options("/graphql", headers=preflight(origin))
            assert "access-control-allow-origin" not in response.headers
            assert "access-control-allow-origin" not in answer.headers


async def test_partners_verified_domains_are_allowed_origins(client: httpx.AsyncClient) -> None:
    # given partner 7 verified portal.acme.example
    with allowed([APP_ORIGIN], {7: ["portal.acme.example"]}):
        # when
        answer = await client.options("/graphql", headers=preflight(PARTNER_ORIGIN))
        response = await client.post("/graphql", json=QUERY, headers={"origin": PARTNER_ORIGIN})
        snapshot = await origins.allowed_origins()
    # then
    assert answer.headers["access-control-allow-origin"] == PARTNER_ORIGIN
    assert response.headers["access-control-allow-origin"] == PARTNER_ORIGIN
    assert snapshot.frame_ancestors(7) == [APP_ORIGIN, PARTNER_ORIGIN]
    assert snapshot.frame_ancestors(8) == [APP_ORIGIN]  # another partner's pages are not framed there


async def test_the_list_is_cached_and_read_again_after_invalidate() -> None:
    calls = 0
    domains: dict[int, list[str]] = {1: ["a.example"]}

    async def partner_domains() -> Mapping[int, list[str]]:
        nonlocal calls
        calls += 1
        return domains

    with pytest.MonkeyPatch.context() as patch, domain_config.overridden(allowed_origins=[]):
        patch.setattr(origins, "partner_domains", partner_domains)
        origins.invalidate()
        try:
            # given
            first = await origins.allowed_origins()
            domains = {1: ["b.example"]}
            # when: read again within the cache window, then after a change invalidates it
            cached = await origins.allowed_origins()
            origins.invalidate()
            fresh = await origins.allowed_origins()
        finally:
            origins.invalidate()
    # then
    assert first.allows("https://a.example") and cached.allows("https://a.example")
    assert fresh.allows("https://b.example") and not fresh.allows("https://a.example")
    assert calls == 2


async def test_a_failing_partner_read_keeps_the_deployment_origins() -> None:
    async def broken() -> Mapping[int, list[str]]:
        raise ConnectionError("database restarting")

    with pytest.MonkeyPatch.context() as patch, domain_config.overridden(allowed_origins=[APP_ORIGIN]):
        patch.setattr(origins, "partner_domains", broken)
        origins.invalidate()
        try:
            snapshot = await origins.allowed_origins()
        finally:
            origins.invalidate()
    assert snapshot.allows(APP_ORIGIN)


def test_origins_are_compared_as_browsers_send_them() -> None:
    assert normalize_origin("HTTPS://App.Example.com:443/") == APP_ORIGIN
    assert normalize_origin("http://localhost:3000") == "http://localhost:3000"
    assert normalize_origin("http://example.com:80") == "http://example.com"
    assert normalize_origin("https://example.com/path") is None
    assert normalize_origin("ftp://example.com") is None
    assert normalize_origin("null") is None
    assert origin_of_domain("Portal.Acme.example") == PARTNER_ORIGIN


def test_allowed_origins_must_be_origins() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        domain_config.DomainConfig(allowed_origins=["app.example.com"])
    with pytest.raises(ValueError, match="not an origin"):
        domain_config.DomainConfig(allowed_origins=["https://*.example.com"])


def ws_scope(origin: str | None, host: str = "api.example.com") -> dict:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "websocket", "scheme": "wss", "headers": headers, "path": "/graphql"}


async def test_websocket_handshakes_follow_the_same_list() -> None:
    with allowed([APP_ORIGIN], {3: ["portal.acme.example"]}):
        assert await socket_origin(ws_scope(APP_ORIGIN)) is SocketOrigin.ANY
        assert await socket_origin(ws_scope(PARTNER_ORIGIN)) is SocketOrigin.ANY
        assert await socket_origin(ws_scope(None)) is SocketOrigin.ANY  # servers and mobile apps send none
        assert await socket_origin(ws_scope("https://api.example.com")) is SocketOrigin.ANY  # our own pages
        assert await socket_origin(ws_scope("null")) is SocketOrigin.EMBED_ONLY  # the sandboxed embed widget
        assert await socket_origin(ws_scope(UNLISTED)) is SocketOrigin.REFUSED
