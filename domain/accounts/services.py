"""Sign-in, sessions, organizations and users.

Login locks an account for `login_lockout_minutes` after `login_max_failures` failures within
`login_failure_window_minutes`; every attempt is audited, failures included (their audit commits even though the
login is refused).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from domain.accounts.models import CUSTOMER_ROLES, PARTNER_ROLES, Membership, Role, Session, User
from domain.accounts.passwords import burn_time, hash_password, new_token, token_digest, verify_password
from domain.audit.models import AuditEventType
from domain.audit.services import record, record_standalone
from domain.common.validation import Validator
from domain.config import config
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode, FieldError, forbidden
from domain.events import services as events
from domain.partners.models import PartnerStatus
from domain.viewer import Viewer

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


def _is_membership_active(m: Membership) -> bool:
    if m.customer_id is not None:
        customer: Customer = m.customer
        return customer.status == CustomerStatus.ACTIVE and customer.partner.status == PartnerStatus.ACTIVE
    if m.partner_id is not None:
        return m.partner.status == PartnerStatus.ACTIVE
    return True


async def memberships_of(user_id: int) -> list[Membership]:
    """A user's memberships with their organizations loaded, ordered platform → partner → customer."""
    rows = await Membership.filter(user_id=user_id).select_related("partner", "customer", "customer__partner")
    return sorted(rows, key=lambda m: (_ROLE_ORDER[m.role], m.id))


