"""Read models of alerts for live views: one alert of a customer, as the `alert.raised` event names it."""

from __future__ import annotations

from domain.alerts.models import Alert


async def alert_of(customer_id: int, alert_id: object) -> Alert | None:
    """The alert `alert_id` (as an event payload carries it) if it is the customer's; None otherwise: another
    customer's id never shows."""
    if not isinstance(alert_id, int) or isinstance(alert_id, bool):
        return None
    return await Alert.get_or_none(id=alert_id, customer_id=customer_id)
