"""Users, memberships, organizations and sign-in."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from domain.accounts.models import Role as DomainRole
from domain.accounts.models import Theme as DomainTheme
from resolvers import accounts as r
from schema.errors import AccountError
from schema.nodes import ModelNode

if TYPE_CHECKING:
    from schema.customers import Customer
    from schema.partners import Partner

Role = strawberry.enum(DomainRole, name="Role")
Theme = strawberry.enum(DomainTheme, name="Theme")


@strawberry.enum
class OrganizationKind(enum.Enum):
    PLATFORM = "PLATFORM"
    PARTNER = "PARTNER"
    CUSTOMER = "CUSTOMER"


@strawberry.type(description="An organization the signed-in user belongs to, with their role in it.")
class Organization:
    id: strawberry.ID = strawberry.field(description="Global id of the Partner or Customer (or the platform).")
    kind: OrganizationKind
    name: str
    role: Role  # type: ignore[valid-type]
    current: bool = strawberry.field(description="True for the organization the session acts in.")
    active: bool

    @classmethod
    def of(cls, view: r.OrganizationView) -> Organization:
        return cls(
            id=strawberry.ID(view.id),
            kind=OrganizationKind(view.kind),
            name=view.name,
            role=view.role,
            current=view.current,
            active=view.active,
        )


@strawberry.type
class Membership(ModelNode):
    loader = "membership_by_id"
    id: relay.NodeID[int]
    role: Role  # type: ignore[valid-type]
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field
    async def partner(self, info: Info) -> Annotated[Partner, strawberry.lazy("schema.partners")] | None:
        from schema.partners import Partner

        if self.model.partner_id is None:
            return None
        return Partner.maybe(await info.context.loaders.partner_by_id.load(self.model.partner_id))

    @strawberry.field
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        from schema.customers import Customer

        if self.model.customer_id is None:
            return None
        return Customer.maybe(await info.context.loaders.customer_by_id.load(self.model.customer_id))


@strawberry.type
class User(ModelNode):
    loader = "user_by_id"
    id: relay.NodeID[int]
    username: str
    email: str
    first_name: str
    last_name: str
    display_name: str
    phone: str
    job_title: str = strawberry.field(description="The user's role in their company (free text).")
    theme: Theme  # type: ignore[valid-type]
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field(description="Memberships of this user that the viewer may see.")
    async def memberships(self, info: Info) -> list[Membership]:
        return [Membership.from_model(m) for m in await info.context.loaders.memberships_by_user.load(self.id)]

    @strawberry.field(description="Every organization of the signed-in user (empty for other users).")
    async def organizations(self, info: Info) -> list[Organization]:
        if info.context.viewer.user_id != self.id:
            return []
        return [Organization.of(o) for o in await r.my_organizations(info.context)]

    @strawberry.field(description="The organization the signed-in user's session acts in (null for others).")
    async def current_organization(self, info: Info) -> Organization | None:
        if info.context.viewer.user_id != self.id:
            return None
        return next((Organization.of(o) for o in await r.my_organizations(info.context) if o.current), None)


@strawberry.input
class LoginInput:
    login: str = strawberry.field(description="Email or username.")
    password: str
    totp_code: str | None = None


@strawberry.type
class LoginPayload:
    token: str | None = strawberry.field(description="Send as `Authorization: Bearer <token>`.")
    expires_at: datetime | None
    user: User | None
    errors: list[AccountError]


@strawberry.input
class LogoutInput:
    client_mutation_id: str | None = None


@strawberry.type
class LogoutPayload:
    ok: bool
    errors: list[AccountError]


@strawberry.input
class OrganizationSwitchInput:
    organization_id: strawberry.ID


@strawberry.type
class OrganizationSwitchPayload:
    organization: Organization | None
    user: User | None
    errors: list[AccountError]


@strawberry.input
class OrganizationCreateInput:
    name: str


@strawberry.type
class OrganizationCreatePayload:
    organization: Organization | None
    errors: list[AccountError]


@strawberry.type
class AccountQueries:
    @strawberry.field(description="The signed-in user, or null.")
    async def me(self, info: Info) -> User | None:
        return User.maybe(await r.me(info.context))


@strawberry.type
class AccountMutations:
    @strawberry.mutation(description="Signs in with email or username; 5 failures in 15 minutes lock the account.")
    async def login(self, info: Info, input: LoginInput) -> LoginPayload:
        outcome = await r.login(info.context, input.login, input.password, input.totp_code)
        result = outcome.value
        return LoginPayload(
            token=result.token if result else None,
            expires_at=result.session.expires_at if result else None,
            user=User.from_model(result.user) if result else None,
            errors=AccountError.list(outcome.errors),
        )

    @strawberry.mutation(description="Revokes the current session token.")
    async def logout(self, info: Info, input: LogoutInput | None = None) -> LogoutPayload:
        outcome = await r.logout(info.context)
        return LogoutPayload(ok=not outcome.errors, errors=AccountError.list(outcome.errors))

    @strawberry.mutation(description="Makes the current session act in another of the user's organizations.")
    async def organization_switch(self, info: Info, input: OrganizationSwitchInput) -> OrganizationSwitchPayload:
        outcome = await r.organization_switch(info.context, input.organization_id)
        user = await r.me(info.context) if outcome.value else None
        return OrganizationSwitchPayload(
            organization=Organization.of(outcome.value) if outcome.value else None,
            user=User.maybe(user),
            errors=AccountError.list(outcome.errors),
        )

    @strawberry.mutation(
        description="Creates a new customer organization under the current partner; you become its admin."
    )
    async def organization_create(self, info: Info, input: OrganizationCreateInput) -> OrganizationCreatePayload:
        outcome = await r.organization_create(info.context, input.name)
        return OrganizationCreatePayload(
            organization=Organization.of(outcome.value) if outcome.value else None,
            errors=AccountError.list(outcome.errors),
        )
