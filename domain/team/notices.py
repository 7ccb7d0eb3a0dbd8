"""Sending the invitation emails the outbox asks for (jobs/team.py hands in the transport), under the brand of the
organization the person is invited to, with the link on the partner's first verified domain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage

from domain.accounts.models import User
from domain.accounts.render import render_invitation
from domain.customers.models import Customer
from domain.partners.branding import brand_of
from domain.partners.models import Partner
from domain.team.models import Invitation, InvitationStatus
from domain.team.services import ROLE_LABELS, InvitationMail, invitation_path, invitation_token, status_of

Send = Callable[[EmailMessage], Awaitable[None]]


async def send_invitation(mail: InvitationMail, send: Send) -> bool:
    """Emails the invitation's link; False (nothing sent) when it was re-sent since (a newer link went out),
    accepted, revoked or has expired."""
    invitation = await Invitation.get_or_none(id=mail.invitation_id)
    if invitation is None or invitation.nonce != mail.nonce or status_of(invitation) is not InvitationStatus.PENDING:
        return False
    partner = await Partner.get(id=invitation.partner_id)
    customer = await Customer.get_or_none(id=invitation.customer_id) if invitation.customer_id else None
    brand = await brand_of(partner, invitation.customer_id)
    inviter = await User.get_or_none(id=invitation.invited_by_user_id) if invitation.invited_by_user_id else None
    link = brand.link(invitation_path(invitation_token(invitation)))
    message = render_invitation(
        brand,
        invitation.email,
        inviter.full_name if inviter else brand.name,
        customer.name if customer else partner.name,
        ROLE_LABELS.get(invitation.role, "a member"),
        link,
        invitation.expires_at,
    )
    await send(message)
    return True
