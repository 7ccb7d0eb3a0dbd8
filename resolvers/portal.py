"""A customer's portal and branding: the batched reads behind `Customer.portal` and `Customer.branding`."""

from __future__ import annotations

from domain.partners.branding import Branding
from domain.portal.services import PortalState
from resolvers.context import Context


async def portal(ctx: Context, customer_id: int) -> PortalState | None:
    return await ctx.loaders.portal_by_customer.load(customer_id)


async def branding(ctx: Context, customer_id: int) -> Branding | None:
    return await ctx.loaders.branding_by_customer.load(customer_id)
