"""Teams (seeds 000, 002, 003): inviting people to a customer's team or a partner's staff, accepting, removing
members, changing roles, and partner staff editing a client user's details.

- An invitation is emailed as a link (`/invite?token=…`, on the partner's first verified domain) that works for
  INVITATION_TTL_HOURS. Its token is an HMAC of the invitation's id and nonce under the secret key: never stored,
  and re-inviting the same address re-sends the invitation with a new nonce (the older link stops working).
- A customer's invitation takes a seat while pending: members + pending invitations ≤ the seat limit, counted under
  the customer's toggles row lock (domain/team/seats.py), else SEATS_EXHAUSTED. Team members need the portal and
  the team-members feature (REQUIRES_FEATURE).
- Accepting with new-account fields creates the user under the customer-creation policy; a signed-in user whose
  email is the invited one accepts with the token alone and gains the membership.
- An organization always keeps an active admin: neither removing nor demoting the last one is allowed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from tortoise.transactions import in_transaction

from domain.accounts.models import CUSTOMER_ROLES, PARTNER_ROLES, Membership, Role, Session, User
from domain.accounts.services import NewUser, check_user_unique, create_user, hash_password_async, org_key
from domain.accounts.settings import EMAIL_CHANGED, EmailChanged
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.billing.models import BillingPreferences
from domain.common.commands import UNSET
from domain.common.validation import Validator
from domain.config import config
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode, forbidden
from domain.events import services as events
from domain.features.models import FeatureToggles
from domain.partners.branding import Brand, brand_of
from domain.partners.models import Partner, PartnerStatus
from domain.team.commands import (
    InvitationRevoke,
    MemberRoleUpdate,
    PartnerMemberInvite,
    PartnerMemberRemove,
    TeamMemberInvite,
    TeamMemberInviteAccept,
    TeamMemberRemove,
    TeamMemberUpdate,
)
from domain.team.models import Invitation, InvitationStatus
from domain.team.seats import lock_seat_limit, seats_taken
from domain.viewer import Viewer
from domain.visibility import get_visible, require_customer_manager, require_partner_staff

TOKEN_PREFIX = "pd_inv_"
INVITE_PATH = "/invite"
INVITATION_SENT = "invitation.sent"  # outbox: email the invitation (payload `mail`: InvitationMail)
ADMIN_ROLES = frozenset({Role.CUSTOMER_ADMIN, Role.PARTNER_ADMIN})
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}(?P<id>[0-9]{{1,10}})_(?P<signature>[A-Za-z0-9_-]{{20,64}})$")
ROLE_LABELS = {
    Role.CUSTOMER_ADMIN: "an administrator",
    Role.CUSTOMER_MEMBER: "a team member",
    Role.PARTNER_ADMIN: "an administrator",
    Role.PARTNER_MEMBER: "a staff member",
}


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class InvitationMail:
    """The `mail` of an INVITATION_SENT event: the job signs the link from the row, if it still has this nonce."""

    invitation_id: int
    nonce: str


# ---------------------------------------------------------------- tokens


def _signature(invitation_id: int, nonce: str) -> str:
    digest = hmac.new(config().secret_key.encode(), f"invitation:{invitation_id}:{nonce}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def invitation_token(invitation: Invitation) -> str:
    return f"{TOKEN_PREFIX}{invitation.id}_{_signature(invitation.id, invitation.nonce)}"


def invitation_path(token: str) -> str:
    """The accept page's path (served by the API at every domain of the partner), after the brand's base URL."""
    return f"{INVITE_PATH}?token={quote(token, safe='')}"


def status_of(invitation: Invitation, at: datetime | None = None) -> InvitationStatus:
    if invitation.accepted_at is not None:
        return InvitationStatus.ACCEPTED
    if invitation.revoked_at is not None:
        return InvitationStatus.REVOKED
    if invitation.expires_at <= (at or now()):
        return InvitationStatus.EXPIRED
    return InvitationStatus.PENDING


def _unusable() -> DomainError:
    return DomainError.single(
        ErrorCode.INVALID, "This invitation link is invalid, was already used or has expired.", "token"
    )


async def invitation_of_token(token: object, *, lock: bool = False) -> Invitation:
    """The pending invitation a token names (its row locked when `lock`), else INVALID on `token`."""
    match = _TOKEN.match(token) if isinstance(token, str) else None
    if match is None:
        raise _unusable()
    query = Invitation.select_for_update() if lock else Invitation
    invitation = await query.get_or_none(id=int(match["id"]))
    if invitation is None or not hmac.compare_digest(match["signature"], _signature(invitation.id, invitation.nonce)):
        raise _unusable()
    if status_of(invitation) is not InvitationStatus.PENDING:
        raise _unusable()
    return invitation


# ---------------------------------------------------------------- inviting


def _open_key(organization: str, email_key: str) -> str:
    return f"{organization}|{email_key}"


def _clean_invite(email: object, role: object, allowed: frozenset[Role]) -> tuple[str, Role]:
    v = Validator()
    clean = v.email("email", email)
    if role not in allowed:
        names = " or ".join(sorted(r.value for r in allowed))
        v.add("role", f"Choose {names}.")
    v.raise_if_invalid()
    assert clean is not None
    return clean, Role(str(role))


async def _send(invitation: Invitation, viewer: Viewer, email: str, role: Role, *, renew: bool) -> Invitation:
    """Creates the invitation, or renews an open one (new nonce and expiry, so only the newest link works), and
    asks the outbox to email it. Inside the caller's transaction."""
    at = now()
    invitation.email, invitation.role = email, role
    invitation.nonce = secrets.token_urlsafe(24)
    invitation.invited_by_user_id = viewer.user_id
    invitation.sent_at = at
    invitation.expires_at = at + timedelta(hours=config().invitation_ttl_hours)
    await invitation.save()
    mail = InvitationMail(invitation.id, invitation.nonce)
    await events.emit(
        INVITATION_SENT, customer_id=invitation.customer_id, partner_id=invitation.partner_id, mail=asdict(mail)
    )
    await record(
        viewer,
        AuditEventType.DATA_CHANGE,
        "invitation.resend" if renew else "invitation.create",
        object_type="Invitation",
        object_id=invitation.id,
        partner_id=invitation.partner_id,
        customer_id=invitation.customer_id,
        details={"email": email, "role": role.value, "expires_at": invitation.expires_at.isoformat()},
    )
    return invitation


