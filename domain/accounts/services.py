"""Sign-in, sessions, organizations and users.

Sign-in is throttled before any password hashing (domain/accounts/throttle.py): too many attempts answer
RATE_LIMITED with the seconds to wait, and nothing locks an account. An unknown login costs the same argon2
verification and gets the same answers as a wrong password. With 2FA on, a TOTP code or a recovery code is needed,
each usable once (domain/accounts/second_factor.py). Every attempt is audited, failures included (their audit
commits even though the login is refused); throttled ones once a minute per full counter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from domain.accounts.commands import AdminCreate, Login, Logout, OrganizationCreate, OrganizationSwitch
from domain.accounts.models import CUSTOMER_ROLES, PARTNER_ROLES, Membership, Role, Session, User
from domain.accounts.passwords import burn_time, hash_password, new_token, token_digest, verify_password
from domain.accounts.second_factor import recovery_codes_left, use_recovery_code, use_totp, wrong_totp
from domain.accounts.throttle import Throttled, Wait, throttle
from domain.audit.models import AuditEventType
from domain.audit.services import record, record_standalone
from domain.common.json import JsonObject
from domain.common.validation import Validator
from domain.config import config
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode, FieldError, forbidden
from domain.events import services as events
from domain.partners.models import PartnerStatus
from domain.viewer import Viewer
from domain.visibility import require_platform_admin

SESSION_PREFIX = "pd_sess_"
_ROLE_ORDER = {r: i for i, r in enumerate(Role)}


def now() -> datetime:
    return datetime.now(UTC)


def org_key(partner_id: int | None = None, customer_id: int | None = None) -> str:
    if customer_id is not None:
        return f"customer:{customer_id}"
    if partner_id is not None:
        return f"partner:{partner_id}"
    return "platform"


async def hash_password_async(password: str) -> str:
    """Argon2 is deliberately slow; keep it off the event loop."""
    return await asyncio.to_thread(hash_password, password)


def is_membership_active(m: Membership) -> bool:
    """Whether the membership's organization (and, for a customer, its partner) is active; its relations loaded."""
    if m.customer_id is not None:
        assert m.customer is not None  # loaded with the membership (select_related)
        return m.customer.status == CustomerStatus.ACTIVE and m.customer.partner.status == PartnerStatus.ACTIVE
    if m.partner_id is not None:
        assert m.partner is not None
        return m.partner.status == PartnerStatus.ACTIVE
    return True


async def memberships_of(user_id: int) -> list[Membership]:
    """A user's memberships with their organizations loaded, ordered platform → partner → customer."""
    rows = await Membership.filter(user_id=user_id).select_related("partner", "customer", "customer__partner")
    return sorted(rows, key=lambda m: (_ROLE_ORDER[m.role], m.id))


def _partner_of(m: Membership) -> int | None:
    """The partner a membership acts under: its own, or its customer's (None: the platform)."""
    if m.customer_id is not None:
        assert m.customer is not None  # loaded with the membership (select_related)
        return m.customer.partner_id
    return m.partner_id


def viewer_for(user: User, membership: Membership | None, session_id: int | None, base: Viewer) -> Viewer:
    return Viewer(
        user_id=user.id,
        session_id=session_id,
        membership_id=membership.id if membership else None,
        role=membership.role if membership else None,
        partner_id=_partner_of(membership) if membership else None,
        customer_id=membership.customer_id if membership else None,
        label=user.email,
        ip=base.ip,
        user_agent=base.user_agent,
        request_id=base.request_id,
    )


@dataclass(slots=True)
class LoginResult:
    token: str
    user: User
    session: Session
    viewer: Viewer


# refusals that prove nothing was guessed wrong: the first step of a 2FA sign-in, a disabled organization
_NOT_GUESSES = frozenset({"totp_required", "disabled"})


