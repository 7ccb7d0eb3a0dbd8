"""Signed, expiring download links for built reports: `/exports/<report id>.<expiry>.<signature>`.

The signature is an HMAC-SHA256 of the report id and expiry under the server's secret key, so a link cannot be
forged or extended; holding a valid link is the permission to download (links go out by email to recipients who
may have no account).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from domain.config import config

LINK_TTL = timedelta(hours=24)
PATH_PREFIX = "/exports/"


class LinkInvalid(Exception):
    """Malformed or tampered with."""


class LinkExpired(Exception):
    """Authentic, but past its expiry."""


def _signature(report_id: int, expires: int) -> str:
    message = f"usage-report:{report_id}:{expires}".encode()
    digest = hmac.new(config().secret_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(report_id: int, expires_at: datetime) -> str:
    expires = int(expires_at.timestamp())
    return f"{report_id}.{expires}.{_signature(report_id, expires)}"


def verify(token: str, now: datetime | None = None) -> int:
    """The report id of an authentic, unexpired link; LinkInvalid or LinkExpired otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[0]) > 10:
        raise LinkInvalid(token)
    report_id, expires = int(parts[0]), int(parts[1])
    if not hmac.compare_digest(parts[2], _signature(report_id, expires)):
        raise LinkInvalid(token)
    if expires <= (now or datetime.now(UTC)).timestamp():
        raise LinkExpired(token)
    return report_id


def link_expiry(report_expires_at: datetime, now: datetime | None = None, ttl: timedelta = LINK_TTL) -> datetime:
    """A link lives `ttl`, never beyond the report itself."""
    return min((now or datetime.now(UTC)) + ttl, report_expires_at)


def download_url(report_id: int, expires_at: datetime) -> str:
    return f"{config().public_url.rstrip('/')}{PATH_PREFIX}{sign(report_id, expires_at)}"
