"""Account emails: the email change confirmation link (to the new address) and the notice (to the old one). Each
actor reads its outbox payload into the event's type and hands it, with the mailer, to one domain service."""

from __future__ import annotations

import dramatiq
import msgspec

from domain.accounts import notices
from domain.accounts.settings import EmailChanged, EmailChangeRequested
from domain.common.json import JsonObject
from jobs import mailer


@dramatiq.actor(max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def send_email_change_confirmation(mail: JsonObject) -> bool:
    """Mails the confirmation link; False when the email changed meanwhile."""
    return await notices.send_email_change_confirmation(msgspec.convert(mail, EmailChangeRequested), mailer.send)


@dramatiq.actor(max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def notify_email_changed(mail: JsonObject) -> bool:
    return await notices.send_email_changed_notice(msgspec.convert(mail, EmailChanged), mailer.send)
