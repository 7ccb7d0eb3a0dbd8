"""A customer's Features & Add-ons (seed 000): reading them, and the one place that decides which changes are allowed.

The rules, all in `REQUIREMENTS`, `SECTION_NEEDS`, domain/features/eligibility.py and `_refusals()`:

- the package in force decides eligibility: the portal, AI credits, team members, embed URLs and the knowledge-base
  section can be switched on only while it includes them, and never for a disabled customer (NOT_ELIGIBLE, the
  message naming what is missing); the four add-ons may go beyond it;
- a toggle that needs another (`REQUIREMENTS`) cannot be turned on while that one is off (REQUIRES_FEATURE), and is
  switched off with it; so is every portal section when the portal goes off, and the API Keys section with API
  access;
- pricing stays hidden while AI credits are on (`set_ai_credits` hides it when credits go on);
- the team-member limit is a count ≥ 0 and not below the customer's current team; the low-credit threshold is a
  Decimal ≥ 0 (or null), kept with the billing preferences that the credit meter and the alert read.

A refused change keeps nothing; an accepted one reports the dependants it switched off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.billing.models import BillingPreferences
from domain.common.commands import UNSET, Patch
from domain.common.json import JsonObject
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode, FieldError
from domain.events import services as events
from domain.features import eligibility
from domain.features.commands import CustomerFeaturesUpdate
from domain.features.eligibility import PackageInForce
from domain.features.models import FeatureToggles, PortalSection
from domain.packages.models import FeatureKey
from domain.portal.invites import invite_if_due
from domain.team.seats import seats_taken
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
    package: PackageInForce | None

    @property
    def portal_sections(self) -> list[PortalSection]:
        return _sections(self.toggles.portal_sections)

    @property
    def add_ons(self) -> list[FeatureKey]:
        """Add-ons switched on beyond the package in force."""
        return eligibility.add_ons(self.toggles, self.package)


async def feature_states(customer_ids: list[int]) -> dict[int, FeatureState]:
    """Feature states of many customers in three queries (DataLoader batch)."""
    toggles = await toggles_of(customer_ids)
    thresholds = dict(
        await BillingPreferences.filter(customer_id__in=customer_ids).values_list("customer_id", "low_credit_threshold")
    )
    packages = await eligibility.packages_in_force(customer_ids)
    return {cid: FeatureState(cid, toggles[cid], thresholds.get(cid), packages.get(cid)) for cid in customer_ids}


def _sections(values: Iterable[str] | None) -> list[PortalSection]:
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
    # Python names of the toggles this change switched off without being asked to: switches in `SWITCHES` order,
    # then "portal_sections".
    switched_off: list[str]


@dataclass(frozen=True, slots=True)
class _Change:
    """A command's sent values, checked for shape; UNSET (or absent from `switches`) where nothing was sent."""

    switches: dict[str, bool]
    portal_sections: Patch[list[PortalSection]]
    max_team_members: Patch[int]
    low_credit_threshold: Patch[Decimal | None]


@dataclass(slots=True)
class _Values:
    """Every value the editor changes: the stored state, or the one a change would leave."""

    switches: dict[str, bool]  # every one of SWITCHES, by name
    portal_sections: list[PortalSection]
    max_team_members: int
    low_credit_threshold: Decimal | None

    @classmethod
    def stored(cls, toggles: FeatureToggles, threshold: Decimal | None) -> _Values:
        switches = {name: bool(getattr(toggles, name)) for name in SWITCHES}
        return cls(switches, _sections(toggles.portal_sections), toggles.max_team_members, threshold)

    def changed_by(self, change: _Change) -> _Values:
        """These values with the change's sent ones in their place (before any cascade)."""
        return _Values(
            self.switches | change.switches,
            self.portal_sections if change.portal_sections is UNSET else change.portal_sections,
            self.max_team_members if change.max_team_members is UNSET else change.max_team_members,
            self.low_credit_threshold if change.low_credit_threshold is UNSET else change.low_credit_threshold,
        )

    def audited(self) -> JsonObject:
        """JSON-friendly values for the audit diff: the switches, sections, team limit and threshold, in that order."""
        out: JsonObject = {name: value for name, value in self.switches.items()}
        out["portal_sections"] = [s.value for s in self.portal_sections]
        out["max_team_members"] = self.max_team_members
        threshold = self.low_credit_threshold
        out["low_credit_threshold"] = None if threshold is None else str(Decimal(threshold).quantize(THRESHOLD_PLACES))
        return out


