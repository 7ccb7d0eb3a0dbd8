"""The write operations on agency packages, as typed commands (see domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from domain.access.models import ApiTier
from domain.common.commands import UNSET, CustomerId, PackageId, PartnerId, Patch
from domain.packages.models import FeatureKey


@dataclass(frozen=True, slots=True)
class PackageLimits:
    """Caps a package sets; only those sent change (on update). A null spending cap means none is applied."""

    storage_mb: Patch[int | None] = UNSET
    api_rate_tier: Patch[ApiTier | None] = UNSET
    monthly_spending_cap: Patch[Decimal | None] = UNSET


@dataclass(frozen=True, slots=True)
class PackageCreate:
    """A new package (version 1); platform admins name the partner."""

    title: str
    description: Patch[str | None] = UNSET
    features: list[FeatureKey] = field(default_factory=list)
    user_count: Patch[int | None] = UNSET  # users a client may have (its seat limit); not sent: 5
    limits: Patch[PackageLimits | None] = UNSET  # null or not sent: the defaults
    ai_credits: Patch[Decimal | None] = UNSET
    expiry_days: Patch[int | None] = UNSET
    restricted_emails: Patch[list[str] | None] = UNSET
    partner_id: PartnerId | None = None


@dataclass(frozen=True, slots=True)
class PackageUpdate:
    """A partial change of a package: only the fields sent change."""

    package_id: PackageId
    title: Patch[str | None] = UNSET
    description: Patch[str | None] = UNSET
    features: Patch[list[FeatureKey] | None] = UNSET
    user_count: Patch[int | None] = UNSET
    limits: Patch[PackageLimits | None] = UNSET  # null: no limit changes
    ai_credits: Patch[Decimal | None] = UNSET
    expiry_days: Patch[int | None] = UNSET
    restricted_emails: Patch[list[str] | None] = UNSET


@dataclass(frozen=True, slots=True)
class PackageArchive:
    package_id: PackageId


@dataclass(frozen=True, slots=True)
class PackageAssign:
    """Applies a package to a customer; a repeat with the same key returns the first outcome."""

    customer_id: CustomerId
    package_id: PackageId
    idempotency_key: str
