"""Alert delivery and refill notices: the broker's side (retries, backoff) around the alerts service, which is
handed the mail transport."""

from __future__ import annotations

import dramatiq

from domain.alerts import services
from jobs import mailer


@dramatiq.actor(queue_name="alerts", max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def send_alert(alert_id: int) -> str:
    """Sends an alert once; a redelivered message finds it SENT and does nothing."""
    return await services.deliver(alert_id, mailer.send)


@dramatiq.actor(queue_name="alerts", max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def notify_refill_request(refill_request_id: int) -> int:
    """Tells the partner's admins that a customer's wallet needs a manual refill (stage 1 workflow)."""
    return await services.notify_refill_request(refill_request_id, mailer.send)
