"""A signed-in user's own settings: profile, theme, email notifications, password, 2FA (TOTP) and email change.

Every credential check here (current password, TOTP code) is throttled per user before any hashing
(domain/accounts/throttle.py), so a stolen session cannot be used to guess the password. Turning 2FA on answers ten
recovery codes, once; `totp_recovery_codes_generate` replaces them. Email changes need no table: the confirmation
token is an HMAC under the secret key of (user id, new email, current email, expiry), so it dies when it expires or
the email changes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyotp
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from domain.accounts.commands import (
    AccountDelete,
    AvatarUpload,
    EmailChangeConfirm,
    EmailChangeRequest,
    MeUpdate,
    PasswordChange,
    TotpDisable,
    TotpEnable,
    TotpRecoveryCodesGenerate,
    TotpSetup,
)
from domain.accounts.models import Membership, Role, Session, Theme, User
from domain.accounts.passwords import verify_password
from domain.accounts.second_factor import drop_recovery_codes, replace_recovery_codes, use_totp, wrong_totp
from domain.accounts.services import hash_password_async, now
from domain.accounts.throttle import Throttled, throttle
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record, record_standalone
from domain.common.json import JsonObject
from domain.common.validation import Validator
from domain.config import config
from domain.errors import DomainError, ErrorCode, FieldError, forbidden
from domain.events import services as events
from domain.partners.models import Partner
from domain.viewer import Viewer

# What users can switch email notifications on or off for (seed 003); all on until turned off.
NOTIFICATION_KEYS = (
    "assignedConversations",
    "assignedTickets",
    "assignedConversationNotes",
    "assignedReminders",
    "assignedInquiries",
)
DEFAULT_ISSUER = "Partnerdesk"
EMAIL_CHANGE_TTL = timedelta(hours=24)
EMAIL_CHANGE_REQUESTED = "email_change.requested"  # outbox: mail the confirmation link to the new address
EMAIL_CHANGED = "email_change.confirmed"  # outbox: tell the old address its account moved


@dataclass(frozen=True, slots=True)
class EmailChangeRequested:
    """The `mail` of an EMAIL_CHANGE_REQUESTED event: what the confirmation email is signed and branded from."""

    user_id: int
    new_email: str
    old_email: str
    expires: int  # Unix time the link stops working
    partner_id: int | None  # the brand: the partner the user acted under


@dataclass(frozen=True, slots=True)
class EmailChanged:
    """The `mail` of an EMAIL_CHANGED event: the notice to the old address."""

    user_id: int
    new_email: str
    old_email: str
    partner_id: int | None


def notification_preferences(user: User) -> dict[str, bool]:
    """Every known preference, stored choices over the defaults."""
    stored = user.notification_preferences if isinstance(user.notification_preferences, dict) else {}
    return {k: bool(stored.get(k, True)) for k in NOTIFICATION_KEYS}


async def _me(viewer: Viewer, *, lock: bool = False) -> User:
    if viewer.user_id is None:
        raise forbidden("Sign in to change your settings.")
    query = User.select_for_update() if lock else User
    user = await query.get_or_none(id=viewer.user_id, is_active=True)
    if user is None:
        raise forbidden("Sign in to change your settings.")
    return user


def _profile(user: User) -> JsonObject:
    """What me_update may change, for the audit's before/after."""
    return {
        "display_name": user.display_name,
        "theme": str(user.theme),
        "notification_preferences": {**notification_preferences(user)},
    }


def _clean_preferences(v: Validator, prefs: object) -> dict[str, bool]:
    """The notification preferences to change (empty: none); any JSON may arrive, so anything else is refused."""
    if prefs is None:
        return {}
    if not isinstance(prefs, dict):
        v.add("notification_preferences", "Send an object of preference names to true or false.")
        return {}
    unknown = sorted(k for k in prefs if k not in NOTIFICATION_KEYS)
    if unknown:
        v.add(
            "notification_preferences",
            f"Unknown preference {', '.join(map(str, unknown))}; known: {', '.join(NOTIFICATION_KEYS)}.",
        )
        return {}
    if any(not isinstance(val, bool) for val in prefs.values()):
        v.add("notification_preferences", "Each preference must be true or false.")
        return {}
    return dict(prefs)