def _clean(command: CustomerFeaturesUpdate) -> _Change:
    """The sent fields, checked for shape (INVALID); rules that depend on the stored state come later."""
    v = Validator()
    switches: dict[str, bool] = {}
    for name in SWITCHES:
        value: Patch[bool | None] = getattr(command, name)
        if value is None:
            v.add(name, "Must be true or false.")
        elif value is not UNSET:
            switches[name] = value
    limit = command.max_team_members
    if limit is None or (limit is not UNSET and not 0 <= limit <= MAX_TEAM_MEMBERS):
        v.add("max_team_members", f"Must be a whole number between 0 and {MAX_TEAM_MEMBERS:,}.")
    sections = command.portal_sections
    if sections is None:
        known = ", ".join(sorted(s.value for s in PortalSection))
        v.add("portal_sections", f"Choose sections among {known} (an empty list hides all).")
    threshold = command.low_credit_threshold
    if threshold is not UNSET and threshold is not None:
        amount = parse_amount(v, "low_credit_threshold", threshold, allow_zero=True)
        threshold = None if amount is None else amount.quantize(THRESHOLD_PLACES)
    v.raise_if_invalid()
    assert limit is not None and sections is not None  # refused above
    return _Change(switches, sections if sections is UNSET else _sections(sections), limit, threshold)


def _ineligible(before: _Values, target: _Values, package: PackageInForce | None, *, active: bool) -> list[FieldError]:
    """What the change switches on that the package in force does not include, or that a disabled customer cannot
    get (NOT_ELIGIBLE). Only what it turns on: a value already on stays on (packages are not retroactive)."""

    def refusal(field: str, feature: FeatureKey) -> FieldError | None:
        message = eligibility.missing_message(package, feature)
        if not active:
            message = f"The customer is disabled: enable it before giving it {eligibility.FEATURE_NAMES[feature]}."
        return FieldError(field, message, ErrorCode.NOT_ELIGIBLE) if message else None

    found = [
        refusal(name, feature)
        for name, feature in eligibility.GATED.items()
        if target.switches[name] and not before.switches[name]
    ] + [
        refusal("portal_sections", feature)
        for section, feature in eligibility.GATED_SECTIONS.items()
        if section in target.portal_sections and section not in before.portal_sections
    ]
    return [e for e in found if e is not None]


def _refusals(
    before: _Values,
    target: _Values,
    change: _Change,
    *,
    team_size: int | None,
    active: bool,
    package: PackageInForce | None,
) -> list[FieldError]:
    """What the requested change breaks, judged on the state it would leave (`target`, before any cascade).

    A value the request sends is checked even when it is already stored: asking for a dependant while switching
    off what it needs is a contradiction, not a cascade."""
    errors = _ineligible(before, target, package, active=active)
    for rule in REQUIREMENTS:
        if change.switches.get(rule.field) is True and not target.switches[rule.needs]:
            errors.append(FieldError(rule.field, rule.message, ErrorCode.REQUIRES_FEATURE))
    for section in change.portal_sections or []:
        missing = [_NEED_NAMES[n] for n in SECTION_NEEDS[section] if not target.switches[n]]
        if missing:
            message = f"The {section.value} section needs {' and '.join(missing)}."
            errors.append(FieldError("portal_sections", message, ErrorCode.REQUIRES_FEATURE))
    if change.switches.get("show_pricing") is True and target.switches["ai_credits_enabled"]:
        errors.append(FieldError("show_pricing", "Pricing is hidden while AI credits are enabled.", ErrorCode.INVALID))
    limit = change.max_team_members
    if team_size is not None and limit is not UNSET and limit < team_size:
        message = (
            f"The customer's team takes {team_size} seats (members and pending invitations); remove some before "
            "lowering the limit."
        )
        errors.append(FieldError("max_team_members", message, ErrorCode.INVALID))
    return errors


