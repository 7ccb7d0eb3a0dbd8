"""The write operations on accounts, as typed commands (see domain/common/commands.py): sign-in, sessions and
organizations (domain/accounts/services.py), a signed-in user's own settings (domain/accounts/settings.py) and
email changes (domain/accounts/email_change.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from domain.accounts.models import Theme
from domain.common.commands import CustomerId, PartnerId


@dataclass(frozen=True, slots=True)
class Login:
    login: str  # email or username
    password: str
    totp_code: str | None = None
    recovery_code: str | None = None


@dataclass(frozen=True, slots=True)
class Logout:
    """Ends the viewer's own session: nothing to say beyond who asks."""


@dataclass(frozen=True, slots=True)
class OrganizationSwitch:
    """The organization to act in: a partner, a customer, or (neither) the platform."""

    partner_id: PartnerId | None = None
    customer_id: CustomerId | None = None


@dataclass(frozen=True, slots=True)
class OrganizationCreate:
    name: str


@dataclass(frozen=True, slots=True)
class AdminCreate:
    """A platform admin (the CLI's `admin create`)."""

    email: str
    password: str


# ---------------------------------------------------------------- personal settings


@dataclass(frozen=True, slots=True)
class MeUpdate:
    """The signed-in user's profile; None leaves a field as it is."""

    display_name: str | None = None
    theme: Theme | None = None
    # preference name → on/off, as the client sent it: any JSON may arrive, the service checks it (`object` rather
    # than JsonValue, whose string alias cannot be evaluated outside domain/common/json.py by `to_command`)
    notification_preferences: object = None


@dataclass(frozen=True, slots=True)
class PasswordChange:
    current_password: str
    new_password: str
    new_password_confirmation: str


@dataclass(frozen=True, slots=True)
class TotpSetup:
    """Starts two-factor set-up for the signed-in user: nothing to say beyond who asks."""


@dataclass(frozen=True, slots=True)
class TotpEnable:
    code: str  # from the authenticator app set up by TotpSetup


@dataclass(frozen=True, slots=True)
class TotpDisable:
    """Proof of the second factor: a current authenticator code or, failing that, the password."""

    code: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class TotpRecoveryCodesGenerate:
    """The same proof as TotpDisable."""

    code: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class EmailChangeRequest:
    new_email: str
    password: str


@dataclass(frozen=True, slots=True)
class EmailChangeConfirm:
    token: str  # from the emailed link


@dataclass(frozen=True, slots=True)
class AccountDelete:
    password: str


class UploadedFile(Protocol):
    """An uploaded file, read by the service (Starlette's UploadFile is one): only as much as it accepts."""

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True, slots=True)
class AvatarUpload:
    file: UploadedFile
