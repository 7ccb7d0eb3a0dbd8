"""Sending the account emails the outbox asks for (jobs/accounts.py hands in the transport): the email change
confirmation link to the new address and the notice to the old one, each under the brand the user acted under."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage

from domain.accounts.models import User
from domain.accounts.render import render_email_change_confirmation, render_email_changed_notice
from domain.accounts.settings import EmailChanged, EmailChangeRequested, email_change_path, email_change_token
from domain.partners.branding import brand_of_partner_id

Send = Callable[[EmailMessage], Awaitable[None]]


async def send_email_change_confirmation(mail: EmailChangeRequested, send: Send) -> bool:
    """Signs the token from the request's values (it is never stored) and mails the link to the new address;
    False when the email changed meanwhile, so this link could never be confirmed."""
    user = await User.get_or_none(id=mail.user_id, is_active=True)
    if user is None or user.email_key != mail.old_email.lower():
        return False
    brand = await brand_of_partner_id(mail.partner_id)
    link = brand.link(email_change_path(email_change_token(user.id, mail.new_email, mail.old_email, mail.expires)))
    await send(render_email_change_confirmation(brand, user.full_name, mail.new_email, link))
    return True


async def send_email_changed_notice(mail: EmailChanged, send: Send) -> bool:
    """Tells the old address that the account moved (greeting the user by name while they exist)."""
    user = await User.get_or_none(id=mail.user_id)
    name = user.full_name if user else mail.old_email
    brand = await brand_of_partner_id(mail.partner_id)
    await send(render_email_changed_notice(brand, name, mail.old_email, mail.new_email))
    return True
