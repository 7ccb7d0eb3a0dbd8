"""Customers: the partner's client list, one customer, and its lifecycle."""

from __future__ import annotations

from typing import Any

from domain.accounts.models import User
from domain.customers import services
from domain.customers.models import Customer, CustomerStatus
from domain.visibility import restrict
from resolvers.common import (
    Page,
    cursor_pk,
    decode_global_id,
    page_size,
    paginate,
    paginate_list,
)
from resolvers.context import Context


async def customer(ctx: Context, id: str) -> Customer | None:
    try:
        pk = decode_global_id(id, "Customer", "id")
    except Exception:
        return None
    return await ctx.loaders.customer_by_id.load(pk)


async def customers(
    ctx: Context, status: CustomerStatus | None, search: str | None, first: int | None, after: str | None
) -> Page[Customer]:
    return await paginate(services.search_customers(ctx.viewer, status, search), first, after)


async def partner_customers(
    ctx: Context,
    partner_id: int,
    status: CustomerStatus | None,
    search: str | None,
    first: int | None,
    after: str | None,
) -> Page[Customer]:
    """`Partner.customers`: batched with the other partners of the same request (a page of partners, or the same
    partner reached again through its customers, costs one page query)."""
    key = (partner_id, status, search, page_size(first), cursor_pk(Customer, after))
    return await ctx.loaders.customers_by_partner.load(key)


async def team_members(ctx: Context, customer_id: int, first: int | None, after: str | None) -> Page[User]:
    return paginate_list(await ctx.loaders.users_of_customer(customer_id), first, after)


def visible_customers(ctx: Context) -> Any:
    return restrict(Customer, ctx.viewer)
