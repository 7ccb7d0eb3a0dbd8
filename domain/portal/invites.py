"""Auto-invite (seed 001): a customer whose portal is on and set to auto-invite has its admins invited by email,
once. Called in the transaction of every change that can bring both about (the customer created, its portal
switched on, auto-invite switched on); the email itself goes out after commit through the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.events import services as events
from domain.features.models import FeatureToggles
from domain.portal.models import PortalSettings

PORTAL_INVITED = "portal.invited"  # outbox: invite the customer's admins (payload `invite_customer_id`)


async def invite_if_due(customer_id: int, partner_id: int) -> bool:
    """Asks for the portal invitation when the portal is on, auto-invite is on and the admins were never invited
    (the settings row locked, so concurrent changes ask once). True when it asked."""
    settings = await PortalSettings.select_for_update().get_or_none(customer_id=customer_id)
    if settings is None or not settings.auto_invite or settings.invited_at is not None:
        return False
    toggles = await FeatureToggles.get_or_none(customer_id=customer_id) or FeatureToggles(customer_id=customer_id)
    if not toggles.portal_enabled:
        return False
    settings.invited_at = datetime.now(UTC)
    await settings.save(update_fields=["invited_at", "updated_at"])
    await events.emit(PORTAL_INVITED, customer_id=customer_id, partner_id=partner_id, invite_customer_id=customer_id)
    return True