async def team_member_invite(viewer: Viewer, command: TeamMemberInvite) -> Invitation:
    """Invites someone to the customer's team (its partner's staff or its own admins); takes a seat."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    email, role = _clean_invite(command.email, command.role, CUSTOMER_ROLES)
    if customer.status != CustomerStatus.ACTIVE:
        raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "The customer is disabled.", "customer_id")
    key = _open_key(org_key(customer_id=customer.id), email.lower())
    async with in_transaction():
        limit = await lock_seat_limit(customer.id)
        toggles = await FeatureToggles.get(customer_id=customer.id)
        if not toggles.portal_enabled:
            raise DomainError.single(ErrorCode.REQUIRES_FEATURE, "Team members need customer portal access.", "email")
        if not toggles.team_members_enabled:
            message = "Team members are switched off for this customer."
            raise DomainError.single(ErrorCode.REQUIRES_FEATURE, message, "email")
        if await Membership.filter(customer_id=customer.id, user__email_key=email.lower()).exists():
            raise DomainError.single(ErrorCode.UNIQUE, f"{email} is already a member of this team.", "email")
        invitation = await Invitation.select_for_update().get_or_none(open_key=key)
        renew = invitation is not None and status_of(invitation) is InvitationStatus.PENDING
        if not renew:
            taken = await seats_taken(customer.id)
            if taken + 1 > limit:
                raise DomainError.single(
                    ErrorCode.SEATS_EXHAUSTED,
                    f"All {limit} seats are taken (members and pending invitations): remove a member, revoke an "
                    "invitation or raise the limit first.",
                    "email",
                )
        if invitation is None:
            invitation = Invitation(
                partner_id=customer.partner_id, customer_id=customer.id, email_key=email.lower(), open_key=key
            )
        return await _send(invitation, viewer, email, role, renew=renew)


async def partner_member_invite(viewer: Viewer, command: PartnerMemberInvite) -> Invitation:
    """Invites someone to the partner's staff (its admins, or platform admins)."""
    require_partner_staff(viewer, admin=True)
    partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
    email, role = _clean_invite(command.email, command.role, PARTNER_ROLES)
    key = _open_key(org_key(partner.id), email.lower())
    async with in_transaction():
        await Partner.select_for_update().get(id=partner.id)
        if await Membership.filter(partner_id=partner.id, user__email_key=email.lower()).exists():
            raise DomainError.single(ErrorCode.UNIQUE, f"{email} is already on the staff.", "email")
        invitation = await Invitation.select_for_update().get_or_none(open_key=key)
        renew = invitation is not None and status_of(invitation) is InvitationStatus.PENDING
        if invitation is None:
            invitation = Invitation(partner_id=partner.id, customer_id=None, email_key=email.lower(), open_key=key)
        return await _send(invitation, viewer, email, role, renew=renew)


