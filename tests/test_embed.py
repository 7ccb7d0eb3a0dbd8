"""The embed widget over HTTP: the page for a token (its sections, the partner's brand, the headers that keep it
framed only by the partner's sites and its token out of Referers), the page of a token that no longer works, the
snippet and the assets (what Chromium makes of them is tests/test_browser.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain import config as domain_config
from domain.access import origins
from domain.access.models import EmbedToken
from domain.partners.models import Partner
from server.embed import WIDGET_OPERATIONS
from tests.conftest import GQL, Factory, gid
from tests.test_access import enable, issue_embed

HOST_ORIGIN = "https://shop.example.com"
WIDGET_BUDGET = 50_000  # bytes: page, script, stylesheet and snippet together


@pytest.fixture
async def embed(gql: GQL, factory: Factory) -> dict[str, Any]:
    """A customer with embeds on, its partner branded, and a token for the wallet and the credits."""
    tenant = await factory.tenant(customers=1, name="Acme Voice")
    customer = tenant.customers[0]
    await enable(customer, embed_urls_enabled=True)
    await Partner.filter(id=tenant.partner.id).update(
        primary_color="#FF5500", logo_url="https://cdn.acme.example/l.png"
    )
    token = await gql.login(tenant.admins[0].email)
    issued = await issue_embed(gql, token, customer, ["WALLET", "CREDITS"])
    assert issued["errors"] == []
    return {"tenant": tenant, "customer": customer, "token": issued["token"], "url": issued["url"], "admin": token}


def csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else "" for d in (p.strip() for p in policy.split(";"))}


def page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="pd-embed">(.*?)</script>', html, re.S)
    assert match, html
    return json.loads(match.group(1))


def allowed(deployment: list[str], partners: Mapping[int, list[str]] | None = None) -> Any:
    async def partner_domains() -> Mapping[int, list[str]]:
        return partners or {}

    class Allowed:
        def __enter__(self) -> None:
            self.patch = pytest.MonkeyPatch()
            self.patch.setattr(origins, "partner_domains", partner_domains)
            self.config = domain_config.overridden(allowed_origins=deployment)
            self.config.__enter__()
            origins.invalidate()

        def __exit__(self, *exc: object) -> None:
            self.config.__exit__(None, None, None)
            self.patch.undo()
            origins.invalidate()

    return Allowed()


async def test_the_url_embed_token_create_returns_serves_the_widget(client: httpx.AsyncClient, embed: dict) -> None:
    # given the URL the mutation answered
    path = embed["url"].split("://", 1)[1].split("/", 1)[1]
    # when
    response = await client.get(f"/{path}")
    # then the page shows the token's sections under the partner's brand
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "Acme Voice" in html and 'src="https://cdn.acme.example/l.png"' in html
    assert 'data-section="WALLET"' in html and 'data-section="CREDITS"' in html
    assert 'data-section="SPENDING_CAP"' not in html and 'data-section="USAGE_DASHBOARD"' not in html
    config = page_config(html)
    assert config["customerId"] == gid("Customer", embed["customer"].id)
    assert config["sections"] == ["WALLET", "CREDITS"]
    assert config["operations"] == {"WALLET": WIDGET_OPERATIONS["WALLET"], "CREDITS": WIDGET_OPERATIONS["CREDITS"]}
    assert config["branding"]["primaryColor"] == "#FF5500"
    assert embed["token"] not in html  # the script reads it from its own URL; the page does not repeat it


async def test_the_page_may_be_framed_only_by_the_partners_sites(client: httpx.AsyncClient, embed: dict) -> None:
    # given the deployment allows one origin and the token's partner verified a domain; another partner, another
    partner_id = embed["tenant"].partner.id
    with allowed([HOST_ORIGIN], {partner_id: ["portal.acme.example"], partner_id + 1: ["other.example"]}):
        # when
        response = await client.get("/embed", params={"token": embed["token"]})
    # then
    policy = csp(response)
    assert sorted(policy["frame-ancestors"].split()) == ["https://portal.acme.example", HOST_ORIGIN]
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "http://testserver"  # this app's own script only: nothing inline, no CDN
    assert policy["style-src"] == "http://testserver"
    assert policy["connect-src"].split() == ["http://testserver", "ws://testserver"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_without_any_allowed_origin_nobody_may_frame_it(client: httpx.AsyncClient, embed: dict) -> None:
    with allowed([]):
        response = await client.get("/embed", params={"token": embed["token"]})
    assert csp(response)["frame-ancestors"] == "'none'"


async def test_the_snippet_narrows_the_sections_never_widens_them(client: httpx.AsyncClient, embed: dict) -> None:
    # when the snippet asks for the wallet alone, and for the spending cap the token lacks
    only_wallet = await client.get("/embed", params={"token": embed["token"], "sections": "WALLET"})
    beyond = await client.get("/embed", params={"token": embed["token"], "sections": "SPENDING_CAP,wallet"})
    # then
    assert page_config(only_wallet.text)["sections"] == ["WALLET"]
    assert page_config(beyond.text)["sections"] == ["WALLET"]


async def test_an_expired_or_revoked_token_shows_a_message(client: httpx.AsyncClient, gql: GQL, embed: dict) -> None:
    # given a token that expired, and one that never existed
    await EmbedToken.filter(customer_id=embed["customer"].id).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    partner_id = embed["tenant"].partner.id
    with allowed([HOST_ORIGIN], {partner_id: ["portal.acme.example"]}):
        # when
        expired = await client.get("/embed", params={"token": embed["token"]})
        forged = await client.get("/embed", params={"token": embed["token"][:-3] + "abc"})
        missing = await client.get("/embed")
    # then each page says so, runs no script, and the genuine token's page keeps its partner's brand and sites
    for response in (expired, forged, missing):
        assert response.status_code == 401
        assert "expired or was switched off" in response.text
        assert "<script" not in response.text
        assert csp(response)["script-src"] == "'none'"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "Acme Voice" in expired.text
    assert sorted(csp(expired)["frame-ancestors"].split()) == ["https://portal.acme.example", HOST_ORIGIN]
    assert "Acme Voice" not in forged.text  # a forged token names no partner


async def test_the_snippet_and_the_assets_are_served_small(client: httpx.AsyncClient, embed: dict) -> None:
    # when
    snippet = await client.get("/embed.js")
    page = await client.get("/embed", params={"token": embed["token"]})
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    loaded = [await client.get(path) for path in assets]
    # then
    assert snippet.status_code == 200 and snippet.headers["content-type"].startswith("text/javascript")
    assert "sandbox" in snippet.text and "allow-scripts" in snippet.text and "allow-same-origin" not in snippet.text
    assert len(assets) == 2 and all(r.status_code == 200 for r in loaded)
    assert {r.headers["content-type"].split(";")[0] for r in loaded} == {"text/css", "text/javascript"}
    total = len(snippet.content) + len(page.content) + sum(len(r.content) for r in loaded)
    assert total <= WIDGET_BUDGET, total


async def test_the_widget_documents_are_what_an_embed_token_may_run(gql: GQL, embed: dict) -> None:
    """Each section's subscription is accepted for a token of that section (the schema may not drift from the
    widget): validated here over HTTP as a query would be, the live socket runs the same checks."""
    from graphql import parse, validate

    from schema import schema

    for section, document in WIDGET_OPERATIONS.items():
        assert validate(schema._schema, parse(document)) == [], section