async def login(anon: Viewer, command: Login) -> LoginResult:
    """Opens a session for the login (email or username) and password, and the second factor when 2FA is on."""
    password = command.password
    v = Validator()
    login_clean = v.text("login", command.login, required=True, max_length=254)
    if not isinstance(password, str) or not password or len(password) > 1024:
        v.add("password", "This field is required.", ErrorCode.REQUIRED)
    v.raise_if_invalid()
    assert login_clean is not None  # required: the validator refused an empty one
    key = login_clean.lower()
    ip = (anon.ip or "")[:64]
    guard = throttle()
    wait = await guard.admit_client(ip)
    if wait is not None:
        await _refuse(anon, wait, None, key)
    user = await User.filter(email_key=key).first() or await User.filter(username_key=key).first()
    if user is not None and not user.is_active:
        user = None
    recognised = user is not None and await _recognised_client(user.id, ip)
    wait = await guard.admit_login(key, ip, recognised=recognised)
    if wait is not None:
        await _refuse(anon, wait, user, key)
    if user is None:
        await asyncio.to_thread(burn_time)
        await guard.login_failed(ip)
        await _record_failure(anon, None, key, {"reason": "unknown_login"})
        raise _bad_credentials()
    password_ok = await asyncio.to_thread(verify_password, user.password_hash, password)

    failure: FieldError | None = None
    reason: str | None = None
    second_factor: str | None = None
    result: LoginResult | None = None
    async with in_transaction():
        at = now()
        if not password_ok:
            failure, reason = _bad_credentials().errors[0], "bad_password"
        elif user.totp_enabled:
            failure, second_factor = await _check_second_factor(user, command.totp_code, command.recovery_code, at)
            reason = second_factor
        memberships = await memberships_of(user.id)
        active = [m for m in memberships if is_membership_active(m)]
        if failure is None and not active:
            failure, reason = FieldError(None, "This account is disabled.", ErrorCode.ACCOUNT_DISABLED), "disabled"
        if failure is not None:
            await _record_failure(anon, user, key, {"reason": reason}, memberships)
        else:
            result = await _open_session(user, active[0], anon, at)
            user.last_login_at = at
            await user.save(update_fields=["last_login_at"])
            details: JsonObject = {"session_id": result.session.id}
            if second_factor is not None:
                details["second_factor"] = second_factor
            if second_factor == "recovery_code":
                details["recovery_codes_left"] = await recovery_codes_left(user.id)
            await record(
                result.viewer, AuditEventType.LOGIN, "login", object_type="User", object_id=user.id, details=details
            )
    if failure is not None:
        if reason not in _NOT_GUESSES:
            await guard.login_failed(ip)
        raise DomainError(failure)
    await guard.login_succeeded(key, ip)
    assert result is not None
    return result


async def _recognised_client(user_id: int, ip: str) -> bool:
    """Whether the user opened a session from this IP within a session lifetime."""
    if not ip:
        return False
    since = now() - timedelta(hours=config().session_ttl_hours)
    return await Session.filter(user_id=user_id, ip=ip, created_at__gte=since).exists()


async def _check_second_factor(
    user: User, totp_code: str | None, recovery_code: str | None, at: datetime
) -> tuple[FieldError | None, str]:
    """(None, the factor used) when the TOTP or recovery code is good (and now spent), else (error, reason)."""
    if recovery_code:
        if await use_recovery_code(user.id, recovery_code, at):
            return None, "recovery_code"
        wrong = FieldError("recovery_code", "This recovery code is wrong or was used already.", ErrorCode.INVALID_TOTP)
        return wrong, "bad_recovery_code"
    if not totp_code:
        return wrong_totp("totp_code"), "totp_required"
    problem = await use_totp(user, totp_code, at)
    if problem is not None:
        return wrong_totp("totp_code", problem), problem
    return None, "totp"


async def _refuse(anon: Viewer, wait: Wait, user: User | None, key: str) -> NoReturn:
    """Answers a throttled attempt; the first refusal by a full counter in a minute is audited."""
    if await throttle().first_refusal(wait):
        await _record_failure(anon, user, key, {"reason": "rate_limited", "limit": str(wait.scope)})
    raise Throttled(wait, "sign-in attempts")


