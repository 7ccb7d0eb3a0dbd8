"""The write operation on a customer's Features & Add-ons, as a typed command (see domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.common.commands import UNSET, CustomerId, Patch
from domain.features.models import PortalSection


@dataclass(frozen=True, slots=True)
class CustomerFeaturesUpdate:
    """A partial change of a customer's features: only the fields sent change (None is refused for the switches,
    the sections and the team limit; it removes the low-credit threshold)."""

    customer_id: CustomerId
    portal_enabled: Patch[bool | None] = UNSET
    advanced_analytics: Patch[bool | None] = UNSET
    detailed_call_analysis: Patch[bool | None] = UNSET
    action_point_analysis: Patch[bool | None] = UNSET
    api_access: Patch[bool | None] = UNSET
    api_keys_menu: Patch[bool | None] = UNSET
    ai_credits_enabled: Patch[bool | None] = UNSET
    low_credit_notifications: Patch[bool | None] = UNSET
    low_credit_threshold: Patch[Decimal | None] = UNSET
    show_pricing: Patch[bool | None] = UNSET
    portal_sections: Patch[list[PortalSection] | None] = UNSET  # the complete list to show
    embed_urls_enabled: Patch[bool | None] = UNSET
    team_members_enabled: Patch[bool | None] = UNSET
    max_team_members: Patch[int | None] = UNSET
