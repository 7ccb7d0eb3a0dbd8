"""Reading usage back: the detailed log of one customer and summaries from the daily rollups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from tortoise.queryset import QuerySet

from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.features import pricing
from domain.usage import store
from domain.usage.models import UnitType, UsageEvent, UsageRollup, UsageRollupDetail
from domain.viewer import Viewer
from domain.visibility import get_visible

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """What the usage log and summaries may be narrowed to (None: any). `campaign_id` is a decoded Campaign id."""

    unit_type: UnitType | None = None
    paid: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    case_type: str | None = None
    campaign_id: int | None = None


async def usage_events(viewer: Viewer, customer_id: int, filter: UsageFilter | None = None) -> QuerySet[UsageEvent]:
    """The detailed usage log of one visible customer (a queryset for pagination)."""
    f = filter or UsageFilter()
    unit_type, paid, since, until = f.unit_type, f.paid, f.since, f.until
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    qs = UsageEvent.filter(customer_id=customer.id)
    if f.case_type is not None:
        qs = qs.filter(case_type=f.case_type)
    if f.campaign_id is not None:
        qs = qs.filter(campaign_id=f.campaign_id)
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


class _Rollup(NamedTuple):
    day: date
    unit_type: str
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


_ROLLUP_COLUMNS = ("day", "unit_type", "quantity", "cost", "credits", "unpaid_cost", "events")


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


async def _rollups(
    customer_id: int, since: date, until: date, case_type: str | None, campaign_id: int | None
) -> list[tuple[Any, ...]]:
    """The daily rollups of the period, or the rollups by case type and campaign when narrowed to either (both
    are rollups: a year is at most a few thousand rows, whatever the number of events)."""
    since, until = summary_period(since, until)
    if case_type is None and campaign_id is None:
        rows = UsageRollup.filter(customer_id=customer_id, day__gte=since, day__lte=until)
        return list(await rows.order_by("day").values_list(*_ROLLUP_COLUMNS))
    detail = UsageRollupDetail.filter(customer_id=customer_id, day__gte=since, day__lte=until)
    if case_type is not None:
        detail = detail.filter(case_type=case_type)
    if campaign_id is not None:
        detail = detail.filter(campaign_id=campaign_id)
    return list(await detail.order_by("day").values_list(*_ROLLUP_COLUMNS))


async def usage_summary(
    viewer: Viewer,
    customer_id: int,
    since: date | None,
    until: date | None,
    group_by: str,
    *,
    case_type: str | None = None,
    campaign_id: int | None = None,
) -> list[SummaryRow]:
    """Aggregated usage per unit type, by DAY, MONTH or UNIT_TYPE only, read from the rollups. `since` and `until`
    are inclusive UTC days (defaults: `summary_period`)."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    since, until = summary_period(since, until)
    groups: dict[tuple[date | None, UnitType], _Totals] = {}
    for row in await _rollups(customer.id, since, until, case_type, campaign_id):
        r = _Rollup(*row)
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


@dataclass(frozen=True, slots=True)
class Figure:
    quantity: Decimal
    cost: Decimal | None  # None: prices hidden from the viewer
    events: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The usage dashboard of seed 001: voice minutes, SMS segments, emails and storage, with their cost."""

    voice_minutes: Figure
    sms_segments: Figure
    emails: Figure
    storage_mb: Figure
    total_cost: Decimal | None


_DASHBOARD_UNITS = (UnitType.VOICE_MINUTES, UnitType.SMS_SEGMENTS, UnitType.EMAILS, UnitType.STORAGE_MB)


async def usage_dashboard(viewer: Viewer, customer_id: int, since: date, until: date) -> Dashboard:
    """`usageDashboard`: the period's figures from the daily rollups; costs only where the viewer sees prices."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    totals = {unit: _Totals() for unit in UnitType}
    for row in await _rollups(customer.id, since, until, None, None):
        r = _Rollup(*row)
        acc = totals[UnitType(r.unit_type)]
        acc.quantity += r.quantity
        acc.cost += r.cost
        acc.events += r.events
    shown = (await pricing.prices_visible(viewer, [customer.id]))[customer.id]
    voice, sms, emails, storage = (
        Figure(totals[u].quantity, totals[u].cost if shown else None, totals[u].events) for u in _DASHBOARD_UNITS
    )
    total = sum((t.cost for t in totals.values()), ZERO) if shown else None
    return Dashboard(voice, sms, emails, storage, total)
