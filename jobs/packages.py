"""Package expiry: the periodic run that notifies and ends assignments, and the delivery of each notice (the
broker's retries around the domain service, which is handed the mail transport)."""

from __future__ import annotations

import dramatiq

from domain.packages import expiry
from jobs import mailer


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def package_expiry() -> int:
    """Notices 7 days ahead, then every assignment past its expiry ended (each once, however often it runs)."""
    run = await expiry.run_package_expiry()
    return run.reminded + run.ended


@dramatiq.actor(queue_name="alerts", max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def send_package_notice(notice_id: int) -> str:
    """Sends a notice once; a redelivered message finds it SENT and does nothing."""
    return await expiry.deliver_notice(notice_id, mailer.send)
