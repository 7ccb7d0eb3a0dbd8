"""Signed, expiring download links for built reports: `/exports/<report id>.<expiry>.<signature>`.

The signature is an HMAC-SHA256 of the report id and expiry under the server's secret key, so a link cannot be
forged or extended; holding a valid link is the permission to download (links go out by email to recipients who
may have no account).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

from domain.config import config

LINK_TTL = timedelta(hours=24)
PATH_PREFIX = "/exports/"
# ASCII digits only (`str.isdigit` also takes "²", which `int` refuses), and no more of them than a report id
# and a Unix time have: a 5,000-digit expiry is past `int()`'s digit limit.
_LINK = re.compile(r"(?P<report>[0-9]{1,10})\.(?P<expires>[0-9]{1,12})\.(?P<signature>[A-Za-z0-9_-]{1,64})")


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
    match = _LINK.fullmatch(token)
    if match is None:
        raise LinkInvalid(token)
    report_id, expires = int(match["report"]), int(match["expires"])
    if not hmac.compare_digest(match["signature"], _signature(report_id, expires)):
        raise LinkInvalid(token)
    if expires <= (now or datetime.now(UTC)).timestamp():
        raise LinkExpired(token)
    return report_id


def link_expiry(report_expires_at: datetime, now: datetime | None = None, ttl: timedelta = LINK_TTL) -> datetime:
    """A link lives `ttl`, never beyond the report itself."""
    return min((now or datetime.now(UTC)) + ttl, report_expires_at)


def download_url(report_id: int, expires_at: datetime, base_url: str | None = None) -> str:
    """The link under `base_url` (a partner's domain in its emails), else PUBLIC_URL."""
    return f"{(base_url or config().public_url).rstrip('/')}{PATH_PREFIX}{sign(report_id, expires_at)}"