async def _record_failure(
    anon: Viewer,
    user: User | None,
    key: str,
    details: JsonObject,
    memberships: list[Membership] | None = None,
) -> None:
    """Audits a refused sign-in (in its own transaction, or the caller's): an existing user's is filed under
    their first tenant organization, so its admins see it."""
    if user is None:
        await record_standalone(anon, AuditEventType.LOGIN_FAILED, "login.failed", details=details, actor_label=key)
        return
    if memberships is None:
        memberships = await memberships_of(user.id)
    home = next((m for m in memberships if m.role != Role.PLATFORM_ADMIN), None)
    await record_standalone(
        anon,
        AuditEventType.LOGIN_FAILED,
        "login.failed",
        object_type="User",
        object_id=user.id,
        details=details,
        actor_user_id=user.id,
        actor_label=user.email,
        partner_id=_partner_of(home) if home else None,
        customer_id=home.customer_id if home else None,
    )


def _bad_credentials() -> DomainError:
    return DomainError.single(ErrorCode.INVALID_CREDENTIALS, "Wrong login or password.")


async def _open_session(user: User, membership: Membership, anon: Viewer, at: datetime) -> LoginResult:
    token = new_token(SESSION_PREFIX)
    session = await Session.create(
        token_hash=token_digest(token),
        user=user,
        membership=membership,
        expires_at=at + timedelta(hours=config().session_ttl_hours),
        ip=(anon.ip or "")[:64],
        user_agent=(anon.user_agent or "")[:300],
    )
    return LoginResult(token, user, session, viewer_for(user, membership, session.id, anon))


async def authenticate_session(token: str, base: Viewer) -> Viewer | None:
    """The viewer behind a session token, or None when it is unknown, expired, revoked or its org is disabled."""
    return (await authenticate_sessions([token], base))[token]


async def authenticate_sessions(tokens: list[str], base: Viewer) -> dict[str, Viewer | None]:
    """`authenticate_session` for many tokens in one query (live sockets re-check theirs together)."""
    result: dict[str, Viewer | None] = dict.fromkeys(tokens)
    digests = {token_digest(t): t for t in tokens if t.startswith(SESSION_PREFIX) and len(t) <= 200}
    if not digests:
        return result
    sessions = await Session.filter(token_hash__in=list(digests), revoked_at=None).select_related(
        "user", "membership", "membership__partner", "membership__customer__partner"
    )
    at = now()
    for session in sessions:
        if session.expires_at <= at or not session.user.is_active:
            continue
        membership = session.membership
        if membership is not None and not is_membership_active(membership):
            continue
        viewer = viewer_for(session.user, membership, session.id, base)
        result[digests[session.token_hash]] = replace(viewer, credential_expires_at=session.expires_at)
    return result


async def logout(viewer: Viewer, command: Logout) -> None:
    if viewer.session_id is None:
        raise forbidden("Only a signed-in session can sign out.")
    async with in_transaction():
        await Session.filter(id=viewer.session_id, revoked_at=None).update(revoked_at=now())
        await events.emit(events.ACCESS_REVOKED, customer_id=viewer.customer_id, partner_id=viewer.partner_id)
        await record(viewer, AuditEventType.LOGOUT, "logout", object_type="User", object_id=viewer.user_id or "")


async def revoke_sessions_of_customer(customer_id: int) -> int:
    """Revokes every session acting in the customer (call inside the disabling transaction)."""
    membership_ids = await Membership.filter(customer_id=customer_id).values_list("id", flat=True)
    if not membership_ids:
        return 0
    return await Session.filter(membership_id__in=list(membership_ids), revoked_at=None).update(revoked_at=now())


async def organization_switch(viewer: Viewer, command: OrganizationSwitch) -> Viewer:
    """Points the viewer's session at another of the user's organizations; answers the viewer acting there."""
    if viewer.session_id is None or viewer.user_id is None:
        raise forbidden("Only a signed-in session can switch organizations.")
    key = org_key(command.partner_id, command.customer_id)
    membership = (
        await Membership.filter(user_id=viewer.user_id, org_key=key)
        .select_related("partner", "customer", "customer__partner")
        .first()
    )
    if membership is None or not is_membership_active(membership):
        raise DomainError.single(ErrorCode.NOT_FOUND, "Organization not found.", "organizationId")
    user = await User.get(id=viewer.user_id)
    switched = viewer_for(user, membership, viewer.session_id, viewer)
    async with in_transaction():
        await Session.filter(id=viewer.session_id).update(membership_id=membership.id)
        # the session now acts elsewhere: every process forgets what it acted as (cached viewers, live sockets)
        await events.emit(events.ACCESS_REVOKED, customer_id=viewer.customer_id, partner_id=viewer.partner_id)
        await record(
            switched,
            AuditEventType.SECURITY,
            "organization.switch",
            object_type="Membership",
            object_id=membership.id,
            details={"organization": key},
        )
    return switched