async def invitation_revoke(viewer: Viewer, command: InvitationRevoke) -> Invitation:
    """Withdraws a pending invitation (its link stops working, its seat frees up)."""
    invitation = await get_visible(Invitation, viewer, command.invitation_id, field="invitation_id")
    if invitation.customer_id is None:
        require_partner_staff(viewer, admin=True)
    else:
        require_customer_manager(viewer, await Customer.get(id=invitation.customer_id))
    async with in_transaction():
        invitation = await Invitation.select_for_update().get(id=invitation.id)
        status = status_of(invitation)
        if status is InvitationStatus.ACCEPTED:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "This invitation was accepted already.", "invitation_id")
        if invitation.revoked_at is None:
            invitation.revoked_at, invitation.open_key = now(), None
            await invitation.save(update_fields=["revoked_at", "open_key"])
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "invitation.revoke",
                object_type="Invitation",
                object_id=invitation.id,
                partner_id=invitation.partner_id,
                customer_id=invitation.customer_id,
                details={"email": invitation.email, "was": status.value},
            )
    return invitation


# ---------------------------------------------------------------- accepting


@dataclass(frozen=True, slots=True)
class Accepted:
    user: User
    membership: Membership
    invitation: Invitation
    created: bool  # a new account was made


def _wants_new_account(command: TeamMemberInviteAccept) -> bool:
    return any(
        value is not None
        for value in (
            command.username,
            command.first_name,
            command.last_name,
            command.password,
            command.password_confirmation,
        )
    )


async def team_member_invite_accept(viewer: Viewer, command: TeamMemberInviteAccept) -> Accepted:
    """Joins the invited organization: a new account from the fields given, or the signed-in user's account
    (token alone) when its email is the invited one."""
    invitation = await invitation_of_token(command.token)
    if _wants_new_account(command):
        return await _accept_as_new_user(viewer, invitation, command)
    if viewer.user_id is None or viewer.is_machine:
        raise DomainError.single(
            ErrorCode.REQUIRED,
            f"Sign in as {invitation.email} to accept with your account, or choose a username and password.",
            "username",
        )
    user = await User.get_or_none(id=viewer.user_id, is_active=True)
    if user is None or user.email_key != invitation.email_key:
        raise forbidden(f"This invitation is for {invitation.email}: sign in with that address.", "token")
    async with in_transaction():
        return await _join(viewer, invitation.id, user, created=False)


