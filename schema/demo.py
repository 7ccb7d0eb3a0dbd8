"""Demo mode (seed 001): `Customer.demo` and `customerDemoModeSet`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from domain.demo import services
from domain.demo.commands import CustomerDemoModeSet
from domain.demo.services import DemoView
from resolvers.commands import perform
from schema.common import Info
from schema.errors import FeatureError
from schema.nodes import maybe_view, shows

if TYPE_CHECKING:
    from schema.customers import Customer


@shows(DemoView)
@strawberry.type(
    description="Demo mode: sample data, limited features (no API keys, emails only to the outbox folder, no real "
    "payments), reset to the sample every night (UTC)."
)
class DemoState:
    enabled: bool
    last_reset_at: datetime | None
    next_reset_at: datetime | None

    @classmethod
    def of(cls, view: DemoView) -> DemoState:
        return cls(enabled=view.enabled, last_reset_at=view.last_reset_at, next_reset_at=view.next_reset_at)


@strawberry.input
class CustomerDemoModeSetInput:
    customer_id: strawberry.ID
    enabled: bool = strawberry.field(description="On lays the sample data; off wipes it.")


@strawberry.type
class CustomerDemoModeSetPayload:
    demo: DemoState | None
    customer: Annotated[Customer, strawberry.lazy("schema.customers")] | None
    errors: list[FeatureError]


@strawberry.type
class DemoMutations:
    @strawberry.mutation(description="Partner admins: makes a customer a demo (sample data, nightly reset) or not.")
    async def customer_demo_mode_set(self, info: Info, input: CustomerDemoModeSetInput) -> CustomerDemoModeSetPayload:
        outcome = await perform(info.context, services.customer_demo_mode_set, input, CustomerDemoModeSet)
        view = outcome.value
        info.context.reset_loaders()
        customer = await info.context.loaders.customer_by_id.load(view.customer_id) if view else None
        return CustomerDemoModeSetPayload(
            demo=DemoState.of(view) if view else None,
            customer=maybe_view(customer),
            errors=FeatureError.list(outcome.errors),
        )
