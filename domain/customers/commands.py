"""The write operations on customers, as typed commands (see domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.common.commands import UNSET, CustomerId, PackageId, PartnerId, Patch


@dataclass(frozen=True, slots=True)
class CustomerCreate:
    """A customer and its first CUSTOMER_ADMIN user; `package_id` assigns a package in the same transaction."""

    username: str
    first_name: str
    last_name: str
    email: str
    password: str
    password_confirmation: str
    company_name: str
    phone: str | None = None
    country: str | None = None
    state: str | None = None
    city: str | None = None
    zip: str | None = None
    address1: str | None = None
    address2: str | None = None
    role: str | None = None  # the admin's role in their company
    partner_id: PartnerId | None = None  # platform admins name the partner
    package_id: PackageId | None = None
    auto_invite: bool = False  # invite the admin to the portal by email (once the portal is on)


@dataclass(frozen=True, slots=True)
class CustomerUpdate:
    """Company details; only the fields sent change."""

    customer_id: CustomerId
    company_name: Patch[str | None] = UNSET
    phone: Patch[str | None] = UNSET
    country: Patch[str | None] = UNSET
    state: Patch[str | None] = UNSET
    city: Patch[str | None] = UNSET
    zip: Patch[str | None] = UNSET
    address1: Patch[str | None] = UNSET
    address2: Patch[str | None] = UNSET


@dataclass(frozen=True, slots=True)
class CustomerDisable:
    customer_id: CustomerId


@dataclass(frozen=True, slots=True)
class CustomerEnable:
    customer_id: CustomerId
