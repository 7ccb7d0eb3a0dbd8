"""Reading feature toggles (the partner-facing editor comes with the features issue)."""

from __future__ import annotations

from domain.features.models import FeatureToggles


async def toggles_of(customer_ids: list[int]) -> dict[int, FeatureToggles]:
    """Stored toggles, or unsaved defaults for customers never configured."""
    found = {row.customer_id: row for row in await FeatureToggles.filter(customer_id__in=customer_ids)}
    return {cid: found.get(cid) or FeatureToggles(customer_id=cid) for cid in customer_ids}


async def set_ai_credits(customer_id: int, enabled: bool) -> FeatureToggles:
    """Switches credits-based charging; pricing display is disabled while credits are on (seed 000)."""
    await FeatureToggles.bulk_create([FeatureToggles(customer_id=customer_id)], ignore_conflicts=True)
    await FeatureToggles.filter(customer_id=customer_id).update(
        ai_credits_enabled=enabled, **({"show_pricing": False} if enabled else {})
    )
    return await FeatureToggles.get(customer_id=customer_id)