async def _accept_as_new_user(viewer: Viewer, invitation: Invitation, command: TeamMemberInviteAccept) -> Accepted:
    v = Validator()
    username = v.username("username", command.username)
    first_name = v.text("first_name", command.first_name, required=True, max_length=100)
    last_name = v.text("last_name", command.last_name, required=True, max_length=100)
    password = v.password("password", command.password, "password_confirmation", command.password_confirmation)
    await check_user_unique(v, username, None)
    if await User.filter(email_key=invitation.email_key).exists():
        v.add(
            "token",
            f"An account with {invitation.email} exists: sign in with it and accept with the token alone.",
            ErrorCode.UNIQUE,
        )
    v.raise_if_invalid()
    assert username and first_name and last_name and password
    pw_hash = await hash_password_async(password)
    async with in_transaction():
        user = await create_user(
            NewUser(
                username=username, email=invitation.email, password=password, first_name=first_name, last_name=last_name
            ),
            pw_hash,
        )
        return await _join(viewer, invitation.id, user, created=True)


async def _join(viewer: Viewer, invitation_id: int, user: User, *, created: bool) -> Accepted:
    """Inside the transaction: the invitation (locked and re-checked: two accepts race) becomes a membership."""
    invitation = await Invitation.select_for_update().get(id=invitation_id)
    if status_of(invitation) is not InvitationStatus.PENDING:
        raise _unusable()
    if invitation.customer_id is not None:
        customer = await Customer.get(id=invitation.customer_id)
        await lock_seat_limit(customer.id)  # the invitation's seat becomes the member's
        toggles = await FeatureToggles.get(customer_id=customer.id)
        if customer.status != CustomerStatus.ACTIVE:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "This organization is disabled.", "token")
        if not (toggles.portal_enabled and toggles.team_members_enabled):
            message = "Team members are switched off for this organization: ask its administrator."
            raise DomainError.single(ErrorCode.REQUIRES_FEATURE, message, "token")
        key = org_key(customer_id=customer.id)
    else:
        partner = await Partner.get(id=invitation.partner_id)
        if partner.status != PartnerStatus.ACTIVE:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "This organization is disabled.", "token")
        key = org_key(partner.id)
    membership = await Membership.get_or_none(user_id=user.id, org_key=key)
    if membership is None:
        membership = await Membership.create(
            user=user,
            role=invitation.role,
            partner_id=None if invitation.customer_id is not None else invitation.partner_id,
            customer_id=invitation.customer_id,
            org_key=key,
        )
    invitation.accepted_at, invitation.accepted_user_id, invitation.open_key = now(), user.id, None
    await invitation.save(update_fields=["accepted_at", "accepted_user_id", "open_key"])
    await record(
        viewer,
        AuditEventType.DATA_CHANGE,
        "invitation.accept",
        object_type="Invitation",
        object_id=invitation.id,
        partner_id=invitation.partner_id,
        customer_id=invitation.customer_id,
        actor_user_id=user.id,
        actor_label=user.email,
        details={"user_id": user.id, "role": invitation.role.value, "new_account": created},
    )
    return Accepted(user, membership, invitation, created)


# ---------------------------------------------------------------- members


async def _lock_admins(key: str) -> list[Membership]:
    """The organization's admin memberships, their users' rows locked (as `account_delete` locks them), so two
    admins leaving or being demoted at once cannot both pass the last-admin check."""
    admins = await Membership.filter(org_key=key, role__in=list(ADMIN_ROLES)).order_by("id")
    await User.select_for_update().filter(id__in=[m.user_id for m in admins]).order_by("id")
    return await Membership.filter(org_key=key, role__in=list(ADMIN_ROLES), user__is_active=True).order_by("id")


def _refuse_if_last_admin(admins: list[Membership], membership: Membership, what: str) -> None:
    if membership.role in ADMIN_ROLES and not any(a.id != membership.id for a in admins):
        raise DomainError.single(
            ErrorCode.NOT_ELIGIBLE, f"This is the organization's last admin: make someone else an admin before {what}."
        )


