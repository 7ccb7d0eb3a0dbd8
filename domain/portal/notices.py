"""Sending the portal invitation (auto-invite) to a customer's active admins, under the customer's brand, with
the link on the partner's first verified domain (jobs/team.py hands in the transport)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage

from domain.accounts.models import Membership, Role
from domain.accounts.render import render_portal_invitation
from domain.customers.models import Customer, CustomerStatus
from domain.partners.branding import brand_of
from domain.partners.models import Partner

Send = Callable[[EmailMessage], Awaitable[None]]


async def send_portal_invitation(customer_id: int, send: Send) -> int:
    """Emails each active admin of an active customer; returns how many were emailed."""
    customer = await Customer.get_or_none(id=customer_id, status=CustomerStatus.ACTIVE)
    if customer is None:
        return 0
    partner = await Partner.get(id=customer.partner_id)
    brand = await brand_of(partner, customer.id)
    admins = await Membership.filter(
        customer_id=customer.id, role=Role.CUSTOMER_ADMIN, user__is_active=True
    ).select_related("user")
    for membership in admins:
        user = membership.user
        await send(render_portal_invitation(brand, user.email, user.full_name, user.username, brand.link("/")))
    return len(admins)
