"""What the package in force lets a customer have (seeds 000, 004): "that package determines what features and
limits the client has access to".

- `GATED` toggles (the portal, AI credits, team members, embed URLs) and the knowledge-base section can be switched
  on only while the package in force includes their feature; without a package a customer has none of them.
- The `ADD_ONS` (advanced analytics, detailed call analysis, action point analysis, API access) may be switched on
  beyond the package ("add-ons depending on plan/policy"); `add_ons()` names those that are.

The package in force is the customer's current assignment while it has not expired, read as the snapshot of the
version assigned (later edits of the package change new assignments only). The features service applies these
rules (domain/features/services.py); packages and the expiry job use the same names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.expressions import Q

from domain.common.json import JsonObject
from domain.features.models import FeatureToggles, PortalSection
from domain.packages.models import FeatureKey, PackageAssignment

# toggle → the package feature it needs
GATED: dict[str, FeatureKey] = {
    "portal_enabled": FeatureKey.CUSTOMER_PORTAL,
    "ai_credits_enabled": FeatureKey.AI_CREDITS,
    "team_members_enabled": FeatureKey.TEAM_MEMBERS,
    "embed_urls_enabled": FeatureKey.EMBEDS,
}
# portal section → the package feature it needs
GATED_SECTIONS: dict[PortalSection, FeatureKey] = {PortalSection.KNOWLEDGE_BASE: FeatureKey.KNOWLEDGE_BASE}
# toggle → the package feature it is; these may be on beyond the package
ADD_ONS: dict[str, FeatureKey] = {
    "advanced_analytics": FeatureKey.ADVANCED_ANALYTICS,
    "detailed_call_analysis": FeatureKey.DETAILED_CALL_ANALYSIS,
    "action_point_analysis": FeatureKey.ACTION_POINT_ANALYSIS,
    "api_access": FeatureKey.API_ACCESS,
}
# every package feature that is a toggle, by toggle name (KNOWLEDGE_BASE is a portal section)
TOGGLE_FEATURES: dict[str, FeatureKey] = GATED | ADD_ONS
FEATURE_NAMES: dict[FeatureKey, str] = {
    FeatureKey.CUSTOMER_PORTAL: "the customer portal",
    FeatureKey.AI_CREDITS: "AI credits",
    FeatureKey.TEAM_MEMBERS: "team members",
    FeatureKey.EMBEDS: "embed URLs",
    FeatureKey.KNOWLEDGE_BASE: "the knowledge base",
    FeatureKey.ADVANCED_ANALYTICS: "advanced analytics",
    FeatureKey.DETAILED_CALL_ANALYSIS: "detailed call analysis",
    FeatureKey.ACTION_POINT_ANALYSIS: "action point analysis",
    FeatureKey.API_ACCESS: "API access",
}


def now() -> datetime:
    return datetime.now(UTC)


def live(at: datetime | None = None) -> Q:
    """Assignments in force: current and not expired."""
    return Q(current_customer_id__isnull=False) & (Q(expires_at__isnull=True) | Q(expires_at__gt=at or now()))


@dataclass(frozen=True, slots=True)
class PackageInForce:
    """The terms a customer has now: the snapshot of the version it was assigned."""

    assignment_id: int
    package_id: int
    title: str
    features: frozenset[FeatureKey]
    expires_at: datetime | None

    @classmethod
    def of(cls, assignment: PackageAssignment) -> PackageInForce:
        terms: JsonObject = assignment.snapshot or {}
        raw = terms.get("features")
        known = {k.value for k in FeatureKey}
        features = (
            frozenset(FeatureKey(str(k)) for k in raw if str(k) in known) if isinstance(raw, list) else frozenset()
        )
        return cls(assignment.id, assignment.package_id, str(terms.get("title") or ""), features, assignment.expires_at)


async def packages_in_force(customer_ids: Iterable[int], at: datetime | None = None) -> dict[int, PackageInForce]:
    """The package in force of each of these customers that has one (one query)."""
    ids = list(set(customer_ids))
    if not ids:
        return {}
    rows = await PackageAssignment.filter(live(at), current_customer_id__in=ids)
    return {row.customer_id: PackageInForce.of(row) for row in rows}


async def package_in_force(customer_id: int) -> PackageInForce | None:
    return (await packages_in_force([customer_id])).get(customer_id)


def missing_message(package: PackageInForce | None, feature: FeatureKey) -> str | None:
    """Why the customer cannot have `feature` (NOT_ELIGIBLE), or None when its package includes it."""
    if package is not None and feature in package.features:
        return None
    name = FEATURE_NAMES[feature]
    if package is None:
        return f"The customer has no package: assign one that includes {name} ({feature.value})."
    return f"The {package.title} package does not include {name} ({feature.value})."


def add_ons(toggles: FeatureToggles, package: PackageInForce | None) -> list[FeatureKey]:
    """The add-ons switched on beyond the package in force, in `FeatureKey` order."""
    included = package.features if package else frozenset()
    on = {key for name, key in ADD_ONS.items() if getattr(toggles, name) and key not in included}
    return [k for k in FeatureKey if k in on]