async def _end_membership(viewer: Viewer, membership: Membership, partner_id: int, customer_id: int | None) -> None:
    """Deletes the membership and signs out the sessions acting through it (inside the transaction)."""
    await Session.filter(membership_id=membership.id, revoked_at=None).update(revoked_at=now())
    await membership.delete()
    if customer_id is not None:
        await BillingPreferences.filter(customer_id=customer_id, primary_contact_user_id=membership.user_id).update(
            primary_contact_user_id=None
        )
    await events.emit(events.ACCESS_REVOKED, customer_id=customer_id, partner_id=partner_id)
    await record(
        viewer,
        AuditEventType.DATA_CHANGE,
        "team_member.remove",
        object_type="User",
        object_id=membership.user_id,
        partner_id=partner_id,
        customer_id=customer_id,
        details={"role": membership.role.value},
    )


async def team_member_remove(viewer: Viewer, command: TeamMemberRemove) -> Customer:
    """Takes a user off the customer's team (the account stays, with its other organizations)."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    key = org_key(customer_id=customer.id)
    async with in_transaction():
        await lock_seat_limit(customer.id)
        admins = await _lock_admins(key)
        membership = await Membership.get_or_none(org_key=key, user_id=command.user_id)
        if membership is None:
            raise DomainError.single(ErrorCode.NOT_FOUND, "User not found in this team.", "user_id")
        _refuse_if_last_admin(admins, membership, "removing this one")
        await _end_membership(viewer, membership, customer.partner_id, customer.id)
    return customer


async def partner_member_remove(viewer: Viewer, command: PartnerMemberRemove) -> Partner:
    """Takes a user off the partner's staff (its admins, or platform admins)."""
    require_partner_staff(viewer, admin=True)
    partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
    key = org_key(partner.id)
    async with in_transaction():
        admins = await _lock_admins(key)
        membership = await Membership.get_or_none(org_key=key, user_id=command.user_id)
        if membership is None:
            raise DomainError.single(ErrorCode.NOT_FOUND, "User not found on this staff.", "user_id")
        _refuse_if_last_admin(admins, membership, "removing this one")
        await _end_membership(viewer, membership, partner.id, None)
    return partner


async def member_role_update(viewer: Viewer, command: MemberRoleUpdate) -> Membership:
    """Changes a user's role in a customer (customer roles; partner staff or the customer's admins) or in a
    partner (partner roles; its admins); the last admin cannot be demoted."""
    if (command.customer_id is None) == (command.partner_id is None):
        raise DomainError.single(ErrorCode.INVALID, "Name either the customer or the partner.", "customer_id")
    if command.customer_id is not None:
        customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
        require_customer_manager(viewer, customer)
        allowed, key, partner_id, customer_id = (
            CUSTOMER_ROLES,
            org_key(customer_id=customer.id),
            customer.partner_id,
            customer.id,
        )
    else:
        require_partner_staff(viewer, admin=True)
        partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
        allowed, key, partner_id, customer_id = PARTNER_ROLES, org_key(partner.id), partner.id, None
    if command.role not in allowed:
        raise DomainError.single(ErrorCode.INVALID, f"Choose {' or '.join(sorted(r.value for r in allowed))}.", "role")
    role = Role(command.role)
    async with in_transaction():
        admins = await _lock_admins(key)
        membership = await Membership.select_for_update().get_or_none(org_key=key, user_id=command.user_id)
        if membership is None:
            raise DomainError.single(ErrorCode.NOT_FOUND, "User not found in this organization.", "user_id")
        if membership.role == role:
            return membership
        if role not in ADMIN_ROLES:
            _refuse_if_last_admin(admins, membership, "changing this one's role")
        before = membership.role
        membership.role = role
        await membership.save(update_fields=["role"])
        if customer_id is not None and role is not Role.CUSTOMER_ADMIN:
            # the primary billing contact must be an active admin (seed 001)
            await BillingPreferences.filter(customer_id=customer_id, primary_contact_user_id=membership.user_id).update(
                primary_contact_user_id=None
            )
        await events.emit(events.ACCESS_REVOKED, customer_id=customer_id, partner_id=partner_id)
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "member.role_update",
            object_type="User",
            object_id=membership.user_id,
            partner_id=partner_id,
            customer_id=customer_id,
            details={"changes": {"role": {"before": before.value, "after": role.value}}},
        )
    return membership