async def organization_create(viewer: Viewer, command: OrganizationCreate) -> Customer:
    """A user creates a new customer organization under their current partner and becomes its admin."""
    if viewer.user_id is None or viewer.partner_id is None:
        raise forbidden("Create partners with partnerCreate; organizations belong to a partner.")
    v = Validator()
    clean = v.text("name", command.name, required=True, max_length=200)
    v.raise_if_invalid()
    async with in_transaction():
        customer = await Customer.create(partner_id=viewer.partner_id, name=clean)
        membership = await Membership.create(
            user_id=viewer.user_id,
            role=Role.CUSTOMER_ADMIN,
            customer=customer,
            org_key=org_key(customer_id=customer.id),
        )
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "organization.create",
            object_type="Customer",
            object_id=customer.id,
            details={"name": clean, "membership_id": membership.id},
            customer_id=customer.id,
        )
    return customer


@dataclass(slots=True)
class NewUser:
    username: str
    email: str
    password: str
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    job_title: str = ""


async def check_user_unique(v: Validator, username: str | None, email: str | None, *, prefix: str = "") -> None:
    if username and await User.filter(username_key=username.lower()).exists():
        v.add(f"{prefix}username", "This username is taken.", ErrorCode.UNIQUE)
    if email and await User.filter(email_key=email.lower()).exists():
        v.add(f"{prefix}email", "An account with this email already exists.", ErrorCode.UNIQUE)


async def create_user(new: NewUser, password_hash: str) -> User:
    """Inserts a user (inside the caller's transaction); a lost uniqueness race becomes a coded error."""
    try:
        return await User.create(
            username=new.username,
            username_key=new.username.lower(),
            email=new.email,
            email_key=new.email.lower(),
            first_name=new.first_name,
            last_name=new.last_name,
            display_name=" ".join(p for p in (new.first_name, new.last_name) if p),
            phone=new.phone,
            job_title=new.job_title,
            password_hash=password_hash,
        )
    except IntegrityError as exc:
        raise DomainError.single(ErrorCode.UNIQUE, "This username or email is already taken.", "email") from exc


@dataclass(slots=True)
class AdminCreated:
    user: User
    created: bool  # False: the user existed (and is now a platform admin, if they were not)


async def admin_create(viewer: Viewer, command: AdminCreate) -> AdminCreated:
    """Creates a platform admin, or makes the existing user with that email one (idempotent)."""
    require_platform_admin(viewer)
    v = Validator()
    clean_email = v.email("email", command.email)
    clean_password = v.password("password", command.password)
    v.raise_if_invalid()
    assert clean_email and clean_password
    existing = await User.filter(email_key=clean_email.lower()).first()
    if existing is not None:
        async with in_transaction():
            await Membership.get_or_create(user=existing, org_key="platform", defaults={"role": Role.PLATFORM_ADMIN})
        return AdminCreated(existing, False)
    username = clean_email.split("@")[0][:40]
    if await User.filter(username_key=username.lower()).exists():
        username = f"{username}-{await User.all().count() + 1}"
    pw_hash = await hash_password_async(clean_password)
    async with in_transaction():
        user = await create_user(NewUser(username=username, email=clean_email, password=clean_password), pw_hash)
        await Membership.create(user=user, role=Role.PLATFORM_ADMIN, org_key="platform")
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "admin.create",
            object_type="User",
            object_id=user.id,
            details={"email": clean_email},
        )
    return AdminCreated(user, True)


__all__ = [
    "CUSTOMER_ROLES",
    "PARTNER_ROLES",
    "AdminCreated",
    "LoginResult",
    "NewUser",
    "admin_create",
    "authenticate_session",
    "create_user",
    "login",
    "logout",
    "memberships_of",
    "organization_create",
    "organization_switch",
]
