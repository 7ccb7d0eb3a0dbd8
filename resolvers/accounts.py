"""Sign-in, sessions and organizations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.accounts import second_factor, services
from domain.accounts import settings as personal
from domain.accounts.models import Membership, Role, User
from domain.accounts.throttle import Throttled
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from resolvers.common import Outcome, attempt, camel_errors, decode_global_id_typed, encode_global_id
from resolvers.context import Context


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


async def my_organizations(ctx: Context) -> list[OrganizationView]:
    viewer = ctx.viewer
    if viewer.user_id is None:
        return []
    return [organization_view(m, viewer.membership_id) for m in await services.memberships_of(viewer.user_id)]


async def me(ctx: Context) -> User | None:
    if ctx.viewer.user_id is None:
        return None
    return await ctx.loaders.user_by_id.load(ctx.viewer.user_id)


async def login(
    ctx: Context, login: str, password: str, totp_code: str | None, recovery_code: str | None
) -> tuple[Outcome[services.LoginResult], int | None]:
    """The outcome, and the seconds to wait when sign-in was throttled."""
    try:
        result = await services.login(ctx.viewer, login, password, totp_code, recovery_code)
    except Throttled as exc:
        return Outcome(None, camel_errors(exc.errors)), exc.retry_after
    except DomainError as exc:
        return Outcome(None, camel_errors(exc.errors)), None
    ctx.viewer = result.viewer
    ctx.reset_loaders()
    return Outcome(result, []), None


async def logout(ctx: Context) -> Outcome[None]:
    return await attempt(services.logout(ctx.viewer))


async def organization_switch(ctx: Context, organization_id: str) -> Outcome[OrganizationView]:
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


async def organization_create(ctx: Context, name: str) -> Outcome[OrganizationView]:
    async def run() -> OrganizationView:
        customer = await services.organization_create(ctx.viewer, name)
        orgs = await my_organizations(ctx)
        return next(o for o in orgs if o.customer_id == customer.id)

    return await attempt(run())


# ---------------------------------------------------------------- personal settings


def _changed_me(ctx: Context, user: User) -> User:
    ctx.reset_loaders()  # the request's cached user is stale now
    return user


async def me_update(ctx: Context, data: dict[str, Any]) -> Outcome[User]:
    async def run() -> User:
        return _changed_me(ctx, await personal.me_update(ctx.viewer, data))

    return await attempt(run())


async def password_change(ctx: Context, current: str, new: str, confirmation: str) -> Outcome[int]:
    return await attempt(personal.password_change(ctx.viewer, current, new, confirmation))


async def totp_setup(ctx: Context) -> Outcome[personal.TotpSetup]:
    return await attempt(personal.totp_setup(ctx.viewer))


async def totp_enable(ctx: Context, code: str) -> Outcome[personal.RecoveryCodes]:
    async def run() -> personal.RecoveryCodes:
        enabled = await personal.totp_enable(ctx.viewer, code)
        _changed_me(ctx, enabled.user)
        return enabled

    return await attempt(run())


async def totp_recovery_codes_generate(
    ctx: Context, code: str | None, password: str | None
) -> Outcome[personal.RecoveryCodes]:
    return await attempt(personal.totp_recovery_codes_generate(ctx.viewer, code, password))


async def totp_recovery_codes_left(user: User) -> int:
    return await second_factor.recovery_codes_left(user.id)


async def totp_disable(ctx: Context, code: str | None, password: str | None) -> Outcome[User]:
    async def run() -> User:
        return _changed_me(ctx, await personal.totp_disable(ctx.viewer, code, password))

    return await attempt(run())


async def email_change_request(ctx: Context, new_email: str, password: str) -> Outcome[str]:
    return await attempt(personal.email_change_request(ctx.viewer, new_email, password))


async def email_change_confirm(ctx: Context, token: str) -> Outcome[User]:
    async def run() -> User:
        return _changed_me(ctx, await personal.email_change_confirm(ctx.viewer, token))

    return await attempt(run())


async def account_delete(ctx: Context, password: str) -> Outcome[None]:
    return await attempt(personal.account_delete(ctx.viewer, password))


async def avatar_upload(ctx: Context, upload: Any) -> Outcome[User]:
    async def run() -> User:
        # one byte past the cap is enough to refuse: never read an oversized upload whole
        content = await upload.read(personal.AVATAR_MAX_BYTES + 1)
        return _changed_me(ctx, await personal.avatar_upload(ctx.viewer, content))

    return await attempt(run())


def notification_preferences(user: User) -> dict[str, bool]:
    return personal.notification_preferences(user)