async def me_update(viewer: Viewer, command: MeUpdate) -> User:
    """Updates the fields given (None leaves a field as it is)."""
    v = Validator()
    display_name = v.text("display_name", command.display_name, max_length=200)
    if command.display_name is not None and not display_name and not v.has("display_name"):
        v.add("display_name", "This field cannot be empty.", ErrorCode.REQUIRED)
    theme = command.theme
    if theme is not None and theme not in set(Theme):
        v.add("theme", "Choose LIGHT, DARK or SYSTEM.")
    prefs = _clean_preferences(v, command.notification_preferences)
    v.raise_if_invalid()
    async with in_transaction():
        user = await _me(viewer, lock=True)
        before = _profile(user)
        if display_name:
            user.display_name = display_name
        if theme is not None:
            user.theme = Theme(theme)
        if prefs:
            user.notification_preferences = {**notification_preferences(user), **prefs}
        after = _profile(user)
        diff = changes(before, after)
        if diff:
            await user.save(update_fields=["display_name", "theme", "notification_preferences", "updated_at"])
            await record(
                viewer, AuditEventType.DATA_CHANGE, "me.update", object_type="User", object_id=user.id, details=diff
            )
    return user


async def _check_credential(
    viewer: Viewer,
    user: User,
    check: Callable[[], Awaitable[str | None]],
    failure: Callable[[str], FieldError],
    action: str,
) -> None:
    """Runs `check` (None when the credential is right, else why not) unless the user failed too often lately
    (RATE_LIMITED, before any hashing); a failure counts and is audited as `<action>.failed`."""
    guard = throttle()
    wait = await guard.admit_user(user.id)
    if wait is not None:
        if await guard.first_refusal(wait):
            await _record_refusal(viewer, user, action, "rate_limited")
        raise Throttled(wait, "failed attempts")
    reason = await check()
    if reason is not None:
        await _record_refusal(viewer, user, action, reason)
        raise DomainError(failure(reason))
    await guard.user_succeeded(user.id)


async def _record_refusal(viewer: Viewer, user: User, action: str, reason: str) -> None:
    await record_standalone(
        viewer,
        AuditEventType.SECURITY,
        f"{action}.failed",
        object_type="User",
        object_id=user.id,
        details={"reason": reason},
    )


async def _check_password(viewer: Viewer, user: User, password: str | None, field: str, action: str) -> None:
    if not isinstance(password, str) or not password or len(password) > 1024:
        raise DomainError.single(ErrorCode.REQUIRED, "Enter your current password.", field)

    async def check() -> str | None:
        ok = await asyncio.to_thread(verify_password, user.password_hash, password)
        return None if ok else "bad_password"

    wrong = FieldError(field, "Wrong password.", ErrorCode.INVALID)
    await _check_credential(viewer, user, check, lambda _: wrong, action)


async def _check_code(viewer: Viewer, user: User, code: str, field: str, action: str) -> None:
    async def check() -> str | None:
        return await use_totp(user, code, now())

    await _check_credential(viewer, user, check, lambda reason: wrong_totp(field, reason), action)


async def _prove_second_factor(viewer: Viewer, user: User, code: str | None, password: str | None, action: str) -> str:
    """Checks a current authenticator code or, failing that, the password; returns which one was given."""
    if code:
        await _check_code(viewer, user, code, "code", action)
        return "code"
    if password:
        await _check_password(viewer, user, password, "password", action)
        return "password"
    raise DomainError.single(ErrorCode.REQUIRED, "Enter a code from your authenticator app or your password.")


async def password_change(viewer: Viewer, command: PasswordChange) -> int:
    """Sets a new password and signs out every other session of the user; returns how many were revoked."""
    user = await _me(viewer)
    current = command.current_password
    v = Validator()
    clean = v.password(
        "new_password", command.new_password, "new_password_confirmation", command.new_password_confirmation
    )
    if clean is not None and clean == current:
        v.add("new_password", "Choose a password different from the current one.")
    await _check_password(viewer, user, current, "current_password", "password.change")
    v.raise_if_invalid()
    assert clean is not None
    pw_hash = await hash_password_async(clean)
    async with in_transaction():
        user = await _me(viewer, lock=True)
        user.password_hash = pw_hash
        await user.save(update_fields=["password_hash", "updated_at"])
        others = Session.filter(user_id=user.id, revoked_at=None)
        if viewer.session_id is not None:
            others = others.exclude(id=viewer.session_id)
        revoked = await others.update(revoked_at=now())
        await events.emit(events.ACCESS_REVOKED, customer_id=viewer.customer_id, partner_id=viewer.partner_id)
        await record(
            viewer,
            AuditEventType.SECURITY,
            "password.change",
            object_type="User",
            object_id=user.id,
            details={"revoked_sessions": revoked},
        )
    return revoked


