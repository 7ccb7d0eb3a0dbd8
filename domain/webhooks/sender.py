"""Sending one signed webhook request, only to public addresses.

The target's host is resolved when the request is sent, every address it resolves to is checked, and the request
goes to the checked address itself (the Host header and TLS name stay the URL's), so a name that resolves to a
public address when registered and to 127.0.0.1, 10.x or 169.254.169.254 later (DNS rebinding) is refused: outside
dev and test, loopback, private, link-local, shared, reserved and multicast addresses are never contacted.
Redirects are not followed (a 3xx is a failure).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks.webhooks import Webhook

from domain.common.json import JsonObject

USER_AGENT = "Partnerdesk-Webhooks/1.0"
MAX_RESPONSE_CHARS = 1000
_BLOCKED_NAMES = ("localhost", "metadata.google.internal")
_BLOCKED_SUFFIXES = (".localhost", ".internal", ".local")


class TargetRefused(Exception):
    """The URL names, or resolves to, an address webhooks never go to."""


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IpAddress) -> bool:
    """Whether an address is on the public internet (not loopback, private, link-local — cloud metadata lives
    there —, shared 100.64/10, reserved, documentation or multicast)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str | None:
    """Why a URL cannot be a webhook target (None: it may be), without resolving it: scheme, credentials, and a host
    that is a non-public address literal or a local name. Resolution is checked again at each send."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Enter an absolute http(s) URL."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Enter an absolute http(s) URL."
    if parts.username or parts.password:
        return "Leave credentials out of the URL."
    if port == 0:
        return "Enter a valid port."
    if allow_private:
        return None
    if parts.scheme != "https":
        return "Use an https URL."
    host = parts.hostname.lower().rstrip(".")
    address = literal_address(host)
    if address is not None and not is_public(address):
        return "Webhooks cannot be sent to private, loopback or link-local addresses."
    if host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES):
        return "Webhooks cannot be sent to local host names."
    return None


async def resolve(host: str, port: int, *, allow_private: bool) -> IpAddress:
    """The address to connect to: every address the host resolves to must be public (unless `allow_private`)."""
    address = literal_address(host)
    if address is not None:
        found = [address]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
        found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not found:
        raise TargetRefused(f"{host} resolves to no address")
    if not allow_private:
        refused = [a for a in found if not is_public(a)]
        if refused:
            raise TargetRefused(f"{host} resolves to a non-public address ({refused[0]})")
    return found[0]


def signature_header(secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """`v1,<base64>` per secret, space separated (during a rotation both the new and the old secret sign)."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


@dataclass(slots=True)
class SendResult:
    request_headers: JsonObject = field(default_factory=dict)
    status: int | None = None
    body: str = ""
    latency_ms: int | None = None
    error: str = ""
    retry_after: timedelta | None = None  # what the receiver asked for (`Retry-After` of a 429 or 503)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def send(
    url: str,
    msg_id: str,
    body: str,
    secrets: list[str],
    timestamp: datetime,
    *,
    time_limit: float,
    allow_private: bool,
) -> SendResult:
    """POSTs the message once. Never raises for the target's faults: a refusal, a timeout or a connection error is
    the result's `error`."""
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }
    result = SendResult(request_headers={k: v for k, v in headers.items() if k != "webhook-signature"})
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.monotonic()
    try:
        address = await resolve(host, port, allow_private=allow_private)
        netloc = f"[{address}]" if address.version == 6 else str(address)
        pinned = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
        headers["host"] = parts.netloc.rpartition("@")[2]
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        async with httpx.AsyncClient(timeout=time_limit, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", pinned, content=body.encode(), headers=headers, extensions=extensions
            )
            async with asyncio.timeout(time_limit):
                response = await client.send(request, stream=True)
                try:
                    result.status = response.status_code
                    result.body = await _read_some(response)
                    if response.status_code in (429, 503):
                        result.retry_after = retry_after(response.headers.get("retry-after"), datetime.now(UTC))
                finally:
                    await response.aclose()
    except TargetRefused as exc:
        result.error = f"refused: {exc}"
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:500] if str(exc) else type(exc).__name__
    result.latency_ms = int((time.monotonic() - started) * 1000)
    return result


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A `Retry-After` header (delay in seconds, or an HTTP date) as a delay from now; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=min(int(value), 10**7))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


async def _read_some(response: httpx.Response) -> str:
    """The start of the response body (receivers' pages can be large; only a glimpse is kept)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_CHARS * 4:
            break
    return b"".join(chunks).decode(errors="replace")[:MAX_RESPONSE_CHARS]
