"""Partners (white-label agencies)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay
from strawberry.file_uploads import Upload

from domain.partners import domains, services
from domain.partners.commands import PartnerCreate, PartnerDomainVerify, PartnerUpdate
from domain.partners.models import Partner as PartnerRow
from domain.partners.models import PartnerDomain as PartnerDomainRow
from domain.partners.models import PartnerStatus as DomainPartnerStatus
from resolvers import customers as rc
from resolvers import partners as r
from resolvers import team as rt
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
    from schema.team import Invitation
    from schema.usage import RateCardRate, RateCardRateInput

PartnerStatus = strawberry.enum(DomainPartnerStatus, name="PartnerStatus")


@strawberry.type(description="The partner's white-label look (customers may override it: Customer.branding).")
class PartnerBranding:
    logo_url: str | None
    primary_color: str
    secondary_color: str
    welcome_message: str = strawberry.field(description="Plain text (escape it when showing it as HTML).")
    sender_name: str = strawberry.field(description="The From name of the partner's emails.")
    sender_email: str | None = strawberry.field(description="The From address of its emails (null: the platform's).")


@strawberry.input(description="Only the fields sent change.")
class PartnerBrandingInput:
    logo: Upload | None = strawberry.field(
        default=strawberry.UNSET,
        description="A PNG or JPG of at most 512 KB (multipart request), re-encoded; SVG is refused; null removes it.",
    )
    primary_color: str | None = strawberry.field(default=strawberry.UNSET, description="#rrggbb")
    secondary_color: str | None = strawberry.field(default=strawberry.UNSET, description="#rrggbb")
    welcome_message: str | None = strawberry.field(
        default=strawberry.UNSET, description="Plain text, at most 1,000 characters; null removes it."
    )
    sender_name: str | None = strawberry.field(
        default=strawberry.UNSET, description="The From name of emails (null: the partner's name)."
    )
    sender_email: str | None = strawberry.field(
        default=strawberry.UNSET, description="The From address of emails (null: the platform's)."
    )


@shows(PartnerDomainRow)
@strawberry.type(description="A custom domain and how to verify it (a DNS TXT record).")
class PartnerDomain:
    domain: str
    verified: bool
    verified_at: datetime | None
    last_checked_at: datetime | None
    txt_record_name: str = strawberry.field(description="Publish a TXT record at this name…")
    txt_record_value: str = strawberry.field(description="…with this value; then run partnerDomainVerify.")

    @classmethod
    def of(cls, row: PartnerDomainRow) -> PartnerDomain:
        return cls(
            domain=row.domain,
            verified=row.verified_at is not None,
            verified_at=row.verified_at,
            last_checked_at=row.last_checked_at,
            txt_record_name=domains.record_name(row.domain),
            txt_record_value=domains.record_value(row),
        )


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
            welcome_message=self.model.welcome_message or "",
            sender_name=self.model.sender_name or self.model.name,
            sender_email=self.model.sender_email,
        )

    @strawberry.field(description="Custom domains in the partner's order (verified or not).")
    async def domains(self, info: Info) -> list[str]:
        return [row.domain for row in await info.context.loaders.domains_by_partner.load(self.id)]

    @strawberry.field(description="Custom domains with their verification state and DNS record (partner staff only).")
    async def custom_domains(self, info: Info) -> list[PartnerDomain]:
        viewer = info.context.viewer
        if not (viewer.is_platform_admin or viewer.is_partner_staff):
            return []
        return [PartnerDomain.of(row) for row in await info.context.loaders.domains_by_partner.load(self.id)]

    @strawberry.field(description="Pending invitations to the partner's staff, newest first (partner staff).")
    async def invitations(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Invitation, strawberry.lazy("schema.team")]]:
        return Connection.of(await rt.partner_invitations(info.context, self.id, first, after))

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
    domains: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description="The complete list of custom domains (portal.example.com), in order: links in emails use the "
        "first verified one. New ones start unverified.",
    )


@strawberry.type
class PartnerUpdatePayload:
    partner: Partner | None
    errors: list[PartnerError]


@strawberry.input
class PartnerDomainVerifyInput:
    partner_id: strawberry.ID
    domain: str


@strawberry.type
class PartnerDomainVerifyPayload:
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

    @strawberry.mutation(
        description="Partner admins: the partner's name, branding (logo upload, colours, welcome message, sender), "
        "custom domains and rate card."
    )
    async def partner_update(self, info: Info, input: PartnerUpdateInput) -> PartnerUpdatePayload:
        outcome = await perform(info.context, services.partner_update, input, PartnerUpdate)
        info.context.reset_loaders()
        return PartnerUpdatePayload(partner=Partner.maybe(outcome.value), errors=PartnerError.list(outcome.errors))

    @strawberry.mutation(
        description="Partner admins: checks a custom domain's DNS TXT record now (NOT_ELIGIBLE until it is found)."
    )
    async def partner_domain_verify(self, info: Info, input: PartnerDomainVerifyInput) -> PartnerDomainVerifyPayload:
        outcome = await perform(info.context, services.partner_domain_verify, input, PartnerDomainVerify)
        info.context.reset_loaders()
        return PartnerDomainVerifyPayload(
            partner=Partner.maybe(outcome.value), errors=PartnerError.list(outcome.errors)
        )
