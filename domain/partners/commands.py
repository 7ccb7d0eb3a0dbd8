"""The write operations on partners, as typed commands (see domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.accounts.commands import UploadedFile
from domain.common.commands import UNSET, PartnerId, Patch
from domain.usage.rating import RateChange


@dataclass(frozen=True, slots=True)
class PartnerCreate:
    """A partner and its first PARTNER_ADMIN (the owner)."""

    name: str
    owner_email: str
    owner_password: str
    owner_name: str | None = None  # "First Last"
    sender_email: str | None = None


@dataclass(frozen=True, slots=True)
class PartnerBranding:
    """The white-label look; only the fields sent change (a colour cannot be cleared; a null logo, welcome message,
    sender name or sender email removes it)."""

    logo: Patch[UploadedFile | None] = UNSET
    primary_color: Patch[str | None] = UNSET
    secondary_color: Patch[str | None] = UNSET
    welcome_message: Patch[str | None] = UNSET
    sender_name: Patch[str | None] = UNSET
    sender_email: Patch[str | None] = UNSET


@dataclass(frozen=True, slots=True)
class PartnerUpdate:
    """Only the fields sent change; null `branding` or `rate_card` change nothing, and unit types left out of the
    rate card keep their prices."""

    partner_id: PartnerId
    name: Patch[str | None] = UNSET
    sender_email: Patch[str | None] = UNSET
    branding: Patch[PartnerBranding | None] = UNSET
    rate_card: Patch[list[RateChange] | None] = UNSET
    domains: Patch[list[str] | None] = UNSET  # the complete list, in order: links use the first verified one


@dataclass(frozen=True, slots=True)
class PartnerDomainVerify:
    """Checks the domain's DNS TXT record now (the job also checks every few minutes)."""

    partner_id: PartnerId
    domain: str
