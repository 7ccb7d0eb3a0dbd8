"""Subscriptions (graphql-transport-ws): each payload is the full current object, pushed after commit."""

from __future__ import annotations

from collections.abc import AsyncIterable

import strawberry

from domain.alerts.read import alert_of
from domain.billing.cap import CapState, cap_states
from domain.billing.read import CreditState, WalletState, credit_states, wallet_states
from domain.common.json import JsonObject
from domain.events.services import ALERT_RAISED, CREDITS_CHANGED, SPENDING_CAP_CHANGED, WALLET_CHANGED
from resolvers.reports import report_updates
from resolvers.subscriptions import live, visible_customer
from schema.alerts import Alert
from schema.billing import CreditBalance, Wallet
from schema.common import Info
from schema.reports import UsageReport
from schema.usage import SpendingCap


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The customer's credit meter whenever it changes.")
    async def credits_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncIterable[CreditBalance]:
        customer = await visible_customer(info.context, customer_id)

        async def render(states: dict[int, CreditState], _: JsonObject) -> CreditBalance:
            return CreditBalance.of(states[customer.id])

        return live(info.context, CREDITS_CHANGED, customer.id, render, lambda: credit_states([customer]))

    @strawberry.subscription(description="The customer's wallet whenever its balance or refill state changes.")
    async def wallet_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncIterable[Wallet]:
        customer = await visible_customer(info.context, customer_id)

        async def render(states: dict[int, WalletState], _: JsonObject) -> Wallet:
            return Wallet.of(states[customer.id])

        return live(info.context, WALLET_CHANGED, customer.id, render, lambda: wallet_states([customer]))

    @strawberry.subscription(description="Spent this month, projection and cap status whenever they change.")
    async def spending_cap_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncIterable[SpendingCap]:
        customer = await visible_customer(info.context, customer_id)

        async def render(states: dict[int, CapState], _: JsonObject) -> SpendingCap:
            return SpendingCap.of(states[customer.id])

        return live(info.context, SPENDING_CAP_CHANGED, customer.id, render, lambda: cap_states([customer.id]))

    @strawberry.subscription(description="Each alert raised for the customer.")
    async def alert_raised(self, info: Info, customer_id: strawberry.ID) -> AsyncIterable[Alert]:
        customer = await visible_customer(info.context, customer_id)

        async def render(_: None, payload: JsonObject) -> Alert | None:
            row = await alert_of(customer.id, payload.get("alert_id"))
            return Alert.from_model(row) if row is not None else None

        return live(info.context, ALERT_RAISED, customer.id, render, each_change=True)

    @strawberry.subscription(
        description="The report now, then after each status change (QUEUED, RUNNING, READY or FAILED); completes "
        "once it is READY or FAILED."
    )
    async def usage_report_updated(self, info: Info, id: strawberry.ID) -> AsyncIterable[UsageReport]:
        return await report_updates(info.context, id, UsageReport.from_model)
