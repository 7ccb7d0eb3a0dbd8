"""Card payments: the automatic top-up of a wallet that crossed its refill threshold."""

from __future__ import annotations

import dramatiq

from domain.payments import services


@dramatiq.actor(queue_name="payments", max_retries=8, min_backoff=10_000, max_backoff=900_000)
async def auto_top_up(refill_request_id: int) -> str:
    """Charges the saved card once per refill request (the provider's idempotency key makes a retry charge once)."""
    return await services.auto_top_up(refill_request_id)
