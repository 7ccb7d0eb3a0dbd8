"""Subscriptions (graphql-transport-ws): each payload is the full current object, pushed after commit. The state
views (credits, wallet, spending cap, usage summary) send the current state as their first message, so a widget
needs no query first; the objects are the same `Node`s the queries return, so a client cache updates in place."""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import date
from typing import Annotated

import strawberry

from domain.alerts.read import alert_of
from domain.billing.cap import CapState, cap_states
from domain.billing.read import CreditState, WalletState, credit_states, wallet_states
from domain.common.json import JsonObject
from domain.events.services import ALERT_RAISED, CREDITS_CHANGED, SPENDING_CAP_CHANGED, WALLET_CHANGED
from resolvers.reports import report_updates
from resolvers.subscriptions import live, usage_summary_updates, visible_customer
from schema.alerts import Alert
from schema.billing import CreditBalance, Wallet
from schema.common import Info
from schema.reports import UsageReport
from schema.usage import SpendingCap, UsageGroupBy, UsageSummaryRow

FIRST_STATE = " The first message is the current state, sent at once; then one after each change (bursts coalesced)."


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The customer's credit meter (`Customer.credits`)." + FIRST_STATE)
    async def credits_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncIterable[CreditBalance]:
        customer = await visible_customer(info.context, customer_id)

        async def render(states: dict[int, CreditState], _: JsonObject) -> CreditBalance:
            return CreditBalance.of(states[customer.id])

        return live(info.context, CREDITS_CHANGED, customer.id, render, lambda: credit_states([customer]), initial=True)

    @strawberry.subscription(
        description="The customer's wallet (`Customer.wallet`): balance and refill state." + FIRST_STATE
    )
    async def wallet_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncIterable[Wallet]:
        customer = await visible_customer(info.context, customer_id)

        async def render(states: dict[int, WalletState], _: JsonObject) -> Wallet:
            return Wallet.of(states[customer.id])

        return live(info.context, WALLET_CHANGED, customer.id, render, lambda: wallet_states([customer]), initial=True)

    @strawberry.subscription(
        description="Spent this month, projection and cap status (`Customer.spendingCap`)." + FIRST_STATE
    )
    async def spending_cap_updated(self, info: Info, customer_id: strawberry.ID) -> AsyncIterable[SpendingCap]:
        customer = await visible_customer(info.context, customer_id)

        async def render(states: dict[int, CapState], _: JsonObject) -> SpendingCap:
            return SpendingCap.of(states[customer.id])

        return live(
            info.context, SPENDING_CAP_CHANGED, customer.id, render, lambda: cap_states([customer.id]), initial=True
        )

    @strawberry.subscription(
        description="Usage per unit type, as `usageSummary` answers it, after each usage batch the customer records "
        "this month. `from` and `to` (inclusive UTC days) default to the first of the current month and today, "
        "taken again at each message." + FIRST_STATE
    )
    async def usage_summary_updated(
        self,
        info: Info,
        customer_id: strawberry.ID,
        from_: Annotated[date | None, strawberry.argument(name="from")] = None,
        to: date | None = None,
        group_by: UsageGroupBy = UsageGroupBy.UNIT_TYPE,
    ) -> AsyncIterable[list[UsageSummaryRow]]:
        return await usage_summary_updates(info.context, customer_id, from_, to, group_by.value, UsageSummaryRow.of)

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
