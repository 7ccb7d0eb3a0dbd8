"""Partners (white-label agencies)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.partners import services
from domain.partners.commands import PartnerCreate, PartnerUpdate
from domain.partners.models import Partner as PartnerRow
from domain.partners.models import PartnerStatus as DomainPartnerStatus
from resolvers import customers as rc
from resolvers import partners as r
from resolvers import usage as ru
from resolvers.commands import perform
from schema.common import Info
from schema.errors import PartnerError
from schema.nodes import Connection, ModelNode, maybe_view, shows, view_of

if TYPE_CHECKING:
    from schema.accounts import User
    from schema.billing import CreditPool
    from schema.customers import Customer, CustomerFilter
    from schema.storage import StoragePool
    from schema.usage import RateCardRate, RateCardRateInput

PartnerStatus = strawberry.enum(DomainPartnerStatus, name="PartnerStatus")


@strawberry.type
class PartnerBranding:
    logo_url: str | None
    primary_color: str
    secondary_color: str


@strawberry.input
class PartnerBrandingInput:
    logo_url: str | None = strawberry.UNSET
    primary_color: str | None = strawberry.UNSET
    secondary_color: str | None = strawberry.UNSET


@shows(PartnerRow)
@strawberry.type
class Partner(ModelNode):
    loader = "partner_by_id"
    id: relay.NodeID[int]
    name: str
    status: PartnerStatus  # type: ignore[valid-type]
    sender_email: str | None
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field(description="White-label look of emails and portals.")
    def branding(self) -> PartnerBranding:
        return PartnerBranding(
            logo_url=self.model.logo_url,
            primary_color=self.model.primary_color,
            secondary_color=self.model.secondary_color,
        )

    @strawberry.field(description="Credits the partner can still hand out, and what its customers hold.")
    async def credit_pool(self, info: Info) -> Annotated[CreditPool, strawberry.lazy("schema.billing")] | None:
        if not (info.context.viewer.is_platform_admin or info.context.viewer.is_partner_staff):
            return None
        state = await info.context.loaders.pool_by_partner.load(self.id)
        return view_of(state)

    @strawberry.field(description="Knowledge-base storage the partner bought and allocated (partner staff only).")
    async def storage_pool(self, info: Info) -> Annotated[StoragePool, strawberry.lazy("schema.storage")] | None:
        if not (info.context.viewer.is_platform_admin or info.context.viewer.is_partner_staff):
            return None
        return view_of(await info.context.loaders.storage_pool_by_partner.load(self.id))

    @strawberry.field(
        description="Current prices per unit type (the partner's resale prices or the defaults); empty for a "
        "customer's people, API keys and embed tokens while the customer's pricing is hidden (`showPricing`)."
    )
    async def rate_card(self, info: Info) -> list[Annotated[RateCardRate, strawberry.lazy("schema.usage")]]:
        return [view_of(rate) for rate in await ru.rate_card(info.context, self.id)]

    @strawberry.field(description="This partner's customers visible to the viewer.")
    async def customers(
        self,
        info: Info,
        filter: Annotated[CustomerFilter, strawberry.lazy("schema.customers")] | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Annotated[Customer, strawberry.lazy("schema.customers")]]:
        page = await rc.partner_customers(
            info.context, self.id, filter.status if filter else None, filter.search if filter else None, first, after
        )
        return Connection.of(page)


@strawberry.input
class PartnerCreateInput:
    name: str
    owner_email: str
    owner_password: str
    owner_name: str | None = None
    sender_email: str | None = None


@strawberry.type
class PartnerCreatePayload:
    partner: Partner | None
    owner: Annotated[User, strawberry.lazy("schema.accounts")] | None
    errors: list[PartnerError]


@strawberry.input
class PartnerUpdateInput:
    partner_id: strawberry.ID
    name: str | None = strawberry.UNSET
    sender_email: str | None = strawberry.UNSET
    branding: PartnerBrandingInput | None = strawberry.UNSET
    rate_card: list[Annotated[RateCardRateInput, strawberry.lazy("schema.usage")]] | None = strawberry.field(
        default=strawberry.UNSET, description="Prices to change from now on; unit types left out keep theirs."
    )


@strawberry.type
class PartnerUpdatePayload:
    partner: Partner | None
    errors: list[PartnerError]


@strawberry.type
class PartnerQueries:
    @strawberry.field
    async def partner(self, info: Info, id: strawberry.ID) -> Partner | None:
        return Partner.maybe(await r.partner(info.context, id))

    @strawberry.field(description="Partners visible to the viewer (all of them for platform admins).")
    async def partners(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Partner]:
        return Connection.of(await r.partners(info.context, first, after), Partner)


@strawberry.type
class PartnerMutations:
    @strawberry.mutation(description="Platform admins: creates a partner and its first PARTNER_ADMIN.")
    async def partner_create(self, info: Info, input: PartnerCreateInput) -> PartnerCreatePayload:
        outcome = await perform(info.context, services.partner_create, input, PartnerCreate)
        created = outcome.value
        return PartnerCreatePayload(
            partner=Partner.maybe(created.partner if created else None),
            owner=maybe_view(created.owner if created else None),
            errors=PartnerError.list(outcome.errors),
        )

    @strawberry.mutation(description="Partner admins: renames the partner or changes its sender email.")
    async def partner_update(self, info: Info, input: PartnerUpdateInput) -> PartnerUpdatePayload:
        outcome = await perform(info.context, services.partner_update, input, PartnerUpdate)
        return PartnerUpdatePayload(partner=Partner.maybe(outcome.value), errors=PartnerError.list(outcome.errors))