# ---------------------------------------------------------------- two-factor authentication (TOTP)


@dataclass(slots=True)
class PendingTotp:
    """A new authenticator secret, waiting for `totp_enable` to confirm one of its codes."""

    secret: str
    otpauth_uri: str


async def _issuer(viewer: Viewer) -> str:
    """The brand users see in their authenticator app: the partner they act under, else the platform."""
    if viewer.partner_id is not None:
        partner = await Partner.get_or_none(id=viewer.partner_id)
        if partner is not None:
            return partner.name
    return DEFAULT_ISSUER


async def totp_setup(viewer: Viewer, command: TotpSetup) -> PendingTotp:
    """Stores a new pending secret (replacing any earlier pending one); 2FA stays off until `totp_enable`."""
    issuer = await _issuer(viewer)
    async with in_transaction():
        user = await _me(viewer, lock=True)
        if user.totp_enabled:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Two-factor authentication is already on.")
        # the used step belonged to the old secret's codes
        user.totp_secret, user.totp_last_step = pyotp.random_base32(), None
        await user.save(update_fields=["totp_secret", "totp_last_step", "updated_at"])
        await record(viewer, AuditEventType.SECURITY, "2fa.setup", object_type="User", object_id=user.id)
    uri = pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.email, issuer_name=issuer)
    return PendingTotp(user.totp_secret, uri)


@dataclass(slots=True)
class RecoveryCodes:
    user: User
    codes: list[str]  # readable this once only


async def totp_enable(viewer: Viewer, command: TotpEnable) -> RecoveryCodes:
    """Turns 2FA on with a code of the pending secret; answers the first recovery codes."""
    async with in_transaction():
        user = await _me(viewer, lock=True)
        if user.totp_enabled or not user.totp_secret:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Start with totpSetup, then confirm its code.")
        reason = await use_totp(user, command.code, now())
        if reason is not None:
            raise DomainError(wrong_totp("code", reason))
        user.totp_enabled = True
        await user.save(update_fields=["totp_enabled", "updated_at"])
        codes = await replace_recovery_codes(user.id)
        await record(
            viewer,
            AuditEventType.SECURITY,
            "2fa.enable",
            object_type="User",
            object_id=user.id,
            details={"recovery_codes": len(codes)},
        )
    return RecoveryCodes(user, codes)


async def totp_recovery_codes_generate(viewer: Viewer, command: TotpRecoveryCodesGenerate) -> RecoveryCodes:
    """Replaces the user's recovery codes (the old ones stop working), given the same proof as `totp_disable`."""
    user = await _me(viewer)
    if not user.totp_enabled:
        raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Two-factor authentication is not on.")
    proof = await _prove_second_factor(viewer, user, command.code, command.password, "2fa.recovery_codes.generate")
    async with in_transaction():
        user = await _me(viewer, lock=True)
        if not user.totp_enabled:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Two-factor authentication is not on.")
        codes = await replace_recovery_codes(user.id)
        await record(
            viewer,
            AuditEventType.SECURITY,
            "2fa.recovery_codes.generate",
            object_type="User",
            object_id=user.id,
            details={"recovery_codes": len(codes), "proof": proof},
        )
    return RecoveryCodes(user, codes)


async def totp_disable(viewer: Viewer, command: TotpDisable) -> User:
    """Turns 2FA off (and drops the recovery codes) after proving the second factor (a current code) or the
    password."""
    user = await _me(viewer)
    if not user.totp_enabled:
        raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Two-factor authentication is not on.")
    proof = await _prove_second_factor(viewer, user, command.code, command.password, "2fa.disable")
    async with in_transaction():
        user = await _me(viewer, lock=True)
        user.totp_enabled, user.totp_secret = False, None
        await user.save(update_fields=["totp_enabled", "totp_secret", "updated_at"])
        await drop_recovery_codes(user.id)
        await record(
            viewer,
            AuditEventType.SECURITY,
            "2fa.disable",
            object_type="User",
            object_id=user.id,
            details={"proof": proof},
        )
    return user


