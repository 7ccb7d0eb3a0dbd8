"""Team emails: invitations (to a customer's team or a partner's staff) and portal invitations of a customer's
admins (auto-invite). Each actor reads its outbox payload and hands it, with the mailer, to one domain service."""

from __future__ import annotations

import dramatiq
import msgspec

from domain.common.json import JsonObject
from domain.portal import notices as portal_notices
from domain.team import notices
from domain.team.services import InvitationMail
from jobs import mailer


@dramatiq.actor(max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def send_invitation(mail: JsonObject) -> bool:
    """Mails the invitation link; False when a newer one went out or it is no longer pending."""
    return await notices.send_invitation(msgspec.convert(mail, InvitationMail), mailer.send)


@dramatiq.actor(max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def send_portal_invitation(customer_id: int) -> int:
    """Invites the customer's active admins to its portal; returns how many were emailed."""
    return await portal_notices.send_portal_invitation(customer_id, mailer.send)
