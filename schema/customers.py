"""Customers (a partner's client businesses) and their team."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.customers import services
from domain.customers.commands import CustomerCreate, CustomerDisable, CustomerEnable, CustomerUpdate
from domain.customers.models import Customer as CustomerRow
from domain.customers.models import CustomerStatus as DomainCustomerStatus
from domain.customers.models import ServiceState as DomainServiceState
from resolvers import customers as r
from resolvers import portal as rp
from resolvers import team as rt
from resolvers.billing import wallet_state
from resolvers.commands import perform
from resolvers.usage import campaigns_of
from schema.common import Info
from schema.errors import CustomerError
from schema.nodes import Connection, ModelNode, maybe_view, shows, view_of

if TYPE_CHECKING:
    from schema.accounts import User
    from schema.billing import BillingPreferencesType, CreditBalance, Wallet
    from schema.demo import DemoState
    from schema.features import FeatureToggles
    from schema.packages import PackageAssignment
    from schema.partners import Partner
    from schema.portal import Branding, PortalSettings
    from schema.storage import Storage
    from schema.team import Invitation, Seats
    from schema.usage import Campaign, SpendingCap

CustomerStatus = strawberry.enum(DomainCustomerStatus, name="CustomerStatus")
ServiceState = strawberry.enum(DomainServiceState, name="ServiceState")


@shows(CustomerRow)
@strawberry.type
class Customer(ModelNode):
    loader = "customer_by_id"
    renamed = {"company_name": "name"}
    id: relay.NodeID[int]
    name: str
    company_name: str
    status: CustomerStatus  # type: ignore[valid-type]
    service_state: ServiceState  # type: ignore[valid-type]
    disabled_at: datetime | None
    phone: str
    country: str
    state: str
    city: str
    zip: str
    address1: str
    address2: str
    created_at: datetime
    updated_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field
    async def partner(self, info: Info) -> Annotated[Partner, strawberry.lazy("schema.partners")]:
        return view_of(await info.context.loaders.partner_by_id.load(self.model.partner_id))

    @strawberry.field(description="Features & Add-ons: portal, analytics add-ons, API access, AI credits, team.")
    async def features(self, info: Info) -> Annotated[FeatureToggles, strawberry.lazy("schema.features")]:
        return view_of(await info.context.loaders.features_by_customer.load(self.id))

    @strawberry.field(description="AI credits: available | used | assigned, with the meter's health.")
    async def credits(self, info: Info) -> Annotated[CreditBalance, strawberry.lazy("schema.billing")]:
        return view_of(await info.context.loaders.credits_by_customer.load(self.id))

    @strawberry.field(description="The prepaid USD wallet (REFILLABLE_WALLET billing).")
    async def wallet(self, info: Info) -> Annotated[Wallet, strawberry.lazy("schema.billing")]:
        return view_of(await wallet_state(info.context, self.id))

    @strawberry.field(description="Billing mode, contact, spending cap, wallet settings and alert switches.")
    async def billing(self, info: Info) -> Annotated[BillingPreferencesType, strawberry.lazy("schema.billing")]:
        return view_of(await info.context.loaders.billing_by_customer.load(self.id))

    @strawberry.field(description="Monthly spending cap: spent this month, projection and status.")
    async def spending_cap(self, info: Info) -> Annotated[SpendingCap, strawberry.lazy("schema.usage")]:
        return view_of(await info.context.loaders.cap_by_customer.load(self.id))

    @strawberry.field(description="Campaigns, oldest first; the spending cap pauses and resumes them.")
    async def campaigns(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Campaign, strawberry.lazy("schema.usage")]]:
        return Connection.of(await campaigns_of(info.context, self.id, first, after))

    @strawberry.field(
        description="The package in force (null: none, or it expired): it decides which features the customer may have."
    )
    async def package(self, info: Info) -> Annotated[PackageAssignment, strawberry.lazy("schema.packages")] | None:
        return maybe_view(await info.context.loaders.package_by_customer.load(self.id))

    @strawberry.field(description="Knowledge-base storage: allocated from the partner's pool, used, percent used.")
    async def storage(self, info: Info) -> Annotated[Storage, strawberry.lazy("schema.storage")]:
        return view_of(await info.context.loaders.storage_by_customer.load(self.id))

    @strawberry.field(description="Users who belong to this customer.")
    async def team_members(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[User, strawberry.lazy("schema.accounts")]]:
        return Connection.of(await r.team_members(info.context, self.id, first, after))

    @strawberry.field(description="Portal settings (seed 001); `enabled` is the portal feature.")
    async def portal(self, info: Info) -> Annotated[PortalSettings, strawberry.lazy("schema.portal")]:
        return view_of(await rp.portal(info.context, self.id))

    @strawberry.field(description="Logo, colours and welcome message: the customer's own over its partner's.")
    async def branding(self, info: Info) -> Annotated[Branding, strawberry.lazy("schema.portal")]:
        return view_of(await rp.branding(info.context, self.id))

    @strawberry.field(description="Demo mode: whether this is a demo customer and when its sample is reset.")
    async def demo(self, info: Info) -> Annotated[DemoState, strawberry.lazy("schema.demo")]:
        return view_of(await info.context.loaders.demo_by_customer.load(self.id))

    @strawberry.field(description="Team seats: members plus pending invitations, at most the limit.")
    async def seats(self, info: Info) -> Annotated[Seats, strawberry.lazy("schema.team")]:
        return view_of(await rt.seats(info.context, self.id))

    @strawberry.field(
        description="Pending invitations to the team, newest first (partner staff and the customer's admins)."
    )
    async def invitations(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Invitation, strawberry.lazy("schema.team")]]:
        return Connection.of(await rt.customer_invitations(info.context, self.id, first, after))


@strawberry.input
class CustomerFilter:
    status: CustomerStatus | None = None  # type: ignore[valid-type]
    search: str | None = strawberry.field(default=None, description="Matches company name, user email or username.")


@strawberry.input
class CustomerCreateInput:
    username: str
    first_name: str
    last_name: str
    email: str
    password: str
    password_confirmation: str
    company_name: str
    phone: str | None = None
    country: str | None = None
    state: str | None = None
    city: str | None = None
    zip: str | None = None
    address1: str | None = None
    address2: str | None = None
    role: str | None = strawberry.field(default=None, description="The admin's role in their company.")
    partner_id: strawberry.ID | None = strawberry.field(default=None, description="Platform admins only.")
    package_id: strawberry.ID | None = strawberry.field(
        default=None, description="A package to assign at once (partner admins): refused whole if it cannot apply."
    )
    auto_invite: bool = strawberry.field(
        default=False, description="Invite the admin to the portal by email (once the portal is on)."
    )


@strawberry.type
class CustomerCreatePayload:
    customer: Customer | None
    user: Annotated[User, strawberry.lazy("schema.accounts")] | None
    errors: list[CustomerError]


@strawberry.input
class CustomerUpdateInput:
    customer_id: strawberry.ID
    company_name: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    country: str | None = strawberry.UNSET
    state: str | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    zip: str | None = strawberry.UNSET
    address1: str | None = strawberry.UNSET
    address2: str | None = strawberry.UNSET


@strawberry.type
class CustomerPayload:
    customer: Customer | None
    errors: list[CustomerError]


@strawberry.input
class CustomerDisableInput:
    customer_id: strawberry.ID


@strawberry.input
class CustomerEnableInput:
    customer_id: strawberry.ID


CustomerUpdatePayload = strawberry.type(type("CustomerUpdatePayload", (CustomerPayload,), {}))
CustomerDisablePayload = strawberry.type(type("CustomerDisablePayload", (CustomerPayload,), {}))
CustomerEnablePayload = strawberry.type(type("CustomerEnablePayload", (CustomerPayload,), {}))


@strawberry.type
class CustomerQueries:
    @strawberry.field(description="Customers the viewer may see, oldest first.")
    async def customers(
        self, info: Info, filter: CustomerFilter | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[Customer]:
        page = await r.customers(
            info.context, filter.status if filter else None, filter.search if filter else None, first, after
        )
        return Connection.of(page, Customer)

    @strawberry.field
    async def customer(self, info: Info, id: strawberry.ID) -> Customer | None:
        return Customer.maybe(await r.customer(info.context, id))


@strawberry.type
class CustomerMutations:
    @strawberry.mutation(description="Creates a customer and its first CUSTOMER_ADMIN user.")
    async def customer_create(self, info: Info, input: CustomerCreateInput) -> CustomerCreatePayload:
        outcome = await perform(info.context, services.customer_create, input, CustomerCreate)
        created = outcome.value
        return CustomerCreatePayload(
            customer=Customer.maybe(created.customer if created else None),
            user=maybe_view(created.user if created else None),
            errors=CustomerError.list(outcome.errors),
        )

    @strawberry.mutation(description="Changes company details; only the fields sent change.")
    async def customer_update(self, info: Info, input: CustomerUpdateInput) -> CustomerUpdatePayload:  # type: ignore[valid-type]
        outcome = await perform(info.context, services.customer_update, input, CustomerUpdate)
        return CustomerUpdatePayload(customer=Customer.maybe(outcome.value), errors=CustomerError.list(outcome.errors))

    @strawberry.mutation(description="Blocks sign-in for the customer's users and ends their sessions.")
    async def customer_disable(self, info: Info, input: CustomerDisableInput) -> CustomerDisablePayload:  # type: ignore[valid-type]
        outcome = await perform(info.context, services.customer_disable, input, CustomerDisable)
        return CustomerDisablePayload(customer=Customer.maybe(outcome.value), errors=CustomerError.list(outcome.errors))

    @strawberry.mutation
    async def customer_enable(self, info: Info, input: CustomerEnableInput) -> CustomerEnablePayload:  # type: ignore[valid-type]
        outcome = await perform(info.context, services.customer_enable, input, CustomerEnable)
        return CustomerEnablePayload(customer=Customer.maybe(outcome.value), errors=CustomerError.list(outcome.errors))
