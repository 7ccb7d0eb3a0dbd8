"""Housekeeping actors."""

from __future__ import annotations

import dramatiq

from domain.accounts import maintenance


@dramatiq.actor(queue_name="maintenance", max_retries=5)
async def purge_expired_sessions(older_than_days: int = 1) -> int:
    """Deletes sessions expired or revoked more than `older_than_days` ago."""
    return await maintenance.purge_expired_sessions(older_than_days)
