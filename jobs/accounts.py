"""Account emails: the email change confirmation link (to the new address) and the notice (to the old one)."""

from __future__ import annotations

from typing import Any

import dramatiq

from domain.accounts import settings
from domain.accounts.models import User
from domain.accounts.render import render_email_change_confirmation, render_email_changed_notice
from domain.partners.models import Partner
from jobs import mailer


async def _partner(mail: dict[str, Any]) -> Partner | None:
    return await Partner.get_or_none(id=mail["partner_id"]) if mail.get("partner_id") else None


@dramatiq.actor(max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def send_email_change_confirmation(mail: dict[str, Any]) -> bool:
    """Signs the token from the request's values (it is never stored) and mails the link to the new address."""
    user = await User.get_or_none(id=mail["user_id"], is_active=True)
    if user is None or user.email_key != mail["old_email"].lower():
        return False  # the email changed meanwhile: this link could never be confirmed
    token = settings.email_change_token(user.id, mail["new_email"], mail["old_email"], mail["expires"])
    message = render_email_change_confirmation(
        await _partner(mail), user.full_name, mail["new_email"], settings.email_change_link(token)
    )
    await mailer.send(message)
    return True


@dramatiq.actor(max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def notify_email_changed(mail: dict[str, Any]) -> bool:
    user = await User.get_or_none(id=mail["user_id"])
    name = user.full_name if user else mail["old_email"]
    await mailer.send(render_email_changed_notice(await _partner(mail), name, mail["old_email"], mail["new_email"]))
    return True
