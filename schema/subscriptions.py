"""Subscriptions (graphql-transport-ws): each payload is the full current object, pushed after commit."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from domain.alerts.models import Alert as AlertRow
from domain.billing import services as billing
from domain.billing.cap import cap_states
from domain.events.services import ALERT_RAISED, CREDITS_CHANGED, SPENDING_CAP_CHANGED, WALLET_CHANGED
from resolvers.subscriptions import visible_customer, watch
from schema.alerts import Alert
from schema.billing import CreditBalance, Wallet
from schema.usage import SpendingCap


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The customer's credit meter whenever it changes.")
    async def credits_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncGenerator[CreditBalance, None]:
        customer = await visible_customer(info.context, customer_id)
        async for states in watch(
            info.context, CREDITS_CHANGED, customer.id, lambda: billing.credit_states([customer])
        ):
            yield CreditBalance.of(states[customer.id])

    @strawberry.subscription(description="The customer's wallet whenever its balance or refill state changes.")
    async def wallet_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncGenerator[Wallet, None]:
        customer = await visible_customer(info.context, customer_id)
        async for states in watch(info.context, WALLET_CHANGED, customer.id, lambda: billing.wallet_states([customer])):
            yield Wallet.of(states[customer.id])

    @strawberry.subscription(description="Spent this month, projection and cap status whenever they change.")
    async def spending_cap_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncGenerator[SpendingCap, None]:
        customer = await visible_customer(info.context, customer_id)
        async for states in watch(info.context, SPENDING_CAP_CHANGED, customer.id, lambda: cap_states([customer.id])):
            yield SpendingCap.of(states[customer.id])

    @strawberry.subscription(description="Each alert raised for the customer.")
    async def alert_raised(self, info: Info, customer_id: strawberry.ID) -> AsyncGenerator[Alert, None]:
        customer = await visible_customer(info.context, customer_id)
        async for payload in watch(info.context, ALERT_RAISED, customer.id):
            row = await AlertRow.get_or_none(id=payload.get("alert_id"), customer_id=customer.id)
            if row is not None:
                yield Alert.from_model(row)
