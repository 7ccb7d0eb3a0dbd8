"""Who may see prices and costs (seed 000, "Show Pricing Information"): the one rule every field that shows a price
or a cost, and every report, goes by.

A customer's pricing is shown when its `showPricing` toggle is on, and never while AI credits are on ("disabled when
AI Credits are enabled"). Partner staff and platform admins (and the jobs, which act as the platform) always see
prices; the customer's own people, its API keys and its embed tokens see them only while the customer's pricing is
shown. Where they may not, prices and costs are null or left out: usage events (`unitPrice`, `cost`), usage
summaries (`cost`, `unpaidCost`), usage holds (`amount`), the partner's rate card, and report files (built without
their price and cost columns, decided when the report is requested: `report_with_prices`).

Credits counts, wallet balances and spending-cap figures are the customer's own money and stay visible.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.features.models import FeatureToggles
from domain.viewer import Viewer


def pricing_shown(toggles: FeatureToggles) -> bool:
    """Whether a customer's own people may see prices (the partner's setting; always off under AI credits)."""
    return bool(toggles.show_pricing) and not toggles.ai_credits_enabled


def sees_all_prices(viewer: Viewer) -> bool:
    """Partner staff, platform admins and jobs see every price of the customers they can see."""
    return not viewer.is_customer_user


def may_see_prices(viewer: Viewer, toggles: FeatureToggles) -> bool:
    """Whether `viewer` may see the prices and costs of the customer these toggles belong to."""
    return sees_all_prices(viewer) or pricing_shown(toggles)


async def prices_visible(viewer: Viewer, customer_ids: Iterable[int]) -> dict[int, bool]:
    """`may_see_prices` for many customers: no query for partner staff, one for customer users (DataLoader batch).
    Call with customers the viewer can see (visibility is not decided here)."""
    ids = list(set(customer_ids))
    if sees_all_prices(viewer):
        return dict.fromkeys(ids, True)
    stored = {row.customer_id: row for row in await FeatureToggles.filter(customer_id__in=ids)}
    return {cid: pricing_shown(stored.get(cid) or FeatureToggles(customer_id=cid)) for cid in ids}


async def report_with_prices(requester: Viewer | None, customer_id: int) -> bool:
    """Whether a report file shows prices and costs: as its requester may see them; a scheduled report (no
    requester) goes to the customer's people, so as the customer's pricing setting says.

    A report's file can be opened by anyone its link reaches, and its row is listed to the customer's users, so
    what the file shows is fixed when it is requested and stored with it (`UsageReport.with_prices`)."""
    if requester is not None and sees_all_prices(requester):
        return True
    toggles = await FeatureToggles.filter(customer_id=customer_id).first()
    return pricing_shown(toggles or FeatureToggles(customer_id=customer_id))