def viewer_for(user: User, membership: Membership | None, session_id: int | None, base: Viewer) -> Viewer:
    partner_id = None
    if membership is not None:
        partner_id = membership.partner_id
        if membership.customer_id is not None:
            partner_id = membership.customer.partner_id
    return Viewer(
        user_id=user.id,
        session_id=session_id,
        membership_id=membership.id if membership else None,
        role=membership.role if membership else None,
        partner_id=partner_id,
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


async def login(anon: Viewer, login: str, password: str, totp_code: str | None = None) -> LoginResult:
    v = Validator()
    login_clean = v.text("login", login, required=True, max_length=254)
    if not isinstance(password, str) or not password or len(password) > 1024:
        v.add("password", "This field is required.", ErrorCode.REQUIRED)
    v.raise_if_invalid()
    key = login_clean.lower()  # type: ignore[union-attr]
    user = await User.filter(email_key=key).first() or await User.filter(username_key=key).first()
    if user is None or not user.is_active:
        await asyncio.to_thread(burn_time)
        await record_standalone(
            anon, AuditEventType.LOGIN_FAILED, "login.failed", details={"reason": "unknown_login"}, actor_label=key
        )
        raise _bad_credentials()
    password_ok = await asyncio.to_thread(verify_password, user.password_hash, password)

    failure: FieldError | None = None
    result: LoginResult | None = None
    async with in_transaction():
        user = await User.select_for_update().get(id=user.id)
        at = now()
        memberships = await memberships_of(user.id)
        # a refused attempt is filed under the user's first tenant organization, so its admins see it
        home = next((m for m in memberships if m.role != Role.PLATFORM_ADMIN), None)
        partner_id = (home.partner_id or home.customer.partner_id) if home else None
        customer_id = home.customer_id if home else None
        if user.locked_until and user.locked_until > at:
            failure = FieldError(None, "Too many failed sign-ins. Try again later.", ErrorCode.ACCOUNT_LOCKED)
            reason = "locked"
        elif not password_ok:
            reason = await count_failed_login(user, at)
            failure = _bad_credentials().errors[0]
        elif user.totp_enabled and not totp_ok(user, totp_code):
            failure = FieldError(
                "totpCode", "Enter the current code from your authenticator app.", ErrorCode.INVALID_TOTP
            )
            # a missing code is the first step of a 2FA sign-in; a wrong one is a guess and counts
            reason = await count_failed_login(user, at, "bad_totp") if totp_code else "totp_required"
        else:
            active = [m for m in memberships if _is_membership_active(m)]
            if not active:
                failure = FieldError(None, "This account is disabled.", ErrorCode.ACCOUNT_DISABLED)
                reason = "disabled"
            else:
                result = await _open_session(user, active[0], anon, at)
                user.failed_logins, user.failed_window_started_at, user.last_login_at = 0, None, at
                await user.save(update_fields=["failed_logins", "failed_window_started_at", "last_login_at"])
                await record(
                    result.viewer,
                    AuditEventType.LOGIN,
                    "login",
                    object_type="User",
                    object_id=user.id,
                    details={"session_id": result.session.id},
                )
        if failure is not None:
            await record(
                anon,
                AuditEventType.LOGIN_FAILED,
                "login.failed",
                object_type="User",
                object_id=user.id,
                details={"reason": reason},
                actor_user_id=user.id,
                actor_label=user.email,
                partner_id=partner_id,
                customer_id=customer_id,
            )
    if failure is not None:
        raise DomainError(failure)
    assert result is not None
    return result


async def count_failed_login(user: User, at: datetime, reason: str = "bad_password") -> str:
    """Counts one failed credential check (call with the user row locked); locks the account at the limit."""
    cfg = config()
    window = timedelta(minutes=cfg.login_failure_window_minutes)
    if user.failed_window_started_at is None or at - user.failed_window_started_at > window:
        user.failed_logins, user.failed_window_started_at = 0, at
    user.failed_logins += 1
    if user.failed_logins >= cfg.login_max_failures:
        user.locked_until = at + timedelta(minutes=cfg.login_lockout_minutes)
        user.failed_logins, user.failed_window_started_at = 0, None
        reason = f"{reason}_locked"
    await user.save(update_fields=["failed_logins", "failed_window_started_at", "locked_until"])
    return reason


def _bad_credentials() -> DomainError:
    return DomainError.single(ErrorCode.INVALID_CREDENTIALS, "Wrong login or password.")


def totp_ok(user: User, code: str | None) -> bool:
    return bool(
        code
        and len(code) <= 16
        and user.totp_secret
        and pyotp.TOTP(user.totp_secret).verify(code.strip(), valid_window=1)
    )


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
        if membership is not None and not _is_membership_active(membership):
            continue
        result[digests[session.token_hash]] = viewer_for(session.user, membership, session.id, base)
    return result


async def logout(viewer: Viewer) -> None:
    if viewer.session_id is None:
        raise forbidden("Only a signed-in session can sign out.")
    async with in_transaction():
        await Session.filter(id=viewer.session_id, revoked_at=None).update(revoked_at=now())
        await events.emit(events.ACCESS_REVOKED, customer_id=viewer.customer_id, partner_id=viewer.partner_id)
        await record(viewer, AuditEventType.LOGOUT, "logout", object_type="User", object_id=viewer.user_id)


async def revoke_sessions_of_customer(customer_id: int) -> int:
    """Revokes every session acting in the customer (call inside the disabling transaction)."""
    membership_ids = await Membership.filter(customer_id=customer_id).values_list("id", flat=True)
    if not membership_ids:
        return 0
    return await Session.filter(membership_id__in=list(membership_ids), revoked_at=None).update(revoked_at=now())


async def organization_switch(viewer: Viewer, partner_id: int | None, customer_id: int | None) -> Viewer:
    """Points the viewer's session at another of the user's organizations."""
    if viewer.session_id is None or viewer.user_id is None:
        raise forbidden("Only a signed-in session can switch organizations.")
    key = org_key(partner_id, customer_id)
    membership = (
        await Membership.filter(user_id=viewer.user_id, org_key=key)
        .select_related("partner", "customer", "customer__partner")
        .first()
    )
    if membership is None or not _is_membership_active(membership):
        raise DomainError.single(ErrorCode.NOT_FOUND, "Organization not found.", "organizationId")
    user = await User.get(id=viewer.user_id)
    switched = viewer_for(user, membership, viewer.session_id, viewer)
    async with in_transaction():
        await Session.filter(id=viewer.session_id).update(membership_id=membership.id)
        await record(
            switched,
            AuditEventType.SECURITY,
            "organization.switch",
            object_type="Membership",
            object_id=membership.id,
            details={"organization": key},
        )
    return switched


async def organization_create(viewer: Viewer, name: str) -> Customer:
    """A user creates a new customer organization under their current partner and becomes its admin."""
    if viewer.user_id is None or viewer.partner_id is None:
        raise forbidden("Create partners with partnerCreate; organizations belong to a partner.")
    v = Validator()
    clean = v.text("name", name, required=True, max_length=200)
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


async def admin_create(email: str, password: str) -> tuple[User, bool]:
    """Creates a platform admin, or returns the existing user with that email (idempotent); True when created."""
    v = Validator()
    clean_email = v.email("email", email)
    clean_password = v.password("password", password)
    v.raise_if_invalid()
    assert clean_email and clean_password
    existing = await User.filter(email_key=clean_email.lower()).first()
    if existing is not None:
        async with in_transaction():
            await Membership.get_or_create(user=existing, org_key="platform", defaults={"role": Role.PLATFORM_ADMIN})
        return existing, False
    username = clean_email.split("@")[0][:40]
    if await User.filter(username_key=username.lower()).exists():
        username = f"{username}-{await User.all().count() + 1}"
    pw_hash = await hash_password_async(clean_password)
    system = Viewer.system("cli")
    async with in_transaction():
        user = await create_user(NewUser(username=username, email=clean_email, password=clean_password), pw_hash)
        await Membership.create(user=user, role=Role.PLATFORM_ADMIN, org_key="platform")
        await record(
            system,
            AuditEventType.DATA_CHANGE,
            "admin.create",
            object_type="User",
            object_id=user.id,
            details={"email": clean_email},
        )
    return user, True


__all__ = [
    "CUSTOMER_ROLES",
    "PARTNER_ROLES",
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
