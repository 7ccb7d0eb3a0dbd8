"""The write operations on a customer's portal and branding, as typed commands."""

from __future__ import annotations

from dataclasses import dataclass

from domain.accounts.commands import UploadedFile
from domain.common.commands import UNSET, CustomerId, Patch
from domain.portal.models import CaseVisibility


@dataclass(frozen=True, slots=True)
class CustomerPortalSettingsUpdate:
    """Only the fields sent change; `enabled` is the portal feature toggle, switched through the features rules."""

    customer_id: CustomerId
    enabled: Patch[bool | None] = UNSET
    auto_invite: Patch[bool | None] = UNSET
    chat_enabled: Patch[bool | None] = UNSET
    document_upload: Patch[bool | None] = UNSET
    case_visibility: Patch[CaseVisibility | None] = UNSET


@dataclass(frozen=True, slots=True)
class CustomerBrandingUpdate:
    """The customer's own look over its partner's; only the fields sent change, and null goes back to the
    partner's value."""

    customer_id: CustomerId
    logo: Patch[UploadedFile | None] = UNSET
    primary_color: Patch[str | None] = UNSET
    secondary_color: Patch[str | None] = UNSET
    welcome_message: Patch[str | None] = UNSET
