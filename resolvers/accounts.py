"""Sign-in, sessions and organizations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.accounts import services
from domain.accounts.models import Membership, Role, User
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from resolvers.common import Outcome, attempt, decode_global_id_typed, encode_global_id


@dataclass(slots=True)
class OrganizationView:
    id: str
    kind: str
    name: str
    role: Role
    current: bool
    active: bool
    partner_id: int | None
    customer_id: int | None


def organization_view(m: Membership, current_membership_id: int | None) -> OrganizationView:
    if m.customer_id is not None:
        customer: Customer = m.customer
        gid, kind, name, partner_id = (
            encode_global_id("Customer", m.customer_id),
            "CUSTOMER",
            customer.name,
            customer.partner_id,
        )
    elif m.partner_id is not None:
        gid, kind, name, partner_id = encode_global_id("Partner", m.partner_id), "PARTNER", m.partner.name, m.partner_id
    else:
        gid, kind, name, partner_id = encode_global_id("Platform", 0), "PLATFORM", "Partnerdesk", None
    return OrganizationView(
        gid,
        kind,
        name,
        m.role,
        m.id == current_membership_id,
        services._is_membership_active(m),
        partner_id,
        m.customer_id,
    )


async def my_organizations(ctx: Any) -> list[OrganizationView]:
    viewer = ctx.viewer
    if viewer.user_id is None:
        return []
    return [organization_view(m, viewer.membership_id) for m in await services.memberships_of(viewer.user_id)]


async def me(ctx: Any) -> User | None:
    if ctx.viewer.user_id is None:
        return None
    return await ctx.loaders.user_by_id.load(ctx.viewer.user_id)


async def login(ctx: Any, login: str, password: str, totp_code: str | None) -> Outcome[services.LoginResult]:
    outcome = await attempt(services.login(ctx.viewer, login, password, totp_code))
    if outcome.value is not None:
        ctx.viewer = outcome.value.viewer
        ctx.reset_loaders()
    return outcome


async def logout(ctx: Any) -> Outcome[None]:
    return await attempt(services.logout(ctx.viewer))


async def organization_switch(ctx: Any, organization_id: str) -> Outcome[OrganizationView]:
    async def run() -> OrganizationView:
        if organization_id == encode_global_id("Platform", 0):
            kind, pk = "Platform", 0
        else:
            kind, pk = decode_global_id_typed(organization_id, ("Partner", "Customer"), "organization_id")
        switched = await services.organization_switch(
            ctx.viewer, pk if kind == "Partner" else None, pk if kind == "Customer" else None
        )
        ctx.viewer = switched
        ctx.reset_loaders()
        orgs = await my_organizations(ctx)
        current = next((o for o in orgs if o.current), None)
        if current is None:
            raise DomainError.single(ErrorCode.NOT_FOUND, "Organization not found.", "organization_id")
        return current

    return await attempt(run())


async def organization_create(ctx: Any, name: str) -> Outcome[OrganizationView]:
    async def run() -> OrganizationView:
        customer = await services.organization_create(ctx.viewer, name)
        orgs = await my_organizations(ctx)
        return next(o for o in orgs if o.customer_id == customer.id)

    return await attempt(run())
