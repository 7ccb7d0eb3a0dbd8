"""Whether prices and costs are shown: the one decision the report files and the usage dashboard share.

Files (CSV, PDF) leave the system by link and email, so they follow the customer's `showPricing` toggle whoever
asked for them. Live reads (the dashboard) show partner staff and platform admins everything, and customer users,
their API keys and embed tokens prices only while the toggle is on.
"""

from __future__ import annotations

from domain.features.services import toggles_of
from domain.viewer import Viewer


async def prices_shown(customer_id: int, viewer: Viewer | None = None) -> bool:
    """`viewer` None: a file that anyone holding its link may read."""
    if viewer is not None and (viewer.is_platform_admin or viewer.is_partner_staff):
        return True
    return bool((await toggles_of([customer_id]))[customer_id].show_pricing)
