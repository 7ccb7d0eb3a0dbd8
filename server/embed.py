"""The embed widget: `GET /embed?token=…` (the page a partner frames) and `GET /embed.js` (the snippet that frames
it). No framework and no build step: a small HTML page rendered here, one script and one stylesheet served from
`server/static/embed/`, everything from this app (no CDN), a few kilobytes in all.

The page shows the token's sections (usage dashboard, wallet, credits, spending cap) under the partner's brand and
keeps them live over the API's own WebSocket (graphql-transport-ws): each state subscription sends the current
state first, so the widget runs no query. `embed.js` frames the page in a sandboxed iframe (`allow-scripts` only:
an opaque origin, so the widget reaches nothing of the host page nor the host page anything of it); its WebSocket
then says `Origin: null`, which the live endpoint accepts for embed tokens only (server/cors.py).

Headers: `Content-Security-Policy` lets the page load only this app's script, stylesheet and socket (and https
images: the partner's logo) and be framed only by the deployment's `ALLOWED_ORIGINS` and the token's partner's
verified domains (`frame-ancestors`); `Referrer-Policy: no-referrer` keeps the token in the page's URL from
leaving in a `Referer`; nothing is cached.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from domain.access.embed import EmbedBranding, EmbedPage, embed_page
from domain.access.models import EmbedSection
from domain.access.origins import allowed_origins, origin_of_url
from domain.common import ids
from server.assets import asset, templates

# The widget's GraphQL documents, one subscription per section. The page hands them to the script, and
# PERSISTED_ONLY deployments allow them with the clients' documents (server/persisted.py).
WIDGET_OPERATIONS: dict[EmbedSection, str] = {
    EmbedSection.USAGE_DASHBOARD: (
        "subscription EmbedUsage($id: ID!) { usageSummaryUpdated(customerId: $id) "
        "{ unitType quantity cost { amount currency } } }"
    ),
    EmbedSection.WALLET: (
        "subscription EmbedWallet($id: ID!) { walletUpdated(customerId: $id) "
        "{ id balance { amount currency } refillThreshold { amount currency } estimatedDaysUntilRefill } }"
    ),
    EmbedSection.CREDITS: (
        "subscription EmbedCredits($id: ID!) { creditsUpdated(customerId: $id) { id available used assigned health } }"
    ),
    EmbedSection.SPENDING_CAP: (
        "subscription EmbedSpendingCap($id: ID!) { spendingCapUpdated(customerId: $id) "
        "{ id cap { amount currency } spentThisMonth { amount currency } projectedTotal { amount currency } status } }"
    ),
}
SECTION_TITLES = {
    EmbedSection.USAGE_DASHBOARD: "Usage this month",
    EmbedSection.WALLET: "Wallet",
    EmbedSection.CREDITS: "AI credits",
    EmbedSection.SPENDING_CAP: "Spending cap",
}
REFUSED_MESSAGE = "This view has expired or was switched off. Ask your provider for a new link."
DEFAULT_BRANDING = EmbedBranding("Partnerdesk", None, "#2563EB", "#0F172A")


def own_origin(request: Request) -> str:
    """This app's origin as the browser reached it (behind a proxy, its public URL)."""
    origin = origin_of_url(f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}")
    return origin or origin_of_url(str(request.base_url)) or ""


def _policy(own: str, ancestors: list[str], *, scripts: bool) -> str:
    socket = own.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    framers = " ".join(ancestors) if ancestors else "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {own}" if scripts else "script-src 'none'",
            f"style-src {own}",
            "img-src https: data:",
            f"connect-src {own} {socket}",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {framers}",
        ]
    )


def _json_for_script(value: Any) -> str:
    """JSON safe inside a <script> element (no `</script>` or `<!--` can close or confuse it)."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")


def _headers(policy: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


async def embed_view(request: Request) -> Response:
    """The widget page for `?token=`, or the page saying the token no longer works (still under the partner's
    brand, and framed by the partner's sites, when the token is genuine)."""
    token = request.query_params.get("token", "")
    requested = request.query_params.get("sections", "").split(",")
    page = await embed_page(token, requested) if token else None
    snapshot = await allowed_origins()
    own = own_origin(request)
    css, js = asset("embed/widget.css"), asset("embed/widget.js")
    if not isinstance(page, EmbedPage):
        partner_id = page.partner_id if page is not None else None
        branding = (page.branding if page is not None else None) or DEFAULT_BRANDING
        # a token naming no partner: any allowed site may show the message (it holds nothing to protect)
        ancestors = snapshot.frame_ancestors(partner_id)
        html = (
            templates()
            .get_template("embed.html.j2")
            .render(branding=branding, message=REFUSED_MESSAGE, css=css.version, js=None, sections=[], config=None)
        )
        return HTMLResponse(html, status_code=401, headers=_headers(_policy(own, ancestors, scripts=False)))
    config = {
        "customerId": ids.encode("Customer", page.customer_id),
        "sections": [s.value for s in page.sections],
        "operations": {s.value: WIDGET_OPERATIONS[s] for s in page.sections},
        "branding": {"primaryColor": page.branding.primary_color, "secondaryColor": page.branding.secondary_color},
        "expiresAt": page.expires_at.isoformat(),
        "refusedMessage": REFUSED_MESSAGE,
    }
    html = (
        templates()
        .get_template("embed.html.j2")
        .render(
            branding=page.branding,
            customer_name=page.customer_name,
            sections=[(s.value, SECTION_TITLES[s]) for s in page.sections],
            message=None,
            css=css.version,
            js=js.version,
            config=_json_for_script(config),
        )
    )
    ancestors = snapshot.frame_ancestors(page.partner_id)
    return HTMLResponse(html, headers=_headers(_policy(own, ancestors, scripts=True)))


async def embed_snippet(request: Request) -> Response:
    """`/embed.js`: what a partner pastes, `<script src="…/embed.js" data-token="…" data-sections="…">`."""
    return Response(
        asset("embed/embed.js").body,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
