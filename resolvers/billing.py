"""Credits, wallet and billing preferences: running a money mutation with the command it ran (its payload shows
what the input named), and what the billing types load."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

from domain.billing import read
from domain.customers.models import Customer
from domain.errors import DomainError
from domain.ledger.models import Transfer
from domain.viewer import Viewer
from domain.visibility import restrict
from resolvers.commands import to_command
from resolvers.common import Outcome, Page, attempt, camel_errors, paginate
from resolvers.context import Context

C = TypeVar("C")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Ran(Generic[C, R]):
    """A mutation's outcome and the command it ran: None when the input did not become one (an id that names
    nothing), else what the payload shows of the input even when the service refused it (the partner funded)."""

    outcome: Outcome[R]
    command: C | None


async def run(
    ctx: Context, service: Callable[[Viewer, C], Awaitable[R]], value: object, command_type: type[C]
) -> Ran[C, R]:
    """`resolvers.commands.perform`, keeping the command."""
    try:
        command = to_command(value, command_type)
    except DomainError as exc:
        return Ran(Outcome(None, camel_errors(exc.errors)), None)
    return Ran(await attempt(service(ctx.viewer, command)), command)


async def customer_of(ctx: Context, customer_id: int) -> Customer | None:
    return await ctx.loaders.customer_by_id.load(customer_id)


async def wallet_state(ctx: Context, customer_id: int) -> read.WalletState:
    return await ctx.loaders.wallet_by_customer.load(customer_id)


async def refills(ctx: Context, customer_id: int, first: int | None, after: str | None) -> Page[Transfer]:
    customer = await restrict(Customer, ctx.viewer).get(id=customer_id)
    return await paginate(read.refills_of(customer), first, after, newest_first=True)


async def balance_after(ctx: Context, account_id: int, balance: Decimal) -> Decimal | None:
    """One side's balance after a transfer, when the viewer owns that account (else None)."""
    return balance if await ctx.loaders.ledger_account_by_id.load(account_id) is not None else None
