"""Outgoing webhooks: the fan-out of outbox events into messages, one delivery attempt, the sweep that dispatches
retries and lost attempts, and the notice to an endpoint's owner when it was disabled."""

from __future__ import annotations

import dramatiq

from domain.common.json import JsonObject
from domain.webhooks import delivery, notices
from jobs import mailer


@dramatiq.actor(queue_name="webhooks", max_retries=20, min_backoff=1_000, max_backoff=300_000)
async def fan_out_webhooks(envelope: JsonObject) -> int:
    """Turns an outbox event into a webhook message and its deliveries (once per event, however often sent)."""
    return await delivery.fan_out(delivery.envelope_of(envelope))


# No broker retries: a failed attempt is rescheduled by the delivery itself (its backoff lives in the database).
@dramatiq.actor(queue_name="webhooks", max_retries=0, time_limit=120_000)
async def deliver_webhook(delivery_id: int) -> str:
    return await delivery.attempt(delivery_id)


@dramatiq.actor(queue_name="scheduled", max_retries=3)
async def sweep_webhooks() -> int:
    return await delivery.sweep()


@dramatiq.actor(queue_name="alerts", max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def notify_webhook_endpoint_disabled(endpoint_id: int) -> int:
    return await notices.notify_endpoint_disabled(endpoint_id, mailer.send)
