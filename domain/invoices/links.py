"""Signed, expiring links to an invoice's PDF: `/invoices/<invoice id>.<expiry>.<signature>` (an HMAC under the
server's secret key, as usage report links are), so billing contacts without an account can download it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

from domain.config import config

PATH_PREFIX = "/invoices/"
VIEW_TTL = timedelta(hours=24)  # links shown in the API
EMAIL_TTL = timedelta(days=60)  # links in the invoice email
_LINK = re.compile(r"(?P<invoice>[0-9]{1,10})\.(?P<expires>[0-9]{1,12})\.(?P<signature>[A-Za-z0-9_-]{1,64})")


class LinkInvalid(Exception):
    pass


class LinkExpired(Exception):
    pass


def _signature(invoice_id: int, expires: int) -> str:
    digest = hmac.new(config().secret_key.encode(), f"invoice:{invoice_id}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def url(invoice_id: int, ttl: timedelta = VIEW_TTL, now: datetime | None = None) -> str:
    expires = int(((now or datetime.now(UTC)) + ttl).timestamp())
    token = f"{invoice_id}.{expires}.{_signature(invoice_id, expires)}"
    return f"{config().public_url.rstrip('/')}{PATH_PREFIX}{token}"


def verify(token: str, now: datetime | None = None) -> int:
    match = _LINK.fullmatch(token)
    if match is None:
        raise LinkInvalid(token)
    invoice_id, expires = int(match["invoice"]), int(match["expires"])
    if not hmac.compare_digest(match["signature"], _signature(invoice_id, expires)):
        raise LinkInvalid(token)
    if expires <= (now or datetime.now(UTC)).timestamp():
        raise LinkExpired(token)
    return invoice_id
