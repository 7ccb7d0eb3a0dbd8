"""A real SMTP server (aiosmtpd) for tests that follow an email from the outbox to the inbox, and the job runner
that does what production does after a commit (the relay hands outbox events to the broker, a worker runs them)."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from jobs import mailer
from jobs.broker import EmbeddedConsumer
from server.locks import Leases
from server.relay import Relay
from tests.servers import free_port


@dataclass
class Mailbox:
    """Keeps every accepted envelope."""

    url: str
    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]  # type: ignore[misc]

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]


@contextmanager
def smtp_server(outbox_dir: Path) -> Iterator[Mailbox]:
    port = free_port()
    box = Mailbox(f"smtp://127.0.0.1:{port}")
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    saved = (mailer._settings["smtp_url"], mailer._settings["outbox_dir"])
    mailer.configure(box.url, outbox_dir)
    try:
        yield box
    finally:
        mailer.configure(saved[0], saved[1])  # type: ignore[arg-type]
        controller.stop()


async def run_jobs(app: Any) -> EmbeddedConsumer:
    await Relay(Leases(None)).drain_once()
    consumer = EmbeddedConsumer(app.state.broker, max_retries=3)
    await consumer.drain()
    return consumer


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(message: EmailMessage, path: str) -> str:
    """The first link in the plain-text part whose path starts with `path`."""
    match = re.search(rf"(https?://[^\s]+{re.escape(path)}[^\s]*)", text_of(message))
    assert match, text_of(message)
    return match.group(1)
