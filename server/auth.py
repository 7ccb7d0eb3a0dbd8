"""Turns an `Authorization: Bearer …` header into a Viewer (session tokens, API keys, embed tokens)."""

from __future__ import annotations

from collections.abc import Mapping

from domain.access.services import authenticate_token
from domain.viewer import Viewer


class InvalidToken(Exception):
    """A bearer token was sent but is unknown, expired or revoked (HTTP 401)."""


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Use `Authorization: Bearer <token>`.")
    return token.strip()


def client_ip(scope_client: tuple[str, int] | None) -> str | None:
    return scope_client[0] if scope_client else None


async def viewer_from_token(token: str | None, base: Viewer) -> Viewer:
    if token is None:
        return base
    viewer = await authenticate_token(token, base)
    if viewer is None:
        raise InvalidToken("The token is invalid, expired or revoked.")
    return viewer
