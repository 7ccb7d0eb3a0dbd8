"""`GET /invite?token=…`: the page an invitation email links to, under the inviting partner's brand (and on its
domain, when the link went out on one). It is a thin client of the public API: it creates the account with
`teamMemberInviteAccept`, or signs the existing account in (`login`), accepts with the token alone and signs out."""

from __future__ import annotations

import secrets
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from domain.partners.branding import platform_brand
from domain.team.services import invitation_preview

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html.j2"])
)


def _headers(nonce: str) -> dict[str, str]:
    return {
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' https:; "
            "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        ),
    }


async def invite_page(request: Request) -> Response:
    token = request.query_params.get("token", "")
    preview = await invitation_preview(token) if token else None
    brand = preview.brand if preview else platform_brand(str(request.base_url).rstrip("/"))
    nonce = secrets.token_urlsafe(16)
    body = _env.get_template("invite.html.j2").render(invitation=preview, brand=brand, token=token, nonce=nonce)
    return HTMLResponse(body, status_code=200 if preview else 404, headers=_headers(nonce))
