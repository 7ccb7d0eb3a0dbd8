"""Storage use as usage: each day, what a customer's knowledge base uses beyond its allocation becomes one
STORAGE_MB usage event of that day, in MB-months (excess MB ÷ days in the month), rated by the partner's rate card
(default $8 per GB-month) like any other usage. Keyed by customer and day, so a run repeated (two schedulers, a
redelivered job) records nothing twice.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from tortoise.expressions import F

from domain.storage.models import CustomerStorage
from domain.usage.commands import UsageEventIn
from domain.usage.models import UnitType
from domain.usage.rules import MAX_BATCH
from domain.usage.services import RecordResult, record_usage
from domain.viewer import Viewer

PLACES = Decimal("0.000001")


def storage_usage_key(customer_id: int, day: date) -> str:
    return f"storage:{customer_id}:{day.isoformat()}"


def mb_months(excess_mb: int, day: date) -> Decimal:
    """One day of `excess_mb` megabytes, in MB-months."""
    days = calendar.monthrange(day.year, day.month)[1]
    return (Decimal(excess_mb) / days).quantize(PLACES)


async def meter_storage(day: date | None = None, at: datetime | None = None) -> RecordResult:
    """Records yesterday's (or `day`'s) storage beyond the allocation, as last reported, for every customer."""
    now = at or datetime.now(UTC)
    day = day or (now - timedelta(days=1)).date()
    rows = await CustomerStorage.filter(used_mb__gt=F("allocated_mb")).order_by("customer_id")
    events = [
        UsageEventIn(
            idempotency_key=storage_usage_key(row.customer_id, day),
            customer_id=row.customer_id,
            unit_type=UnitType.STORAGE_MB,
            quantity=mb_months(row.used_mb - row.allocated_mb, day),
            occurred_at=datetime.combine(day, time(12), UTC),
            case_type="storage",
            metadata={"day": day.isoformat(), "used_mb": row.used_mb, "allocated_mb": row.allocated_mb},
        )
        for row in rows
    ]
    total = RecordResult()
    for i in range(0, len(events), MAX_BATCH):
        part = await record_usage(Viewer.system("storage-metering"), events[i : i + MAX_BATCH], now)
        total.accepted += part.accepted
        total.duplicates += part.duplicates
        total.rejected += part.rejected
    return total
