"""Sign-in, sessions, organizations and personal settings: where a payload needs more than the domain service
returns (the organization it now acts in), or the request must follow a change (a new viewer after signing in or
switching organizations, fresh loaders after the signed-in user changed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from domain.accounts import second_factor, services
from domain.accounts import settings as personal
from domain.accounts.commands import Login, OrganizationCreate, OrganizationSwitch
from domain.accounts.models import Membership, Role, User
from domain.accounts.throttle import Throttled
from domain.errors import DomainError, ErrorCode
from domain.viewer import Viewer
from resolvers.commands import perform
from resolvers.common import Outcome, attempt, camel_errors, decode_global_id_typed, encode_global_id
from resolvers.context import Context

C = TypeVar("C")
R = TypeVar("R")


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
    """A membership as the organization it names (its organization loaded, as `memberships_of` does)."""
    if m.customer_id is not None:
        assert m.customer is not None
        gid, kind, name, partner_id = (
            encode_global_id("Customer", m.customer_id),
            "CUSTOMER",
            m.customer.name,
            m.customer.partner_id,
        )
    elif m.partner_id is not None:
        assert m.partner is not None
        gid, kind, name, partner_id = encode_global_id("Partner", m.partner_id), "PARTNER", m.partner.name, m.partner_id
    else:
        gid, kind, name, partner_id = encode_global_id("Platform", 0), "PLATFORM", "Partnerdesk", None
    return OrganizationView(
        gid,
        kind,
        name,
        m.role,
        m.id == current_membership_id,
        services.is_membership_active(m),
        partner_id,
        m.customer_id,
    )


async def my_organizations(ctx: Context) -> list[OrganizationView]:
    viewer = ctx.viewer
    if viewer.user_id is None:
        return []
    return [organization_view(m, viewer.membership_id) for m in await services.memberships_of(viewer.user_id)]


async def me(ctx: Context) -> User | None:
    if ctx.viewer.user_id is None:
        return None
    return await ctx.loaders.user_by_id.load(ctx.viewer.user_id)


async def login(ctx: Context, command: Login) -> tuple[Outcome[services.LoginResult], int | None]:
    """The outcome, and the seconds to wait when sign-in was throttled; signed in, the rest of the request acts as
    the new session."""
    try:
        result = await services.login(ctx.viewer, command)
    except Throttled as exc:
        return Outcome(None, camel_errors(exc.errors)), exc.retry_after
    except DomainError as exc:
        return Outcome(None, camel_errors(exc.errors)), None
    ctx.viewer = result.viewer
    ctx.reset_loaders()
    return Outcome(result, []), None


def _organization(organization_id: str) -> OrganizationSwitch:
    """The one id in the API that may name several kinds of object: a partner, a customer, or the platform."""
    if organization_id == encode_global_id("Platform", 0):
        return OrganizationSwitch()
    kind, pk = decode_global_id_typed(organization_id, ("Partner", "Customer"), "organization_id")
    return OrganizationSwitch(partner_id=pk) if kind == "Partner" else OrganizationSwitch(customer_id=pk)


async def organization_switch(ctx: Context, organization_id: str) -> Outcome[OrganizationView]:
    """Switches the session, and the rest of the request, to the organization; answers it as the user sees it."""

    async def run() -> OrganizationView:
        ctx.viewer = await services.organization_switch(ctx.viewer, _organization(organization_id))
        ctx.reset_loaders()
        orgs = await my_organizations(ctx)
        current = next((o for o in orgs if o.current), None)
        if current is None:
            raise DomainError.single(ErrorCode.NOT_FOUND, "Organization not found.", "organization_id")
        return current

    return await attempt(run())


async def organization_create(ctx: Context, command: OrganizationCreate) -> Outcome[OrganizationView]:
    async def run() -> OrganizationView:
        customer = await services.organization_create(ctx.viewer, command)
        orgs = await my_organizations(ctx)
        return next(o for o in orgs if o.customer_id == customer.id)

    return await attempt(run())


# ---------------------------------------------------------------- personal settings


async def change_me(
    ctx: Context, service: Callable[[Viewer, C], Awaitable[R]], value: object, command: type[C]
) -> Outcome[R]:
    """`perform` for a change to the signed-in user: once it is made, the request's cached rows of them are stale."""
    outcome = await perform(ctx, service, value, command)
    if not outcome.errors:
        ctx.reset_loaders()
    return outcome


async def totp_recovery_codes_left(user: User) -> int:
    return await second_factor.recovery_codes_left(user.id)


def notification_preferences(user: User) -> dict[str, bool]:
    return personal.notification_preferences(user)
