"""A real browser (Debian's Chromium driven by Playwright) against a real server: cross-origin calls with a session
from an allowed page and from an unlisted one, and the embed widget on a partner's page through `embed.js`, live.

Skipped with a loud banner only where no Chromium (or Playwright) is installed, never in CI (`CI` set): `.ci/run`
installs Chromium with apt, and Playwright comes from the dev dependencies. Playwright never downloads a browser
here: it launches `/usr/bin/chromium` (`CHROMIUM` overrides the path).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, base_env, create_admin, free_port, fresh_database, live_server, set_features
from tests.test_subscriptions import Api, pk, setup_tenant

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # this machine and CI run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - the dev dependencies bring it
    async_playwright = None  # type: ignore[assignment]


def _missing() -> str | None:
    if async_playwright is None:
        return "playwright (pip) is not installed"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


MISSING = _missing()
if MISSING:
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests cannot run in CI: {MISSING}")
    print(f"\n!!!!!!!!!! {MISSING}: the browser tests were NOT run !!!!!!!!!!", file=sys.stderr)
    pytestmark = pytest.mark.skip(reason=f"{MISSING}: browser tests NOT run")


class Pages(ThreadingHTTPServer):
    """A web site on another origin: serves the HTML it is given, by path."""

    daemon_threads = True

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.port = free_port()
        super().__init__(("127.0.0.1", self.port), _PageHandler)
        self.origin = f"http://127.0.0.1:{self.port}"


class _PageHandler(BaseHTTPRequestHandler):
    server: Pages

    def do_GET(self) -> None:
        html = self.server.pages.get(self.path.split("?")[0])
        body = (html or "not found").encode()
        self.send_response(200 if html is not None else 404)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Pages, Pages]]:
    """Two sites: a partner's (listed in ALLOWED_ORIGINS) and a stranger's."""
    partner, stranger = Pages(), Pages()
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (partner, stranger)]
    for thread in threads:
        thread.start()
    try:
        yield partner, stranger
    finally:
        for site in (partner, stranger):
            site.shutdown()
            site.server_close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, sites: tuple[Pages, Pages]) -> Iterator[tuple[Api, str, Any]]:
    tmp_path = tmp_path_factory.mktemp("browser")
    partner, _ = sites
    with fresh_database(tmp_path) as url:
        admin = create_admin(url)
        env = {
            "ALLOWED_ORIGINS": f'["{partner.origin}"]',
            "WS_RECHECK_SECONDS": "1",
            "LOGIN_IP_ATTEMPT_LIMITS": "1000/minute",
        }
        with live_server(url, tmp_path, **env) as base:
            yield Api(base), url, admin


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(locale="en-US", timezone_id="UTC")
    try:
        yield await context.new_page()
    finally:
        await context.close()


FETCH_ME = """async ([api, token]) => {
  try {
    const response = await fetch(api + "/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer " + token },
      body: JSON.stringify({ query: "{ me { email } }" }),
    });
    return { status: response.status, body: await response.json(), limit: response.headers.get("x-request-id") };
  } catch (error) {
    return { blocked: String(error) };
  }
}"""


async def test_a_page_on_an_allowed_origin_calls_the_api_and_an_unlisted_one_cannot(
    page: Page, api: tuple[Api, str, Any], sites: tuple[Pages, Pages]
) -> None:
    # given a signed-in user and two sites: the partner's (allowed) and a stranger's
    client, _, admin = api
    partner, stranger = sites
    token = await client.login(*admin)
    partner.pages["/app"] = stranger.pages["/app"] = "<!doctype html><title>app</title>"
    # when each page calls the API with the session (a preflighted request: authorization, JSON)
    await page.goto(f"{partner.origin}/app")
    allowed = await page.evaluate(FETCH_ME, [client.base, token])
    await page.goto(f"{stranger.origin}/app")
    blocked = await page.evaluate(FETCH_ME, [client.base, token])
    # then the allowed page reads the answer (and the headers it was allowed to see), the other is blocked
    assert allowed["status"] == 200 and allowed["body"]["data"]["me"]["email"] == admin[0]
    assert allowed["limit"]  # an exposed header
    assert "Failed to fetch" in blocked.get("blocked", ""), blocked


async def embeddable_customer(client: Api, url: str, admin: Any) -> dict[str, Any]:
    """A tenant whose first customer has embeds on and a wallet of $20.00."""
    tenant = await setup_tenant(client, *admin)
    customer, staff = tenant["customers"][0], tenant["staff"]
    set_features(url, pk(customer), portal_enabled=True, embed_urls_enabled=True)
    data = await client(
        """mutation($i: BillingPreferencesUpdateInput!) { billingPreferencesUpdate(input: $i) { errors { code } } }""",
        {"i": {"customerId": customer, "billingMode": "REFILLABLE_WALLET"}},
        staff,
    )
    assert data["billingPreferencesUpdate"]["errors"] == [], data
    data = await client(
        """mutation($i: WalletRefillInput!) { walletRefill(input: $i) { errors { code } } }""",
        {"i": {"customerId": customer, "amount": "20.00", "idempotencyKey": uuid.uuid4().hex}},
        staff,
    )
    assert data["walletRefill"]["errors"] == [], data
    return tenant


async def embed_token(client: Api, tenant: dict[str, Any], sections: list[str]) -> dict[str, Any]:
    data = await client(
        """mutation($i: EmbedTokenCreateInput!) { embedTokenCreate(input: $i) {
        embedToken { id } token url errors { code } } }""",
        {"i": {"customerId": tenant["customers"][0], "sections": sections, "expiresInSeconds": 3600}},
        tenant["staff"],
    )
    assert data["embedTokenCreate"]["errors"] == [], data
    return data["embedTokenCreate"]


def host_page(api: Api, token: str, sections: str) -> str:
    return (
        "<!doctype html><title>Acme portal</title><h1>Billing</h1>"
        f'<script src="{api.base}/embed.js" data-token="{token}" data-sections="{sections}"></script>'
    )


async def record_sms(client: Api, tenant: dict[str, Any], segments: str) -> None:
    event = {
        "idempotencyKey": uuid.uuid4().hex,
        "customerId": tenant["customers"][0],
        "unitType": "SMS_SEGMENTS",
        "quantity": segments,
        "occurredAt": datetime.now(UTC).isoformat(),
    }
    data = await client(
        "mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted rejected { code message } } }",
        {"i": {"events": [event]}},
        tenant["staff"],
    )
    assert data["usageRecord"]["accepted"] == 1, data


async def test_the_widget_on_a_partner_page_shows_the_wallet_live(
    page: Page, api: tuple[Api, str, Any], sites: tuple[Pages, Pages], tmp_path: Path
) -> None:
    # given a host page on the partner's site embedding a WALLET token, asking for the wallet and the credits
    client, url, admin = api
    partner, _ = sites
    tenant = await embeddable_customer(client, url, admin)
    issued = await embed_token(client, tenant, ["WALLET"])
    partner.pages["/billing"] = host_page(client, issued["token"], "WALLET,CREDITS")
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    # when the page loads
    await page.goto(f"{partner.origin}/billing")
    widget = page.frame_locator("iframe")
    balance = widget.locator('[data-section="WALLET"] .pd-value')
    await expect(balance).to_have_text("$20.00", timeout=10_000)
    # then the frame is sandboxed, sized to the widget, and shows no credits (the token is for WALLET only)
    frame = page.locator("iframe")
    assert await frame.get_attribute("sandbox") == "allow-scripts"
    assert await widget.locator('[data-section="CREDITS"]').count() == 0
    await expect(frame).not_to_have_css("height", "240px", timeout=5_000)  # the widget told the page its height
    # when usage is recorded through the API: 10 SMS segments at $0.01
    await record_sms(client, tenant, "10")
    # then the widget shows the new balance within 2 s
    await expect(balance).to_have_text("$19.90", timeout=2_000)
    await page.screenshot(path=str(tmp_path / "widget.png"))
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


async def test_an_expired_or_revoked_token_shows_the_message(
    page: Page, api: tuple[Api, str, Any], sites: tuple[Pages, Pages]
) -> None:
    # given a widget showing a live token, and a token that already expired
    client, url, admin = api
    partner, _ = sites
    tenant = await embeddable_customer(client, url, admin)
    live = await embed_token(client, tenant, ["WALLET", "SPENDING_CAP"])
    expired = await embed_token(client, tenant, ["WALLET"])
    expire_embed_token(url, pk(expired["embedToken"]["id"]))
    partner.pages["/live"] = host_page(client, live["token"], "")
    partner.pages["/expired"] = host_page(client, expired["token"], "WALLET")
    # when the expired one is embedded
    await page.goto(f"{partner.origin}/expired")
    # then the frame says so (not a blank frame)
    message = page.frame_locator("iframe").locator(".pd-message")
    await expect(message).to_contain_text("expired", timeout=10_000)
    # when the live one is open and gets revoked
    await page.goto(f"{partner.origin}/live")
    widget = page.frame_locator("iframe")
    await expect(widget.locator('[data-section="SPENDING_CAP"] .pd-value')).to_have_text("$0.00", timeout=10_000)
    data = await client(
        "mutation($i: EmbedTokenRevokeInput!) { embedTokenRevoke(input: $i) { errors { code } } }",
        {"i": {"embedTokenId": live["embedToken"]["id"]}},
        tenant["staff"],
    )
    assert data["embedTokenRevoke"]["errors"] == []
    # then the widget replaces its figures with the message
    await expect(widget.locator(".pd-message")).to_contain_text("expired or was switched off", timeout=10_000)
    await expect(widget.locator(".pd-sections")).to_be_hidden()


_EXPIRE = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from tortoise import Tortoise
from domain.access.models import EmbedToken
from server.settings import get_settings

async def main(url, token_id):
    await Tortoise.init(config=get_settings().tortoise_config(url))
    try:
        await EmbedToken.filter(id=token_id).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    finally:
        await Tortoise.close_connections()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def expire_embed_token(database_url: str, token_pk: int) -> None:
    import subprocess

    subprocess.run(
        [sys.executable, "-c", _EXPIRE, database_url, str(token_pk)],
        cwd=ROOT,
        env=base_env(DATABASE_URL=database_url),
        check=True,
        capture_output=True,
    )


async def test_the_console_loads_offline_with_the_bearer_header_prefilled(
    page: Page, api: tuple[Api, str, Any]
) -> None:
    # given a browser that may reach nothing but the API (no CDN)
    client, _, _ = api
    outside: list[str] = []

    async def only_the_api(route: Any) -> None:
        if route.request.url.startswith(client.base):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_the_api)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    # when the console opens
    await page.goto(f"{client.base}/graphql")
    # then GraphiQL runs, with the Authorization header waiting for a token
    await expect(page.locator(".graphiql-container")).to_be_visible(timeout=20_000)
    headers = page.locator(".graphiql-editor-tool .graphiql-editor").last
    await expect(headers).to_contain_text("Bearer <token from login>", timeout=5_000)
    # and its sign-in runs (the placeholder is not sent as a token)
    await page.locator(".graphiql-execute-button").click()
    await expect(page.locator(".graphiql-response")).to_contain_text('"login"', timeout=10_000)
    assert outside == [] and errors == [], (outside, errors)
