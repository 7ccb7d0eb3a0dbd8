"""Agency packages (seed 004): the plans a partner assigns to its customers, and their assignments."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.access.models import ApiTier as DomainApiTier
from domain.packages import services
from domain.packages.commands import PackageArchive, PackageAssign, PackageCreate, PackageUpdate
from domain.packages.models import EndReason as DomainEndReason
from domain.packages.models import FeatureKey as DomainFeatureKey
from domain.packages.models import PackageAssignment as PackageAssignmentRow
from resolvers import packages as r
from resolvers.commands import perform
from schema.access import ApiTier
from schema.common import Info
from schema.errors import PackageError
from schema.nodes import Connection, ModelNode, maybe_view, shows
from schema.scalars import Money, usd

if TYPE_CHECKING:
    from schema.customers import Customer

FeatureKey = strawberry.enum(DomainFeatureKey, name="FeatureKey", description="A feature a package switches on.")
EndReason = strawberry.enum(
    DomainEndReason, name="PackageEndReason", description="Why an assignment is no longer the customer's package."
)


@strawberry.type(description="Caps a package sets, applied at assignment.")
class PackageLimits:
    storage_mb: int = strawberry.field(
        description="Knowledge-base storage allocated to the customer from the partner's storage pool at assignment "
        "(POOL_EXHAUSTED when the pool is short) and given back when the package ends; needs KNOWLEDGE_BASE."
    )
    api_rate_tier: ApiTier = strawberry.field(  # type: ignore[valid-type]
        description="Given to the customer's API keys at assignment; new keys get it by default and at most it."
    )
    monthly_spending_cap: Money | None = strawberry.field(
        description="Set as the customer's monthly spending cap at assignment; null leaves the customer's cap alone."
    )

    @classmethod
    def of(cls, storage_mb: int, tier: DomainApiTier, cap: Decimal | None) -> PackageLimits:
        return cls(
            storage_mb=storage_mb, api_rate_tier=tier, monthly_spending_cap=usd(cap) if cap is not None else None
        )


@strawberry.type(description="What an assignment gave: the terms of the package version assigned, kept as they were.")
class PackageTerms:
    title: str
    description: str
    features: list[FeatureKey]  # type: ignore[valid-type]
    user_count: int = strawberry.field(description="Users the client may have: applied as its seat limit.")
    ai_credits: Decimal = strawberry.field(description="Credits granted from the partner's pool, expiring with it.")
    limits: PackageLimits

    @classmethod
    def of(cls, given: services.Given) -> PackageTerms:
        return cls(
            title=given.title,
            description=given.description,
            features=given.features,
            user_count=given.user_count,
            ai_credits=given.ai_credits,
            limits=PackageLimits.of(given.storage_mb, given.api_rate_tier, given.monthly_spending_cap),
        )


@strawberry.type(description="A partner's plan: features, limits, AI credits and expiry for its customers.")
class Package(ModelNode):
    loader = "package_by_id"
    id: relay.NodeID[int]
    title: str
    description: str
    version: int = strawberry.field(description="Starts at 1, +1 on every change; assignments keep theirs.")
    archived: bool = strawberry.field(description="Archived packages cannot be newly assigned.")
    expiry_days: int | None = strawberry.field(description="Days an assignment lasts (null: indefinitely).")
    user_count: int = strawberry.field(
        description="Users a client may have (seed 004): applied as the customer's seat limit (`maxTeamMembers`)."
    )
    ai_credits: Decimal = strawberry.field(description="Credits granted from the partner's pool on assignment.")
    created_at: datetime
    updated_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field
    def features(self) -> list[FeatureKey]:  # type: ignore[valid-type]
        return [DomainFeatureKey(k) for k in self.model.features]

    @strawberry.field
    def limits(self) -> PackageLimits:
        m = self.model
        return PackageLimits.of(m.storage_mb, DomainApiTier(m.api_rate_tier), m.monthly_spending_cap)

    @strawberry.field(description="Only clients with one of these emails can be assigned it (empty: anyone).")
    def restricted_emails(self, info: Info) -> list[str]:
        viewer = info.context.viewer
        if viewer.is_platform_admin or viewer.is_partner_staff:
            return list(self.model.restricted_emails)
        return []  # other clients' addresses are not a customer's business

    @strawberry.field(description="Customers this package is currently in force for.")
    async def customer_count(self, info: Info) -> int:
        return await info.context.loaders.package_customer_count.load(self.id)


@shows(PackageAssignmentRow)
@strawberry.type(description="A package given to a customer, at the version it had then.")
class PackageAssignment(ModelNode):
    loader = "package_assignment_by_id"
    id: relay.NodeID[int]
    version: int
    assigned_at: datetime
    expires_at: datetime | None = strawberry.field(
        description="When the expiry job ends it (null: never): 7 days before and then, the customer's billing "
        "contact and the partner's admins are emailed."
    )
    ended_at: datetime | None = strawberry.field(description="When it stopped being the customer's package.")
    end_reason: EndReason | None  # type: ignore[valid-type]
    model: strawberry.Private[Any]

    @strawberry.field(description="The terms of the version assigned; later edits of the package leave them alone.")
    def given(self) -> PackageTerms:
        return PackageTerms.of(services.Given.of(self.model))

    @strawberry.field
    async def package(self, info: Info) -> Package:
        return Package.from_model(await info.context.loaders.package_by_id.load(self.model.package_id))

    @strawberry.field
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        return maybe_view(await info.context.loaders.customer_by_id.load(self.model.customer_id))

    @strawberry.field(description="Whether it is the customer's current assignment and has not expired.")
    def active(self) -> bool:
        m = self.model
        return m.current_customer_id is not None and (m.expires_at is None or m.expires_at > datetime.now(UTC))


@strawberry.input(description="Only the limits sent change (on update).")
class PackageLimitsInput:
    storage_mb: int | None = strawberry.field(
        default=strawberry.UNSET, description="Megabytes of knowledge-base storage; more than 0 needs KNOWLEDGE_BASE."
    )
    api_rate_tier: ApiTier | None = strawberry.UNSET  # type: ignore[valid-type]
    monthly_spending_cap: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description='USD as a decimal string, e.g. "500.00"; null: no cap is applied.'
    )


@strawberry.input
class PackageCreateInput:
    title: str
    description: str | None = strawberry.UNSET
    features: list[FeatureKey] = strawberry.field(default_factory=list)  # type: ignore[valid-type]
    user_count: int | None = strawberry.field(
        default=strawberry.UNSET, description="Users a client may have (1 or more); not sent: 5."
    )
    limits: PackageLimitsInput | None = strawberry.UNSET
    ai_credits: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="Credits as a decimal string; needs the AI_CREDITS feature when > 0."
    )
    expiry_days: int | None = strawberry.UNSET
    restricted_emails: list[str] | None = strawberry.UNSET
    partner_id: strawberry.ID | None = strawberry.field(default=None, description="Platform admins only.")


@strawberry.input(description="Only the fields sent change; a real change increments the version.")
class PackageUpdateInput:
    package_id: strawberry.ID
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    features: list[FeatureKey] | None = strawberry.UNSET  # type: ignore[valid-type]
    user_count: int | None = strawberry.UNSET
    limits: PackageLimitsInput | None = strawberry.UNSET
    ai_credits: Decimal | None = strawberry.UNSET
    expiry_days: int | None = strawberry.UNSET
    restricted_emails: list[str] | None = strawberry.UNSET


@strawberry.input
class PackageArchiveInput:
    package_id: strawberry.ID


@strawberry.input
class PackageAssignInput:
    customer_id: strawberry.ID
    package_id: strawberry.ID
    idempotency_key: str = strawberry.field(
        description="A repeat with the same key returns the first outcome (one grant, however often it is sent)."
    )


@strawberry.type
class PackagePayload:
    package: Package | None
    errors: list[PackageError]


PackageCreatePayload = strawberry.type(type("PackageCreatePayload", (PackagePayload,), {}))
PackageUpdatePayload = strawberry.type(type("PackageUpdatePayload", (PackagePayload,), {}))
PackageArchivePayload = strawberry.type(type("PackageArchivePayload", (PackagePayload,), {}))


@strawberry.type
class PackageAssignPayload:
    assignment: PackageAssignment | None
    errors: list[PackageError]


@strawberry.type
class PackageQueries:
    @strawberry.field(description="Packages the viewer may see, oldest first; `archived` filters when given.")
    async def packages(
        self, info: Info, archived: bool | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[Package]:
        return Connection.of(await r.packages(info.context, archived, first, after), Package)

    @strawberry.field
    async def package(self, info: Info, id: strawberry.ID) -> Package | None:
        return Package.maybe(await r.package(info.context, id))


@strawberry.type
class PackageMutations:
    @strawberry.mutation(description="Partner admins: creates a package (version 1).")
    async def package_create(self, info: Info, input: PackageCreateInput) -> PackageCreatePayload:  # type: ignore[valid-type]
        outcome = await perform(info.context, services.package_create, input, PackageCreate)
        return PackageCreatePayload(package=Package.maybe(outcome.value), errors=PackageError.list(outcome.errors))

    @strawberry.mutation(description="Partner admins: changes a package; customers keep the version they were given.")
    async def package_update(self, info: Info, input: PackageUpdateInput) -> PackageUpdatePayload:  # type: ignore[valid-type]
        outcome = await perform(info.context, services.package_update, input, PackageUpdate)
        return PackageUpdatePayload(package=Package.maybe(outcome.value), errors=PackageError.list(outcome.errors))

    @strawberry.mutation(description="Partner admins: archives a package; it can no longer be assigned.")
    async def package_archive(self, info: Info, input: PackageArchiveInput) -> PackageArchivePayload:  # type: ignore[valid-type]
        outcome = await perform(info.context, services.package_archive, input, PackageArchive)
        return PackageArchivePayload(package=Package.maybe(outcome.value), errors=PackageError.list(outcome.errors))

    @strawberry.mutation(
        description="Partner admins: makes a package the customer's package in force, in one transaction (features, "
        "seat limit, storage from the pool, API key tier, spending cap, AI credits as an expiring grant from the "
        "pool); refused whole on any failure."
    )
    async def package_assign(self, info: Info, input: PackageAssignInput) -> PackageAssignPayload:
        outcome = await perform(info.context, services.package_assign, input, PackageAssign)
        return PackageAssignPayload(
            assignment=PackageAssignment.maybe(outcome.value), errors=PackageError.list(outcome.errors)
        )
