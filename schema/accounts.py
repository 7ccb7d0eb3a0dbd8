"""Users, memberships, organizations and sign-in."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay
from strawberry.file_uploads import Upload

from domain.accounts import services
from domain.accounts import settings as personal
from domain.accounts.commands import (
    AccountDelete,
    AvatarUpload,
    EmailChangeConfirm,
    EmailChangeRequest,
    Login,
    Logout,
    MeUpdate,
    OrganizationCreate,
    PasswordChange,
    TotpDisable,
    TotpEnable,
    TotpRecoveryCodesGenerate,
    TotpSetup,
)
from domain.accounts.models import Membership as MembershipRow
from domain.accounts.models import Role as DomainRole
from domain.accounts.models import Theme as DomainTheme
from domain.accounts.models import User as UserRow
from resolvers import accounts as r
from resolvers.commands import perform, to_command
from schema.common import Info
from schema.errors import AccountError
from schema.nodes import ModelNode, maybe_view, shows
from schema.scalars import JSON

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


@shows(MembershipRow)
@strawberry.type
class Membership(ModelNode):
    loader = "membership_by_id"
    id: relay.NodeID[int]
    role: Role  # type: ignore[valid-type]
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field
    async def partner(self, info: Info) -> Annotated[Partner, strawberry.lazy("schema.partners")] | None:
        if self.model.partner_id is None:
            return None
        return maybe_view(await info.context.loaders.partner_by_id.load(self.model.partner_id))

    @strawberry.field
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        if self.model.customer_id is None:
            return None
        return maybe_view(await info.context.loaders.customer_by_id.load(self.model.customer_id))


@shows(UserRow)
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
    avatar_url: str | None = strawberry.field(description="URL of the profile image, if one was uploaded.")
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field(
        description="Email notifications the signed-in user receives, name → on/off (null for other users)."
    )
    def notification_preferences(self, info: Info) -> JSON | None:
        if info.context.viewer.user_id != self.id:
            return None
        return JSON(r.notification_preferences(self.model))

    @strawberry.field(description="Whether sign-in asks for an authenticator code (null for other users).")
    def totp_enabled(self, info: Info) -> bool | None:
        if info.context.viewer.user_id != self.id:
            return None
        return bool(self.model.totp_enabled)

    @strawberry.field(description="Unused recovery codes of the signed-in user (null for other users).")
    async def totp_recovery_codes_left(self, info: Info) -> int | None:
        if info.context.viewer.user_id != self.id:
            return None
        return await r.totp_recovery_codes_left(self.model)

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
    totp_code: str | None = strawberry.field(
        default=None, description="With 2FA on: the current authenticator code (each code works once)."
    )
    recovery_code: str | None = strawberry.field(
        default=None, description="With 2FA on, instead of totpCode: an unused recovery code (it is then spent)."
    )


@strawberry.type
class LoginPayload:
    token: str | None = strawberry.field(description="Send as `Authorization: Bearer <token>`.")
    expires_at: datetime | None
    user: User | None
    retry_after: int | None = strawberry.field(
        description="With RATE_LIMITED: seconds until the next attempt is looked at."
    )
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


@strawberry.input
class MeUpdateInput:
    display_name: str | None = None
    theme: Theme | None = None  # type: ignore[valid-type]
    notification_preferences: JSON | None = strawberry.field(
        default=None,
        description="Preferences to change, name → true/false: assignedConversations, assignedTickets, "
        "assignedConversationNotes, assignedReminders, assignedInquiries.",
    )


@strawberry.type
class MeUpdatePayload:
    user: User | None
    errors: list[AccountError]


@strawberry.input
class PasswordChangeInput:
    current_password: str
    new_password: str
    new_password_confirmation: str


@strawberry.type
class PasswordChangePayload:
    revoked_sessions: int | None = strawberry.field(description="How many of your other sessions were signed out.")
    errors: list[AccountError]


@strawberry.input
class TotpSetupInput:
    client_mutation_id: str | None = None


@strawberry.type
class TotpSetupPayload:
    secret: str | None = strawberry.field(description="Base32 secret, for typing into an authenticator app.")
    otpauth_uri: str | None = strawberry.field(description="`otpauth://` URI to show as a QR code.")
    errors: list[AccountError]


@strawberry.input
class TotpEnableInput:
    code: str


@strawberry.input
class TotpDisableInput:
    code: str | None = strawberry.field(default=None, description="A current authenticator code, or:")
    password: str | None = strawberry.field(default=None, description="your password.")


@strawberry.type
class TotpPayload:
    user: User | None
    recovery_codes: list[str] | None = strawberry.field(
        default=None,
        description="From totpEnable: ten single-use codes that stand in for an authenticator code, shown once.",
    )
    errors: list[AccountError]


@strawberry.input
class TotpRecoveryCodesGenerateInput:
    code: str | None = strawberry.field(default=None, description="A current authenticator code, or:")
    password: str | None = strawberry.field(default=None, description="your password.")


@strawberry.type
class TotpRecoveryCodesGeneratePayload:
    recovery_codes: list[str] | None = strawberry.field(
        description="Ten new single-use codes, shown once; the earlier ones no longer work."
    )
    user: User | None
    errors: list[AccountError]


@strawberry.input
class EmailChangeRequestInput:
    new_email: str
    password: str


@strawberry.type
class EmailChangeRequestPayload:
    new_email: str | None = strawberry.field(description="Where the confirmation link was sent.")
    errors: list[AccountError]


@strawberry.input
class EmailChangeConfirmInput:
    token: str


@strawberry.type
class EmailChangeConfirmPayload:
    user: User | None
    errors: list[AccountError]


@strawberry.input
class AccountDeleteInput:
    password: str


@strawberry.type
class AccountDeletePayload:
    ok: bool
    errors: list[AccountError]


@strawberry.input
class AvatarUploadInput:
    file: Upload = strawberry.field(description="A JPG, PNG or GIF of at most 512 KB (multipart request).")


@strawberry.type
class AvatarUploadPayload:
    user: User | None
    errors: list[AccountError]


@strawberry.type
class AccountQueries:
    @strawberry.field(description="The signed-in user, or null.")
    async def me(self, info: Info) -> User | None:
        return User.maybe(await r.me(info.context))


@strawberry.type
class AccountMutations:
    @strawberry.mutation(
        description="Signs in with email or username. Too many attempts answer RATE_LIMITED with retryAfter."
    )
    async def login(self, info: Info, input: LoginInput) -> LoginPayload:
        outcome, retry_after = await r.login(info.context, to_command(input, Login))
        result = outcome.value
        return LoginPayload(
            token=result.token if result else None,
            expires_at=result.session.expires_at if result else None,
            user=User.from_model(result.user) if result else None,
            retry_after=retry_after,
            errors=AccountError.list(outcome.errors),
        )

    @strawberry.mutation(description="Revokes the current session token.")
    async def logout(self, info: Info, input: LogoutInput | None = None) -> LogoutPayload:
        outcome = await perform(info.context, services.logout, input, Logout)
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
        outcome = await r.organization_create(info.context, to_command(input, OrganizationCreate))
        return OrganizationCreatePayload(
            organization=Organization.of(outcome.value) if outcome.value else None,
            errors=AccountError.list(outcome.errors),
        )

    @strawberry.mutation(description="Changes your display name, theme and email notification preferences.")
    async def me_update(self, info: Info, input: MeUpdateInput) -> MeUpdatePayload:
        outcome = await r.change_me(info.context, personal.me_update, input, MeUpdate)
        return MeUpdatePayload(user=User.maybe(outcome.value), errors=AccountError.list(outcome.errors))

    @strawberry.mutation(description="Changes your password and signs out your other sessions.")
    async def password_change(self, info: Info, input: PasswordChangeInput) -> PasswordChangePayload:
        outcome = await perform(info.context, personal.password_change, input, PasswordChange)
        return PasswordChangePayload(revoked_sessions=outcome.value, errors=AccountError.list(outcome.errors))

    @strawberry.mutation(description="Starts two-factor set-up: a new secret, on once totpEnable confirms a code.")
    async def totp_setup(self, info: Info, input: TotpSetupInput | None = None) -> TotpSetupPayload:
        outcome = await perform(info.context, personal.totp_setup, input, TotpSetup)
        setup = outcome.value
        return TotpSetupPayload(
            secret=setup.secret if setup else None,
            otpauth_uri=setup.otpauth_uri if setup else None,
            errors=AccountError.list(outcome.errors),
        )

    @strawberry.mutation(
        description="Turns two-factor sign-in on with a code from the app set up by totpSetup; answers recovery codes."
    )
    async def totp_enable(self, info: Info, input: TotpEnableInput) -> TotpPayload:
        outcome = await r.change_me(info.context, personal.totp_enable, input, TotpEnable)
        enabled = outcome.value
        return TotpPayload(
            user=User.from_model(enabled.user) if enabled else None,
            recovery_codes=enabled.codes if enabled else None,
            errors=AccountError.list(outcome.errors),
        )

    @strawberry.mutation(
        description="Replaces your recovery codes with ten new ones, given a current authenticator code or your "
        "password."
    )
    async def totp_recovery_codes_generate(
        self, info: Info, input: TotpRecoveryCodesGenerateInput
    ) -> TotpRecoveryCodesGeneratePayload:
        outcome = await perform(info.context, personal.totp_recovery_codes_generate, input, TotpRecoveryCodesGenerate)
        generated = outcome.value
        return TotpRecoveryCodesGeneratePayload(
            recovery_codes=generated.codes if generated else None,
            user=User.from_model(generated.user) if generated else None,
            errors=AccountError.list(outcome.errors),
        )

    @strawberry.mutation(description="Turns two-factor sign-in off, given a current code or your password.")
    async def totp_disable(self, info: Info, input: TotpDisableInput) -> TotpPayload:
        outcome = await r.change_me(info.context, personal.totp_disable, input, TotpDisable)
        return TotpPayload(user=User.maybe(outcome.value), errors=AccountError.list(outcome.errors))

    @strawberry.mutation(description="Emails a confirmation link (valid 24 hours) to the new address.")
    async def email_change_request(self, info: Info, input: EmailChangeRequestInput) -> EmailChangeRequestPayload:
        outcome = await perform(info.context, personal.email_change_request, input, EmailChangeRequest)
        return EmailChangeRequestPayload(new_email=outcome.value, errors=AccountError.list(outcome.errors))

    @strawberry.mutation(description="Confirms an email change with the token from the emailed link.")
    async def email_change_confirm(self, info: Info, input: EmailChangeConfirmInput) -> EmailChangeConfirmPayload:
        outcome = await r.change_me(info.context, personal.email_change_confirm, input, EmailChangeConfirm)
        return EmailChangeConfirmPayload(user=User.maybe(outcome.value), errors=AccountError.list(outcome.errors))

    @strawberry.mutation(
        description="Deletes your account: you lose access to every organization; refused for a last admin."
    )
    async def account_delete(self, info: Info, input: AccountDeleteInput) -> AccountDeletePayload:
        outcome = await perform(info.context, personal.account_delete, input, AccountDelete)
        return AccountDeletePayload(ok=not outcome.errors, errors=AccountError.list(outcome.errors))

    @strawberry.mutation(description="Sets your profile image (JPG, PNG or GIF, checked by content; at most 512 KB).")
    async def avatar_upload(self, info: Info, input: AvatarUploadInput) -> AvatarUploadPayload:
        outcome = await r.change_me(info.context, personal.avatar_upload, input, AvatarUpload)
        return AvatarUploadPayload(user=User.maybe(outcome.value), errors=AccountError.list(outcome.errors))
