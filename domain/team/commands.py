"""The write operations on teams (a customer's users, a partner's staff), as typed commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from domain.accounts.models import Role
from domain.common.commands import UNSET, CustomerId, PartnerId, Patch, Ref, UserId

InvitationId = Annotated[int, Ref("Invitation")]


@dataclass(frozen=True, slots=True)
class TeamMemberInvite:
    """Invites `email` to the customer's team with a customer role; takes a seat until accepted or revoked."""

    customer_id: CustomerId
    email: str
    role: Role = Role.CUSTOMER_MEMBER


@dataclass(frozen=True, slots=True)
class PartnerMemberInvite:
    """Invites `email` to the partner's staff with a partner role."""

    partner_id: PartnerId
    email: str
    role: Role = Role.PARTNER_MEMBER


@dataclass(frozen=True, slots=True)
class TeamMemberInviteAccept:
    """With only `token`, a signed-in user whose email is the invited one joins; otherwise a new account is made
    from the other fields (the same policy as customerCreate)."""

    token: str
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    password: str | None = None
    password_confirmation: str | None = None


@dataclass(frozen=True, slots=True)
class InvitationRevoke:
    invitation_id: InvitationId


@dataclass(frozen=True, slots=True)
class TeamMemberRemove:
    customer_id: CustomerId
    user_id: UserId


@dataclass(frozen=True, slots=True)
class PartnerMemberRemove:
    partner_id: PartnerId
    user_id: UserId


@dataclass(frozen=True, slots=True)
class MemberRoleUpdate:
    """The user's role in one organization: a customer (customer roles) or a partner (partner roles)."""

    user_id: UserId
    role: Role
    customer_id: CustomerId | None = None
    partner_id: PartnerId | None = None


@dataclass(frozen=True, slots=True)
class TeamMemberUpdate:
    """A customer user's own details, edited by its partner's staff (seed 002 "Edit – Modify client details");
    only the fields sent change."""

    customer_id: CustomerId
    user_id: UserId
    first_name: Patch[str | None] = UNSET
    last_name: Patch[str | None] = UNSET
    email: Patch[str | None] = UNSET
    phone: Patch[str | None] = UNSET