async def team_member_update(viewer: Viewer, command: TeamMemberUpdate) -> User:
    """Partner admins edit a client user's name, email and phone (seed 002). Refused for a person who also
    belongs to organizations beyond the partner: their account is theirs to change."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_partner_staff(viewer, admin=True)
    membership = await Membership.get_or_none(customer_id=customer.id, user_id=command.user_id)
    if membership is None:
        raise DomainError.single(ErrorCode.NOT_FOUND, "User not found in this team.", "user_id")
    memberships = await Membership.filter(user_id=command.user_id).select_related("customer")
    beyond = any(
        (m.customer.partner_id if m.customer is not None else m.partner_id) != customer.partner_id for m in memberships
    )
    if beyond:
        raise DomainError.single(
            ErrorCode.NOT_ELIGIBLE,
            "This person also belongs to organizations of others: only they can change their details.",
            "user_id",
        )
    v = Validator()
    updates: dict[str, str] = {}
    for name in ("first_name", "last_name"):
        value = getattr(command, name)
        if value is not UNSET:
            cleaned = v.text(name, value, required=True, max_length=100)
            if cleaned:
                updates[name] = cleaned
    if command.phone is not UNSET:
        updates["phone"] = v.phone("phone", command.phone) or ""
    if command.email is not UNSET:
        email = v.email("email", command.email)
        if email:
            updates["email"] = email
            if await User.filter(email_key=email.lower()).exclude(id=command.user_id).exists():
                v.add("email", "An account with this email already exists.", ErrorCode.UNIQUE)
    v.raise_if_invalid()
    async with in_transaction():
        user = await User.select_for_update().get(id=command.user_id)
        before = {"first_name": user.first_name, "last_name": user.last_name, "email": user.email, "phone": user.phone}
        after = before | updates
        diff = changes(before, after)
        if not diff:
            return user
        old_email = user.email
        user.first_name, user.last_name, user.phone = after["first_name"], after["last_name"], after["phone"]
        if "first_name" in diff or "last_name" in diff:
            user.display_name = " ".join(p for p in (user.first_name, user.last_name) if p)
        user.email, user.email_key = after["email"], after["email"].lower()
        await user.save()
        if "email" in diff:
            notice = EmailChanged(user.id, user.email, old_email, customer.partner_id)
            await events.emit(EMAIL_CHANGED, partner_id=customer.partner_id, mail=asdict(notice))
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "team_member.update",
            object_type="User",
            object_id=user.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"changes": diff},
        )
    return user


# ---------------------------------------------------------------- the accept page


@dataclass(frozen=True, slots=True)
class InvitationPreview:
    """What the invitation page shows to whoever holds the link."""

    email: str
    organization: str
    role: str
    expires_at: datetime
    account_exists: bool  # accept by signing in as `email` rather than by creating an account
    brand: Brand


async def invitation_preview(token: str) -> InvitationPreview | None:
    """The pending invitation behind a link, or None (invalid, used, revoked or expired: one answer for all)."""
    try:
        invitation = await invitation_of_token(token)
    except DomainError:
        return None
    partner = await Partner.get(id=invitation.partner_id)
    customer = await Customer.get_or_none(id=invitation.customer_id) if invitation.customer_id else None
    return InvitationPreview(
        email=invitation.email,
        organization=customer.name if customer else partner.name,
        role=ROLE_LABELS.get(invitation.role, "a member"),
        expires_at=invitation.expires_at,
        account_exists=await User.filter(email_key=invitation.email_key).exists(),
        brand=await brand_of(partner, invitation.customer_id),
    )
