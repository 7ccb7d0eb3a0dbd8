"""Teams: the nested reads `Customer.invitations`, `Partner.invitations` and `Customer.seats`, batched per request
(the mutations go straight to domain/team/services.py through `perform`)."""

from __future__ import annotations

from domain.team.models import Invitation
from domain.team.seats import Seats
from resolvers.common import Page, cursor_pk, page_size
from resolvers.context import Context


async def customer_invitations(
    ctx: Context, customer_id: int, first: int | None, after: str | None
) -> Page[Invitation]:
    return await ctx.loaders.invitations_by_customer.load((customer_id, page_size(first), cursor_pk(Invitation, after)))


async def partner_invitations(ctx: Context, partner_id: int, first: int | None, after: str | None) -> Page[Invitation]:
    return await ctx.loaders.invitations_by_partner.load((partner_id, page_size(first), cursor_pk(Invitation, after)))


async def seats(ctx: Context, customer_id: int) -> Seats | None:
    return await ctx.loaders.seats_by_customer.load(customer_id)
