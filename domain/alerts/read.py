"""Read models of alerts for live views: one alert of a customer, as the `alert.raised` event names it."""

from __future__ import annotations

from domain.alerts.models import Alert


async def alert_of(customer_id: int, alert_id: int | None) -> Alert | None:
    """The alert `alert_id` if it is the customer's (None otherwise: another customer's id never shows)."""
    return await Alert.get_or_none(id=alert_id, customer_id=customer_id)
