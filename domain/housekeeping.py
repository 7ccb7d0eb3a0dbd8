"""Hourly housekeeping across the domains: deleting what expires by time alone, and creating next month's usage
partition ahead of time (the `housekeeping` job's one service)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.accounts.maintenance import purge_expired_sessions
from domain.events.services import purge_published
from domain.ledger.idempotency import purge_expired
from domain.usage import store
from domain.usage.models import UsageDedup
from domain.usage.rules import MAX_AGE

DEDUP_MARGIN = timedelta(days=5)  # how long usage dedup keys outlive the acceptance window (MAX_AGE)
OUTBOX_KEPT = timedelta(days=7)  # published outbox rows, kept for inspection


@dataclass(frozen=True, slots=True)
class Swept:
    """How many rows each purge deleted."""

    sessions: int
    idempotency: int
    dedup: int
    outbox: int


async def housekeeping(now: datetime | None = None) -> Swept:
    """Expired sessions, idempotency records, usage dedup keys past the acceptance window and published outbox
    rows; and next month's usage partition."""
    now = now or datetime.now(UTC)
    await store.ensure_partitions([store.month_start(now), store.next_month(store.month_start(now))])
    return Swept(
        sessions=await purge_expired_sessions(1),
        idempotency=await purge_expired(now),
        dedup=await UsageDedup.filter(created_at__lt=now - MAX_AGE - DEDUP_MARGIN).delete(),
        outbox=await purge_published(now - OUTBOX_KEPT),
    )
