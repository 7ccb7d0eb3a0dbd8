"""Outgoing mail: SMTP (aiosmtplib) when SMTP_URL is set, else `.eml` files in an outbox folder (embedded). Emails
about a demo customer (marked by the domain, `DEMO_HEADER`) always go to the outbox folder: a demo never emails
anyone."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlparse

import aiosmtplib

from domain.partners.branding import DEMO_HEADER

_settings: dict[str, object] = {"smtp_url": None, "outbox_dir": Path("outbox")}


def configure(smtp_url: str | None, outbox_dir: Path) -> None:
    _settings["smtp_url"] = smtp_url
    _settings["outbox_dir"] = outbox_dir


async def send(message: EmailMessage) -> None:
    url = _settings["smtp_url"]
    if not url or message[DEMO_HEADER]:
        await asyncio.to_thread(_write_outbox, message)
        return
    parsed = urlparse(str(url))
    await aiosmtplib.send(
        message,
        hostname=parsed.hostname or "localhost",
        port=parsed.port or (465 if parsed.scheme == "smtps" else 25),
        username=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
        use_tls=parsed.scheme == "smtps",
        start_tls=True if parsed.scheme == "smtp+starttls" else False,
        timeout=30,
    )


def _write_outbox(message: EmailMessage) -> None:
    folder = Path(str(_settings["outbox_dir"]))
    folder.mkdir(parents=True, exist_ok=True)
    name = (message["Message-ID"] or "message").strip("<>").replace("/", "_")
    (folder / f"{name}.eml").write_bytes(bytes(message))
