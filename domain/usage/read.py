"""Reading usage back: the detailed log of one customer and summaries from the daily rollups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from tortoise.queryset import QuerySet

from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.usage import store
from domain.usage.models import UnitType, UsageEvent, UsageRollup
from domain.viewer import Viewer
from domain.visibility import get_visible

ZERO = Decimal(0)


async def usage_events(
    viewer: Viewer,
    customer_id: int,
    *,
    unit_type: UnitType | None = None,
    paid: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[UsageEvent]:
    """The detailed usage log of one visible customer (a queryset for pagination)."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    qs = UsageEvent.filter(customer_id=customer.id)
    if unit_type is not None:
        qs = qs.filter(unit_type=unit_type)
    if paid is not None:
        qs = qs.filter(paid=paid)
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    if until is not None:
        qs = qs.filter(occurred_at__lt=until)
    return qs


@dataclass(frozen=True, slots=True)
class SummaryRow:
    period: date | None
    unit_type: UnitType
    quantity: Decimal
    cost: Decimal
    credits: Decimal
    unpaid_cost: Decimal
    events: int


@dataclass(slots=True)
class _Totals:
    quantity: Decimal = ZERO
    cost: Decimal = ZERO
    credits: Decimal = ZERO
    unpaid_cost: Decimal = ZERO
    events: int = 0


def summary_period(since: date | None, until: date | None, today: date | None = None) -> tuple[date, date]:
    """The inclusive UTC days a summary covers: `since` (default the first of this month) to `until` (default
    today). Refused when reversed or longer than about two years."""
    today = today or datetime.now(UTC).date()
    since = since or today.replace(day=1)
    until = until or today
    if until < since:
        raise DomainError.single(ErrorCode.INVALID, "`to` is before `from`.", "to")
    if (until - since).days > 800:
        raise DomainError.single(ErrorCode.INVALID, "At most about two years per summary.", "to")
    return since, until


async def usage_summary(viewer: Viewer, customer_id: int, since: date, until: date, group_by: str) -> list[SummaryRow]:
    """Aggregated usage per unit type, by DAY, MONTH or UNIT_TYPE only, read from the daily rollups.
    `since` and `until` are inclusive UTC days."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    since, until = summary_period(since, until)
    rollups = await UsageRollup.filter(customer_id=customer.id, day__gte=since, day__lte=until).order_by("day")
    groups: dict[tuple[date | None, UnitType], _Totals] = {}
    for r in rollups:
        period = r.day if group_by == "DAY" else (store.month_start(r.day) if group_by == "MONTH" else None)
        acc = groups.setdefault((period, UnitType(r.unit_type)), _Totals())
        acc.quantity += r.quantity
        acc.cost += r.cost
        acc.credits += r.credits
        acc.unpaid_cost += r.unpaid_cost
        acc.events += r.events
    order = list(UnitType)
    return [
        SummaryRow(period, unit, acc.quantity, acc.cost, acc.credits, acc.unpaid_cost, acc.events)
        for (period, unit), acc in sorted(groups.items(), key=lambda kv: (kv[0][0] or date.min, order.index(kv[0][1])))
    ]
