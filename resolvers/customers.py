"""Customers: the partner's client list, one customer, and its lifecycle."""

from __future__ import annotations

from typing import Any

from domain.accounts.models import User
from domain.customers import services
from domain.customers.models import Customer, CustomerStatus
from domain.visibility import restrict
from resolvers.common import (
    Outcome,
    Page,
    attempt,
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


async def customer_create(ctx: Context, data: dict[str, Any]) -> Outcome[services.CustomerCreated]:
    async def run() -> services.CustomerCreated:
        if data.get("partner_id") is not None:
            data["partner_id"] = decode_global_id(data["partner_id"], "Partner", "partner_id")
        if data.get("package_id") is not None:
            data["package_id"] = decode_global_id(data["package_id"], "Package", "package_id")
        return await services.customer_create(ctx.viewer, data)

    return await attempt(run())


async def customer_update(ctx: Context, data: dict[str, Any]) -> Outcome[Customer]:
    async def run() -> Customer:
        pk = decode_global_id(data.pop("customer_id"), "Customer", "customer_id")
        return await services.customer_update(ctx.viewer, pk, data)

    return await attempt(run())


async def customer_set_enabled(ctx: Context, customer_id: str, enabled: bool) -> Outcome[Customer]:
    async def run() -> Customer:
        pk = decode_global_id(customer_id, "Customer", "customer_id")
        if enabled:
            return await services.customer_enable(ctx.viewer, pk)
        return await services.customer_disable(ctx.viewer, pk)

    return await attempt(run())


def visible_customers(ctx: Context) -> Any:
    return restrict(Customer, ctx.viewer)
