"""Credits, wallet and billing preferences: decode ids, call the billing services, load what the payload shows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.billing import services
from domain.billing.models import BillingPreferences
from domain.customers.models import Customer
from domain.ledger.models import Transfer
from domain.visibility import restrict
from resolvers.common import Outcome, Page, attempt, decode_global_id, paginate
from resolvers.context import Context


async def _transfer(ctx: Context, response: dict[str, Any]) -> Transfer:
    return await Transfer.get(id=response["transfer_id"])


async def partner_credits_add(ctx: Context, data: dict[str, Any]) -> Outcome[Transfer]:
    async def run() -> Transfer:
        partner_id = decode_global_id(data["partner_id"], "Partner", "partner_id")
        response = await services.partner_credits_add(
            ctx.viewer, partner_id, data["credits"], data.get("note"), data["idempotency_key"]
        )
        return await _transfer(ctx, response)

    return await attempt(run())


async def customer_credits_move(ctx: Context, data: dict[str, Any], *, reclaim: bool) -> Outcome[Transfer]:
    async def run() -> Transfer:
        customer_id = decode_global_id(data["customer_id"], "Customer", "customer_id")
        service = services.customer_credits_reclaim if reclaim else services.customer_credits_recharge
        response = await service(ctx.viewer, customer_id, data["credits"], data["idempotency_key"])
        return await _transfer(ctx, response)

    return await attempt(run())


async def wallet_refill(ctx: Context, data: dict[str, Any]) -> Outcome[Transfer]:
    async def run() -> Transfer:
        customer_id = decode_global_id(data["customer_id"], "Customer", "customer_id")
        response = await services.wallet_refill(
            ctx.viewer, customer_id, data["amount"], data.get("reference"), data["idempotency_key"]
        )
        return await _transfer(ctx, response)

    return await attempt(run())


async def billing_preferences_update(ctx: Context, data: dict[str, Any]) -> Outcome[BillingPreferences]:
    async def run() -> BillingPreferences:
        customer_id = decode_global_id(data.pop("customer_id"), "Customer", "customer_id")
        if data.get("primary_contact_user_id") is not None:
            data["primary_contact_user_id"] = decode_global_id(
                data["primary_contact_user_id"], "User", "primary_contact_user_id"
            )
        return await services.billing_preferences_update(ctx.viewer, customer_id, data)

    return await attempt(run())


async def customer_of(ctx: Context, customer_id: int) -> Customer | None:
    return await ctx.loaders.customer_by_id.load(customer_id)


async def wallet_state(ctx: Context, customer_id: int) -> services.WalletState:
    return await ctx.loaders.wallet_by_customer.load(customer_id)


async def refills(ctx: Context, customer_id: int, first: int | None, after: str | None) -> Page[Transfer]:
    customer = await restrict(Customer, ctx.viewer).get(id=customer_id)
    return await paginate(services.refills_of(customer), first, after, newest_first=True)


async def balance_after(ctx: Context, account_id: int, balance: Decimal) -> Decimal | None:
    """One side's balance after a transfer, when the viewer owns that account (else None)."""
    return balance if await ctx.loaders.ledger_account_by_id.load(account_id) is not None else None


def decoded_or_none(global_id: Any, type_name: str) -> int | None:
    try:
        return decode_global_id(global_id, type_name, "id")
    except Exception:
        return None
