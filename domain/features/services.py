"""A customer's Features & Add-ons (seed 000): reading them, and the one place that decides which changes are allowed.

The rules, all in `REQUIREMENTS`, `SECTION_NEEDS` and `_refusals()`:

- a toggle that needs another (`REQUIREMENTS`) cannot be turned on while that one is off (REQUIRES_FEATURE), and is
  switched off with it; so is every portal section when the portal goes off, and the API Keys section with API
  access;
- pricing stays hidden while AI credits are on (`set_ai_credits` hides it when credits go on);
- the portal can only be turned on for an active customer (NOT_ELIGIBLE);
- the team-member limit is a count ≥ 0 and not below the customer's current team; the low-credit threshold is a
  Decimal ≥ 0 (or null), kept with the billing preferences that the credit meter and the alert read.

A refused change keeps nothing; an accepted one reports the dependants it switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tortoise.transactions import in_transaction

from domain.accounts.models import Membership
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.billing.models import BillingPreferences
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode, FieldError
from domain.events import services as events
from domain.features.models import FeatureToggles, PortalSection
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff

SWITCHES = (
    "portal_enabled",
    "advanced_analytics",
    "detailed_call_analysis",
    "action_point_analysis",
    "api_access",
    "api_keys_menu",
    "ai_credits_enabled",
    "low_credit_notifications",
    "show_pricing",
    "embed_urls_enabled",
    "team_members_enabled",
)
TOGGLE_FIELDS = (*SWITCHES, "portal_sections", "max_team_members")
# Switching one of these off must end live access at once (API keys, embed tokens, portal sessions re-check).
ACCESS_SWITCHES = ("api_access", "embed_urls_enabled", "portal_enabled")
MAX_TEAM_MEMBERS = 100_000
THRESHOLD_PLACES = Decimal("0.000001")  # as stored (DecimalField(20, 6)), so 100 and 100.000000 are no change


@dataclass(frozen=True, slots=True)
class Requires:
    """`field` can be on only while `needs` is on; switching `needs` off switches `field` off."""

    field: str
    needs: str
    message: str


REQUIREMENTS = (
    Requires("api_keys_menu", "api_access", "The API Keys menu needs API access."),
    Requires("embed_urls_enabled", "portal_enabled", "Embed URLs need customer portal access."),
    Requires("team_members_enabled", "portal_enabled", "Team members need customer portal access."),
    Requires("low_credit_notifications", "ai_credits_enabled", "Low-credit notifications need AI credits."),
)
# Every section is part of the customer portal; the API Keys section also needs API access.
SECTION_NEEDS: dict[PortalSection, tuple[str, ...]] = {
    **{section: ("portal_enabled",) for section in PortalSection},
    PortalSection.API_KEYS: ("portal_enabled", "api_access"),
}
_NEED_NAMES = {"portal_enabled": "customer portal access", "api_access": "API access"}


# ---------------------------------------------------------------- reads


async def toggles_of(customer_ids: list[int]) -> dict[int, FeatureToggles]:
    """Stored toggles, or unsaved defaults for customers never configured."""
    found = {row.customer_id: row for row in await FeatureToggles.filter(customer_id__in=customer_ids)}
    return {cid: found.get(cid) or FeatureToggles(customer_id=cid) for cid in customer_ids}


@dataclass(frozen=True, slots=True)
class FeatureState:
    """What the Features & Add-ons editor shows for one customer."""

    customer_id: int
    toggles: FeatureToggles
    low_credit_threshold: Decimal | None

    @property
    def portal_sections(self) -> list[PortalSection]:
        return _sections(self.toggles.portal_sections)


async def feature_states(customer_ids: list[int]) -> dict[int, FeatureState]:
    """Feature states of many customers in two queries (DataLoader batch)."""
    toggles = await toggles_of(customer_ids)
    thresholds = dict(
        await BillingPreferences.filter(customer_id__in=customer_ids).values_list("customer_id", "low_credit_threshold")
    )
    return {cid: FeatureState(cid, toggles[cid], thresholds.get(cid)) for cid in customer_ids}


def _sections(values: Any) -> list[PortalSection]:
    """Known sections in canonical order (stored lists may predate a section's removal)."""
    present = {str(v) for v in values or []}
    return [s for s in PortalSection if s.value in present]


# ---------------------------------------------------------------- writes


async def set_ai_credits(customer_id: int, enabled: bool) -> FeatureToggles:
    """Switches credits-based charging; pricing display is disabled while credits are on (seed 000)."""
    await FeatureToggles.bulk_create([FeatureToggles(customer_id=customer_id)], ignore_conflicts=True)
    await FeatureToggles.filter(customer_id=customer_id).update(
        ai_credits_enabled=enabled, **({"show_pricing": False} if enabled else {})
    )
    return await FeatureToggles.get(customer_id=customer_id)


@dataclass(frozen=True, slots=True)
class FeaturesUpdated:
    state: FeatureState
    # Python names of the toggles this change switched off without being asked to, in `TOGGLE_FIELDS` order.
    switched_off: list[str]


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    """The sent fields, checked for shape (INVALID); rules that depend on the stored state come later."""
    v = Validator()
    wanted: dict[str, Any] = {}
    for name in SWITCHES:
        if name in data:
            if isinstance(data[name], bool):
                wanted[name] = data[name]
            else:
                v.add(name, "Must be true or false.")
    if "max_team_members" in data:
        value = data["max_team_members"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TEAM_MEMBERS:
            v.add("max_team_members", f"Must be a whole number between 0 and {MAX_TEAM_MEMBERS:,}.")
        else:
            wanted["max_team_members"] = value
    if "portal_sections" in data:
        values = data["portal_sections"]
        known = {s.value for s in PortalSection}
        if values is None or any(str(s) not in known for s in values):
            v.add("portal_sections", f"Choose sections among {', '.join(sorted(known))} (an empty list hides all).")
        else:
            wanted["portal_sections"] = _sections(values)
    if "low_credit_threshold" in data:
        raw = data["low_credit_threshold"]
        amount = None if raw is None else parse_amount(v, "low_credit_threshold", raw, allow_zero=True)
        wanted["low_credit_threshold"] = None if amount is None else amount.quantize(THRESHOLD_PLACES)
    v.raise_if_invalid()
    return wanted


def _snapshot(toggles: FeatureToggles, threshold: Decimal | None) -> dict[str, Any]:
    state: dict[str, Any] = {name: getattr(toggles, name) for name in TOGGLE_FIELDS}
    state["portal_sections"] = _sections(toggles.portal_sections)
    state["low_credit_threshold"] = threshold
    return state


def _refusals(
    before: dict[str, Any], target: dict[str, Any], wanted: dict[str, Any], *, team_size: int | None, active: bool
) -> list[FieldError]:
    """What the requested change breaks, judged on the state it would leave (`target`, before any cascade).

    A value the request sends is checked even when it is already stored: asking for a dependant while switching
    off what it needs is a contradiction, not a cascade."""
    errors: list[FieldError] = []
    if target["portal_enabled"] and not before["portal_enabled"] and not active:
        message = "The customer is disabled: enable it before giving it portal access."
        errors.append(FieldError("portal_enabled", message, ErrorCode.NOT_ELIGIBLE))
    for rule in REQUIREMENTS:
        if wanted.get(rule.field) is True and not target[rule.needs]:
            errors.append(FieldError(rule.field, rule.message, ErrorCode.REQUIRES_FEATURE))
    for section in wanted.get("portal_sections", []):
        missing = [_NEED_NAMES[n] for n in SECTION_NEEDS[section] if not target[n]]
        if missing:
            message = f"The {section.value} section needs {' and '.join(missing)}."
            errors.append(FieldError("portal_sections", message, ErrorCode.REQUIRES_FEATURE))
    if wanted.get("show_pricing") is True and target["ai_credits_enabled"]:
        errors.append(FieldError("show_pricing", "Pricing is hidden while AI credits are enabled.", ErrorCode.INVALID))
    limit = wanted.get("max_team_members")
    if team_size is not None and limit is not None and limit < team_size:
        message = f"The customer already has {team_size} team members; remove some before lowering the limit."
        errors.append(FieldError("max_team_members", message, ErrorCode.INVALID))
    return errors


def _switch_off_dependants(target: dict[str, Any]) -> None:
    """Turns off whatever `target` leaves without what it needs (one pass: no rule needs a dependant)."""
    for rule in REQUIREMENTS:
        if target[rule.field] and not target[rule.needs]:
            target[rule.field] = False
    target["portal_sections"] = [s for s in target["portal_sections"] if all(target[need] for need in SECTION_NEEDS[s])]


def _turned_off(before: dict[str, Any], after: dict[str, Any], name: str) -> bool:
    if name == "portal_sections":
        return bool(set(before[name]) - set(after[name]))
    return name in SWITCHES and before[name] and not after[name]


async def _lock_toggles(customer_id: int) -> FeatureToggles:
    await FeatureToggles.bulk_create([FeatureToggles(customer_id=customer_id)], ignore_conflicts=True)
    return await FeatureToggles.select_for_update().get(customer_id=customer_id)


async def customer_features_update(viewer: Viewer, customer_id: int, data: dict[str, Any]) -> FeaturesUpdated:
    """Partial update of a customer's features by its partner's admins (or platform admins).

    Refused whole when a rule forbids any part of it; otherwise switches off the dependants the change leaves
    without what they need, audits before/after, and tells live connections to re-check access.
    """
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    require_partner_staff(viewer, admin=True)
    wanted = _clean(data)

    async with in_transaction():
        toggles = await _lock_toggles(customer.id)
        prefs: BillingPreferences | None = None
        if "low_credit_threshold" in wanted:
            await BillingPreferences.bulk_create([BillingPreferences(customer_id=customer.id)], ignore_conflicts=True)
            prefs = await BillingPreferences.select_for_update().get(customer_id=customer.id)
            threshold = prefs.low_credit_threshold
        else:
            stored = await BillingPreferences.filter(customer_id=customer.id).values_list(
                "low_credit_threshold", flat=True
            )
            threshold = stored[0] if stored else None
        before = _snapshot(toggles, threshold)

        if "ai_credits_enabled" in wanted and wanted["ai_credits_enabled"] != toggles.ai_credits_enabled:
            toggles = await set_ai_credits(customer.id, wanted["ai_credits_enabled"])
        target = _snapshot(toggles, threshold) | wanted

        team_size = await _team_size_if_lowered(customer.id, before, wanted)
        errors = _refusals(before, target, wanted, team_size=team_size, active=customer.status == CustomerStatus.ACTIVE)
        if errors:
            raise DomainError(errors)  # rolls back `set_ai_credits` too
        _switch_off_dependants(target)

        for name in TOGGLE_FIELDS:
            setattr(toggles, name, target[name])
        toggles.portal_sections = [s.value for s in target["portal_sections"]]
        if prefs is not None:
            prefs.low_credit_threshold = target["low_credit_threshold"]
        diff = changes(_plain(before), _plain(target))
        switched_off = [name for name in TOGGLE_FIELDS if name not in wanted and _turned_off(before, target, name)]
        if diff:
            await toggles.save()
            if prefs is not None and "low_credit_threshold" in diff:
                await prefs.save(update_fields=["low_credit_threshold", "updated_at"])
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "customer_features.update",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={"changes": diff, "switched_off": switched_off},
            )
            if any(before[name] and not target[name] for name in ACCESS_SWITCHES):
                await events.emit(events.ACCESS_REVOKED, customer_id=customer.id, partner_id=customer.partner_id)
    return FeaturesUpdated(FeatureState(customer.id, toggles, target["low_credit_threshold"]), switched_off)


async def _team_size_if_lowered(customer_id: int, before: dict[str, Any], wanted: dict[str, Any]) -> int | None:
    """The customer's team size, counted only when the request lowers the limit (the only time it matters)."""
    limit = wanted.get("max_team_members")
    if limit is None or limit >= before["max_team_members"]:
        return None
    return await Membership.filter(customer_id=customer_id).count()


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly values for the audit diff."""
    out = dict(state)
    out["portal_sections"] = [s.value for s in state["portal_sections"]]
    if out["low_credit_threshold"] is not None:
        out["low_credit_threshold"] = str(Decimal(out["low_credit_threshold"]).quantize(THRESHOLD_PLACES))
    return out
