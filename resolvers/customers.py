"""Customers: the partner's client list, one customer, and its lifecycle."""

from __future__ import annotations

from typing import Any

from domain.accounts.models import User
from domain.customers import services
from domain.customers.models import Customer, CustomerStatus
from domain.visibility import restrict
from resolvers.common import Outcome, Page, attempt, decode_global_id, paginate, paginate_list


async def customer(ctx: Any, id: str) -> Customer | None:
    try:
        pk = decode_global_id(id, "Customer", "id")
    except Exception:
        return None
    return await ctx.loaders.customer_by_id.load(pk)


async def customers(
    ctx: Any,
    status: CustomerStatus | None,
    search: str | None,
    first: int | None,
    after: str | None,
    partner_id: int | None = None,
) -> Page[Customer]:
    qs = services.search_customers(ctx.viewer, status, search)
    if partner_id is not None:
        qs = qs.filter(partner_id=partner_id)
    return await paginate(qs, first, after)


async def team_members(ctx: Any, customer_id: int, first: int | None, after: str | None) -> Page[User]:
    return paginate_list(await ctx.loaders.users_of_customer(customer_id), first, after)


async def customer_create(ctx: Any, data: dict[str, Any]) -> Outcome[services.CustomerCreated]:
    async def run() -> services.CustomerCreated:
        if data.get("partner_id") is not None:
            data["partner_id"] = decode_global_id(data["partner_id"], "Partner", "partner_id")
        if data.get("package_id") is not None:
            data["package_id"] = decode_global_id(data["package_id"], "Package", "package_id")
        return await services.customer_create(ctx.viewer, data)

    return await attempt(run())


async def customer_update(ctx: Any, data: dict[str, Any]) -> Outcome[Customer]:
    async def run() -> Customer:
        pk = decode_global_id(data.pop("customer_id"), "Customer", "customer_id")
        return await services.customer_update(ctx.viewer, pk, data)

    return await attempt(run())


async def customer_set_enabled(ctx: Any, customer_id: str, enabled: bool) -> Outcome[Customer]:
    async def run() -> Customer:
        pk = decode_global_id(customer_id, "Customer", "customer_id")
        if enabled:
            return await services.customer_enable(ctx.viewer, pk)
        return await services.customer_disable(ctx.viewer, pk)

    return await attempt(run())


def visible_customers(ctx: Any) -> Any:
    return restrict(Customer, ctx.viewer)
