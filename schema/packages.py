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


@strawberry.type(description="Caps a package sets; a null spending cap leaves the customer's cap as it is.")
class PackageLimits:
    max_team_members: int = strawberry.field(description="Applied as the customer's maximum team members (seats).")
    storage_mb: int = strawberry.field(description="Stored and shown; not applied to the storage allocation yet.")
    api_rate_tier: ApiTier = strawberry.field(  # type: ignore[valid-type]
        description="Stored and shown; not applied to existing API keys."
    )
    monthly_spending_cap: Money | None


@strawberry.type(description="A partner's plan: features, limits, AI credits and expiry for its customers.")
class Package(ModelNode):
    loader = "package_by_id"
    id: relay.NodeID[int]
    title: str
    description: str
    version: int = strawberry.field(description="Starts at 1, +1 on every change; assignments keep theirs.")
    archived: bool = strawberry.field(description="Archived packages cannot be newly assigned.")
    expiry_days: int | None = strawberry.field(description="Days an assignment lasts (null: indefinitely).")
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
        return PackageLimits(
            max_team_members=m.max_team_members,
            storage_mb=m.storage_mb,
            api_rate_tier=DomainApiTier(m.api_rate_tier),
            monthly_spending_cap=usd(m.monthly_spending_cap) if m.monthly_spending_cap is not None else None,
        )

    @strawberry.field(description="Only clients with one of these emails can be assigned it (empty: anyone).")
    def restricted_emails(self, info: Info) -> list[str]:
        viewer = info.context.viewer
        if viewer.is_platform_admin or viewer.is_partner_staff:
            return list(self.model.restricted_emails)
        return []  # other clients' addresses are not a customer's business

    @strawberry.field(description="Customers this package is currently in force for.")
    async def user_count(self, info: Info) -> int:
        return await info.context.loaders.package_user_count.load(self.id)


@shows(PackageAssignmentRow)
@strawberry.type(description="A package given to a customer, at the version it had then.")
class PackageAssignment(ModelNode):
    loader = "package_assignment_by_id"
    id: relay.NodeID[int]
    version: int
    assigned_at: datetime
    expires_at: datetime | None
    model: strawberry.Private[Any]

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
    max_team_members: int | None = strawberry.UNSET
    storage_mb: int | None = strawberry.UNSET
    api_rate_tier: ApiTier | None = strawberry.UNSET  # type: ignore[valid-type]
    monthly_spending_cap: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description='USD as a decimal string, e.g. "500.00"; null: no cap is applied.'
    )


@strawberry.input
class PackageCreateInput:
    title: str
    description: str | None = strawberry.UNSET
    features: list[FeatureKey] = strawberry.field(default_factory=list)  # type: ignore[valid-type]
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
        description="Partner admins: applies a package to a customer in one transaction (features, team limit, "
        "spending cap, AI credits as an expiring grant from the pool); refused whole on any failure."
    )
    async def package_assign(self, info: Info, input: PackageAssignInput) -> PackageAssignPayload:
        outcome = await perform(info.context, services.package_assign, input, PackageAssign)
        return PackageAssignPayload(
            assignment=PackageAssignment.maybe(outcome.value), errors=PackageError.list(outcome.errors)
        )
