"""Session housekeeping, run by jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q

from domain.accounts.models import Session


async def purge_expired_sessions(older_than_days: int = 1) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    return await Session.filter(Q(expires_at__lt=cutoff) | Q(revoked_at__lt=cutoff)).delete()