# ---------------------------------------------------------------- email change


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def email_change_token(user_id: int, new_email: str, old_email: str, expires: int) -> str:
    """`<payload>.<signature>`: the payload is readable, the signature binds it to the secret key."""
    body = _b64(json.dumps([user_id, new_email, old_email.lower(), expires], separators=(",", ":")).encode())
    digest = hmac.new(config().secret_key.encode(), f"email-change:{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(digest)}"


def email_change_path(token: str) -> str:
    """Where the confirmation link points (the portal's profile page), after the brand's base URL."""
    return f"/settings/profile/confirm-email?token={token}"


def _read_token(token: str, at: datetime) -> tuple[int, str, str]:
    invalid = DomainError.single(ErrorCode.INVALID, "This confirmation link is invalid or has expired.", "token")
    if not isinstance(token, str) or len(token) > 2000 or token.count(".") != 1:
        raise invalid
    body, signature = token.split(".")
    expected = _b64(hmac.new(config().secret_key.encode(), f"email-change:{body}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature, expected):
        raise invalid
    try:
        user_id, new_email, old_key, expires = json.loads(_unb64(body))
    except ValueError:
        raise invalid from None
    if expires <= at.timestamp():
        raise invalid
    return int(user_id), str(new_email), str(old_key)


async def email_change_request(viewer: Viewer, command: EmailChangeRequest) -> str:
    """Mails a confirmation link to the new address; nothing changes until it is confirmed. Returns the email."""
    user = await _me(viewer)
    v = Validator()
    clean = v.email("new_email", command.new_email)
    if clean and clean.lower() == user.email_key:
        v.add("new_email", "This is already your email address.")
    await _check_password(viewer, user, command.password, "password", "email_change.request")
    v.raise_if_invalid()
    assert clean is not None
    if await User.filter(email_key=clean.lower()).exclude(id=user.id).exists():
        raise DomainError.single(ErrorCode.UNIQUE, "An account with this email already exists.", "new_email")
    expires = int((now() + EMAIL_CHANGE_TTL).timestamp())
    async with in_transaction():
        # the job signs the token from these values: it never sits in the outbox table
        mail = EmailChangeRequested(user.id, clean, user.email, expires, viewer.partner_id)
        await events.emit(EMAIL_CHANGE_REQUESTED, partner_id=viewer.partner_id, mail=asdict(mail))
        await record(
            viewer,
            AuditEventType.SECURITY,
            "email_change.request",
            object_type="User",
            object_id=user.id,
            details={"new_email": clean},
        )
    return clean


async def email_change_confirm(viewer: Viewer, command: EmailChangeConfirm) -> User:
    """Moves the account to the confirmed address (the link works signed in or not) and tells the old one."""
    user_id, new_email, old_key = _read_token(command.token, now())
    async with in_transaction():
        user = await User.select_for_update().get_or_none(id=user_id, is_active=True)
        if user is None or user.email_key != old_key:
            raise DomainError.single(ErrorCode.INVALID, "This confirmation link is no longer valid.", "token")
        if await User.filter(email_key=new_email.lower()).exclude(id=user.id).exists():
            raise DomainError.single(ErrorCode.UNIQUE, "An account with this email already exists.", "token")
        old_email = user.email
        user.email, user.email_key = new_email, new_email.lower()
        try:
            await user.save(update_fields=["email", "email_key", "updated_at"])
        except IntegrityError as exc:
            raise DomainError.single(ErrorCode.UNIQUE, "An account with this email already exists.", "token") from exc
        partner_id = viewer.partner_id if viewer.user_id == user.id else None
        notice = EmailChanged(user.id, new_email, old_email, partner_id)
        await events.emit(EMAIL_CHANGED, partner_id=partner_id, mail=asdict(notice))
        await record(
            viewer,
            AuditEventType.SECURITY,
            "email_change.confirm",
            object_type="User",
            object_id=user.id,
            details={"old_email": old_email, "new_email": new_email},
            actor_user_id=user.id,
            actor_label=old_email,
        )
    return user


# ---------------------------------------------------------------- account deletion

ADMIN_ROLES = frozenset({Role.PLATFORM_ADMIN, Role.PARTNER_ADMIN, Role.CUSTOMER_ADMIN})


async def _last_admin_of(user: User) -> list[str]:
    """The organizations (org keys) where the user is the only active admin; their admins' rows are locked."""
    orphaned = []
    for membership in await Membership.filter(user_id=user.id, role__in=list(ADMIN_ROLES)).order_by("id"):
        admin_ids = await Membership.filter(org_key=membership.org_key, role=membership.role).values_list(
            "user_id", flat=True
        )
        # lock every admin of the organization so two admins leaving at once cannot both pass this check
        admins = await User.select_for_update().filter(id__in=list(admin_ids)).order_by("id")
        if not any(a.is_active and a.id != user.id for a in admins):
            orphaned.append(membership.org_key)
    return orphaned


async def account_delete(viewer: Viewer, command: AccountDelete) -> None:
    """Deactivates the signed-in user for good and ends every session; refused for an organization's last admin."""
    user = await _me(viewer)
    await _check_password(viewer, user, command.password, "password", "account.delete")
    async with in_transaction():
        user = await _me(viewer, lock=True)
        orphaned = await _last_admin_of(user)
        if orphaned:
            raise DomainError.single(
                ErrorCode.NOT_ELIGIBLE,
                "You are the last admin of an organization: make someone else an admin first.",
            )
        user.is_active = False
        await user.save(update_fields=["is_active", "updated_at"])
        revoked = await Session.filter(user_id=user.id, revoked_at=None).update(revoked_at=now())
        await events.emit(events.ACCESS_REVOKED, customer_id=viewer.customer_id, partner_id=viewer.partner_id)
        await record(
            viewer,
            AuditEventType.SECURITY,
            "account.delete",
            object_type="User",
            object_id=user.id,
            details={"revoked_sessions": revoked},
        )


# ---------------------------------------------------------------- profile image

AVATAR_MAX_BYTES = 512 * 1024  # well under the server's request body cap (max_body_bytes)
AVATAR_PATH = "/avatars/"
# the format is read from the content, never from the file name or the client's content type
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))
AVATAR_CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif"}
AVATAR_NAME = re.compile(r"^[0-9]{1,10}-[A-Za-z0-9_-]{16,64}\.(jpg|png|gif)$")


def image_kind(content: bytes) -> str | None:
    return next((kind for magic, kind in _IMAGE_MAGIC if content.startswith(magic)), None)


def avatar_path(name: str) -> Path | None:
    """The stored file behind an avatar name, or None for a name we never issue."""
    return Path(config().avatars_dir) / name if AVATAR_NAME.match(name) else None


def _write_avatar(name: str, content: bytes) -> None:
    folder = Path(config().avatars_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


def _remove_avatar(name: str | None) -> None:
    path = avatar_path(name) if name else None
    if path is not None:
        path.unlink(missing_ok=True)


async def avatar_upload(viewer: Viewer, command: AvatarUpload) -> User:
    """Stores a JPG, PNG or GIF (at most AVATAR_MAX_BYTES) as the user's profile image, replacing the old one."""
    # one byte past the cap is enough to refuse: never read an oversized upload whole
    content = await command.file.read(AVATAR_MAX_BYTES + 1)
    if len(content) > AVATAR_MAX_BYTES:
        raise DomainError.single(ErrorCode.INVALID, f"Images are limited to {AVATAR_MAX_BYTES // 1024} KB.", "file")
    kind = image_kind(content)
    if kind is None:
        raise DomainError.single(ErrorCode.INVALID, "Upload a JPG, PNG or GIF image.", "file")
    async with in_transaction():
        user = await _me(viewer, lock=True)
        previous = user.avatar_url.rsplit("/", 1)[-1] if user.avatar_url else None
        name = f"{user.id}-{secrets.token_urlsafe(16)}.{kind}"
        user.avatar_url = f"{config().public_url.rstrip('/')}{AVATAR_PATH}{name}"
        await user.save(update_fields=["avatar_url", "updated_at"])
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "avatar.upload",
            object_type="User",
            object_id=user.id,
            details={"format": kind, "bytes": len(content)},
        )
        # written last inside the transaction: a failed write rolls the new URL back
        await asyncio.to_thread(_write_avatar, name, content)
    await asyncio.to_thread(_remove_avatar, previous)
    return user
