"""Teams (seeds 000, 002, 003): invitations to a customer's team or a partner's staff, accepting them, seats,
removing members, roles, and partner admins editing a client user's details."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.accounts.models import Role as DomainRole
from domain.team import services
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
from domain.team.models import Invitation as InvitationRow
from domain.team.models import InvitationStatus as DomainInvitationStatus
from domain.team.seats import Seats as SeatsState
from resolvers.commands import perform
from schema.common import Info
from schema.errors import CustomerError, PartnerError
from schema.nodes import ModelNode, maybe_view, shows

if TYPE_CHECKING:
    from schema.accounts import Membership, Role, User
    from schema.customers import Customer
    from schema.partners import Partner

InvitationStatus = strawberry.enum(DomainInvitationStatus, name="InvitationStatus")
RoleType = Annotated["Role", strawberry.lazy("schema.accounts")]  # type: ignore[valid-type]


@shows(InvitationRow)
@strawberry.type(description="An emailed invitation to a customer's team or a partner's staff.")
class Invitation(ModelNode):
    loader = "invitation_by_id"
    id: relay.NodeID[int]
    email: str
    role: RoleType
    created_at: datetime
    sent_at: datetime = strawberry.field(description="When the current link was emailed (re-inviting re-sends).")
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None
    model: strawberry.Private[Any]

    @strawberry.field(description="PENDING invitations take a seat of the customer's team.")
    def status(self) -> InvitationStatus:  # type: ignore[valid-type]
        return services.status_of(self.model)

    @strawberry.field(description="The customer invited to (null: the partner's staff).")
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        if self.model.customer_id is None:
            return None
        return maybe_view(await info.context.loaders.customer_by_id.load(self.model.customer_id))

    @strawberry.field
    async def partner(self, info: Info) -> Annotated[Partner, strawberry.lazy("schema.partners")] | None:
        return maybe_view(await info.context.loaders.partner_by_id.load(self.model.partner_id))

    @strawberry.field(description="Who sent it (null when the viewer may not see them).")
    async def invited_by(self, info: Info) -> Annotated[User, strawberry.lazy("schema.accounts")] | None:
        if self.model.invited_by_user_id is None:
            return None
        return maybe_view(await info.context.loaders.user_by_id.load(self.model.invited_by_user_id))


@shows(SeatsState)
@strawberry.type(description="Seats of a customer's team: members plus pending invitations, at most `limit`.")
class Seats:
    limit: int = strawberry.field(description="The seat limit (the `maxTeamMembers` feature).")
    members: int = strawberry.field(description="Active members.")
    pending_invitations: int
    available: int

    @classmethod
    def of(cls, state: SeatsState) -> Seats:
        return cls(
            limit=state.limit, members=state.members, pending_invitations=state.pending, available=state.available
        )


@strawberry.input
class TeamMemberInviteInput:
    customer_id: strawberry.ID
    email: str
    role: RoleType = strawberry.field(
        default=DomainRole.CUSTOMER_MEMBER, description="CUSTOMER_ADMIN or CUSTOMER_MEMBER."
    )


@strawberry.type
class TeamMemberInvitePayload:
    invitation: Invitation | None
    errors: list[CustomerError]


@strawberry.input
class PartnerMemberInviteInput:
    partner_id: strawberry.ID
    email: str
    role: RoleType = strawberry.field(default=DomainRole.PARTNER_MEMBER, description="PARTNER_ADMIN or PARTNER_MEMBER.")


@strawberry.type
class PartnerMemberInvitePayload:
    invitation: Invitation | None
    errors: list[PartnerError]


@strawberry.input(
    description="With only `token`, the signed-in user whose email was invited joins; otherwise a new account is "
    "made from the other fields (the same rules as customerCreate)."
)
class TeamMemberInviteAcceptInput:
    token: str
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    password: str | None = None
    password_confirmation: str | None = None


@strawberry.type
class TeamMemberInviteAcceptPayload:
    user: Annotated[User, strawberry.lazy("schema.accounts")] | None
    membership: Annotated[Membership, strawberry.lazy("schema.accounts")] | None
    errors: list[CustomerError]


@strawberry.input
class InvitationRevokeInput:
    invitation_id: strawberry.ID


@strawberry.type
class InvitationRevokePayload:
    invitation: Invitation | None
    errors: list[CustomerError]


@strawberry.input
class TeamMemberRemoveInput:
    customer_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.type
class TeamMemberRemovePayload:
    customer: Annotated[Customer, strawberry.lazy("schema.customers")] | None
    errors: list[CustomerError]


@strawberry.input
class PartnerMemberRemoveInput:
    partner_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.type
class PartnerMemberRemovePayload:
    partner: Annotated[Partner, strawberry.lazy("schema.partners")] | None
    errors: list[PartnerError]


@strawberry.input(description="The user's role in one organization: name the customer or the partner.")
class MemberRoleUpdateInput:
    user_id: strawberry.ID
    role: RoleType
    customer_id: strawberry.ID | None = None
    partner_id: strawberry.ID | None = None


@strawberry.type
class MemberRoleUpdatePayload:
    membership: Annotated[Membership, strawberry.lazy("schema.accounts")] | None
    errors: list[CustomerError]


@strawberry.input(description="Only the fields sent change.")
class TeamMemberUpdateInput:
    customer_id: strawberry.ID
    user_id: strawberry.ID
    first_name: str | None = strawberry.UNSET
    last_name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET


@strawberry.type
class TeamMemberUpdatePayload:
    user: Annotated[User, strawberry.lazy("schema.accounts")] | None
    errors: list[CustomerError]


@strawberry.type
class TeamMutations:
    @strawberry.mutation(
        description="Partner staff or the customer's admins: emails an invitation to the customer's team (it takes "
        "a seat until accepted, revoked or expired; inviting the same address again re-sends it)."
    )
    async def team_member_invite(self, info: Info, input: TeamMemberInviteInput) -> TeamMemberInvitePayload:
        outcome = await perform(info.context, services.team_member_invite, input, TeamMemberInvite)
        return TeamMemberInvitePayload(
            invitation=Invitation.maybe(outcome.value), errors=CustomerError.list(outcome.errors)
        )

    @strawberry.mutation(description="Partner admins: emails an invitation to the partner's staff.")
    async def partner_member_invite(self, info: Info, input: PartnerMemberInviteInput) -> PartnerMemberInvitePayload:
        outcome = await perform(info.context, services.partner_member_invite, input, PartnerMemberInvite)
        return PartnerMemberInvitePayload(
            invitation=Invitation.maybe(outcome.value), errors=PartnerError.list(outcome.errors)
        )

    @strawberry.mutation(description="Accepts an emailed invitation (signed in or not).")
    async def team_member_invite_accept(
        self, info: Info, input: TeamMemberInviteAcceptInput
    ) -> TeamMemberInviteAcceptPayload:
        outcome = await perform(info.context, services.team_member_invite_accept, input, TeamMemberInviteAccept)
        accepted = outcome.value
        if accepted is not None:
            info.context.reset_loaders()  # the new membership is part of what the viewer may now see
        return TeamMemberInviteAcceptPayload(
            user=maybe_view(accepted.user) if accepted else None,
            membership=maybe_view(accepted.membership) if accepted else None,
            errors=CustomerError.list(outcome.errors),
        )

    @strawberry.mutation(description="Withdraws a pending invitation: its link stops working and its seat frees up.")
    async def invitation_revoke(self, info: Info, input: InvitationRevokeInput) -> InvitationRevokePayload:
        outcome = await perform(info.context, services.invitation_revoke, input, InvitationRevoke)
        return InvitationRevokePayload(
            invitation=Invitation.maybe(outcome.value), errors=CustomerError.list(outcome.errors)
        )

    @strawberry.mutation(
        description="Partner staff or the customer's admins: takes a user off the team (never its last admin)."
    )
    async def team_member_remove(self, info: Info, input: TeamMemberRemoveInput) -> TeamMemberRemovePayload:
        outcome = await perform(info.context, services.team_member_remove, input, TeamMemberRemove)
        return TeamMemberRemovePayload(customer=maybe_view(outcome.value), errors=CustomerError.list(outcome.errors))

    @strawberry.mutation(description="Partner admins: takes a user off the partner's staff (never its last admin).")
    async def partner_member_remove(self, info: Info, input: PartnerMemberRemoveInput) -> PartnerMemberRemovePayload:
        outcome = await perform(info.context, services.partner_member_remove, input, PartnerMemberRemove)
        return PartnerMemberRemovePayload(partner=maybe_view(outcome.value), errors=PartnerError.list(outcome.errors))

    @strawberry.mutation(description="Changes a user's role in a customer or a partner; the last admin stays one.")
    async def member_role_update(self, info: Info, input: MemberRoleUpdateInput) -> MemberRoleUpdatePayload:
        outcome = await perform(info.context, services.member_role_update, input, MemberRoleUpdate)
        return MemberRoleUpdatePayload(membership=maybe_view(outcome.value), errors=CustomerError.list(outcome.errors))

    @strawberry.mutation(
        description="Partner admins: edit a client user's name, email and phone (not for people who also belong "
        "to organizations of others)."
    )
    async def team_member_update(self, info: Info, input: TeamMemberUpdateInput) -> TeamMemberUpdatePayload:
        outcome = await perform(info.context, services.team_member_update, input, TeamMemberUpdate)
        return TeamMemberUpdatePayload(user=maybe_view(outcome.value), errors=CustomerError.list(outcome.errors))