def _switch_off_dependants(target: _Values) -> None:
    """Turns off whatever `target` leaves without what it needs (one pass: no rule needs a dependant)."""
    switches = target.switches
    for rule in REQUIREMENTS:
        if switches[rule.field] and not switches[rule.needs]:
            switches[rule.field] = False
    target.portal_sections = [s for s in target.portal_sections if all(switches[need] for need in SECTION_NEEDS[s])]


def _switched_off(before: _Values, after: _Values, change: _Change) -> list[str]:
    """What the change turned off without being asked to (see `FeaturesUpdated.switched_off`)."""
    off = [
        name for name in SWITCHES if name not in change.switches and before.switches[name] and not after.switches[name]
    ]
    if change.portal_sections is UNSET and set(before.portal_sections) - set(after.portal_sections):
        off.append("portal_sections")
    return off


async def _lock_toggles(customer_id: int) -> FeatureToggles:
    await FeatureToggles.bulk_create([FeatureToggles(customer_id=customer_id)], ignore_conflicts=True)
    return await FeatureToggles.select_for_update().get(customer_id=customer_id)


async def customer_features_update(viewer: Viewer, command: CustomerFeaturesUpdate) -> FeaturesUpdated:
    """Partial update of a customer's features by its partner's admins (or platform admins).

    Refused whole when a rule forbids any part of it; otherwise switches off the dependants the change leaves
    without what they need, audits before/after, and tells live connections to re-check access.
    """
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_partner_staff(viewer, admin=True)
    change = _clean(command)

    async with in_transaction():
        toggles = await _lock_toggles(customer.id)
        prefs: BillingPreferences | None = None
        threshold: Decimal | None
        if change.low_credit_threshold is not UNSET:
            await BillingPreferences.bulk_create([BillingPreferences(customer_id=customer.id)], ignore_conflicts=True)
            prefs = await BillingPreferences.select_for_update().get(customer_id=customer.id)
            threshold = prefs.low_credit_threshold
        else:
            stored = await BillingPreferences.filter(customer_id=customer.id).values_list(
                "low_credit_threshold", flat=True
            )
            threshold = stored[0] if stored else None  # type: ignore[assignment]  # Tortoise types flat lists as tuples
        before = _Values.stored(toggles, threshold)

        credits = change.switches.get("ai_credits_enabled")
        if credits is not None and credits != toggles.ai_credits_enabled:
            toggles = await set_ai_credits(customer.id, credits)
        target = _Values.stored(toggles, threshold).changed_by(change)

        team_size = await _team_size_if_changed(customer.id, before, change)
        package = await eligibility.package_in_force(customer.id)
        active = customer.status == CustomerStatus.ACTIVE
        errors = _refusals(before, target, change, team_size=team_size, active=active, package=package)
        if errors:
            raise DomainError(errors)  # rolls back `set_ai_credits` too
        _switch_off_dependants(target)

        for name, on in target.switches.items():
            setattr(toggles, name, on)
        toggles.portal_sections = [s.value for s in target.portal_sections]
        toggles.max_team_members = target.max_team_members
        if prefs is not None:
            prefs.low_credit_threshold = target.low_credit_threshold
        diff = changes(before.audited(), target.audited())
        switched_off = _switched_off(before, target, change)
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
            if any(before.switches[name] and not target.switches[name] for name in ACCESS_SWITCHES):
                await events.emit(events.ACCESS_REVOKED, customer_id=customer.id, partner_id=customer.partner_id)
            if target.switches["portal_enabled"] and not before.switches["portal_enabled"]:
                await invite_if_due(customer.id, customer.partner_id)
    return FeaturesUpdated(FeatureState(customer.id, toggles, target.low_credit_threshold, package), switched_off)


async def _team_size_if_changed(customer_id: int, before: _Values, change: _Change) -> int | None:
    """The seats the customer's team takes (members and pending invitations), counted only when the request
    changes the limit (the only time it matters: a customer may already be above a limit it never had stored, such
    as the default's)."""
    limit = change.max_team_members
    if limit is UNSET or limit == before.max_team_members:
        return None
    return await seats_taken(customer_id)
