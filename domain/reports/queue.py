"""The export queue: QUEUED reports wait in the database and get build slots fairly between tenants.

The export workers are shared by every partner, so builds in flight (dispatched to the broker, or RUNNING) are
bounded per customer (`export_max_running_per_customer`) and per partner (`export_max_running_per_partner`): a
customer asking for many heavy reports keeps at most that many in the broker's queue, and another partner's report
waits behind at most that many of theirs. Within a partner the next slot goes to the customer with the fewest builds
in flight, then to the oldest request. A slot is given by setting `dispatched_at` and emitting
`usage_report.requested` in the same transaction; the relay sends the build job after commit.

A partner's decisions are taken under a lock on its row, so every API process, worker and scheduler agrees on the
counts (the limits live in the database, not in any process). Dispatch runs when a report is requested, when a
build ends, and from the periodic `sweep`, which also re-sends the build of a report nobody is building: RUNNING
with no heartbeat within the lease (its worker died), or dispatched long ago and never started (its message was
lost, e.g. an embedded server restarted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from domain.config import config
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.events.services import USAGE_REPORT_REQUESTED, emit_many
from domain.partners.models import Partner
from domain.reports.models import ReportFormat, ReportStatus, UsageReport

IN_FLIGHT = Q(status=ReportStatus.RUNNING) | Q(status=ReportStatus.QUEUED, dispatched_at__not_isnull=True)
PENDING = (ReportStatus.QUEUED, ReportStatus.RUNNING)
# a dispatched build not started after this is sent again (a duplicate finds the report taken and stops)
RESEND_AFTER = timedelta(minutes=15)
# the oldest waiting reports of a partner that one dispatch considers (each customer has a bounded number queued)
WAITING_WINDOW = 500


def lease() -> timedelta:
    return timedelta(seconds=config().export_lease_seconds)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _alive_at(heartbeat_at: datetime | None, started_at: datetime | None) -> datetime | None:
    """When a build last proved alive (rows from before heartbeats have only their start)."""
    return _utc(heartbeat_at or started_at)


def is_held(report: UsageReport, now: datetime) -> bool:
    """A RUNNING report whose build is alive (a heartbeat within the lease): nobody else may build it."""
    alive = _alive_at(report.heartbeat_at, report.started_at)
    return report.status == ReportStatus.RUNNING and alive is not None and alive > now - lease()


async def lock_partner(partner_id: int) -> bool:
    """Serialises one partner's queue decisions (inside a transaction, before any report row is locked)."""
    return await Partner.select_for_update().get_or_none(id=partner_id) is not None


async def check_quota(customer_id: int | None, partner_id: int) -> None:
    """A customer's own requests queued or running at once are bounded (under `lock_partner`); so are a
    partner's partner-wide ones (system log exports, `customer_id` None)."""
    limit = config().export_max_pending_per_customer
    mine = (
        UsageReport.filter(customer_id=customer_id)
        if customer_id is not None
        else UsageReport.filter(customer_id=None, partner_id=partner_id)
    )
    pending = await mine.filter(schedule_id=None, status__in=PENDING).count()
    if pending >= limit:
        raise DomainError.single(
            ErrorCode.QUOTA_EXCEEDED,
            f"This customer already has {pending} exports queued or running (at most {limit}); "
            "try again when one is ready.",
        )


async def queue_report(
    customer: Customer | None,
    fmt: ReportFormat,
    since: date,
    until: date,
    *,
    partner_id: int | None = None,
    timezone: str = "UTC",
    columns: list[str] | None = None,
    filters: dict[str, str] | None = None,
    requested_by_user_id: int | None = None,
    schedule_id: int | None = None,
    with_prices: bool = True,
) -> UsageReport:
    """Stores a QUEUED report and gives it a build slot if its customer and partner have one free (call inside the
    transaction that requests it). A person's request beyond the quota of pending exports is refused
    (QUOTA_EXCEEDED); scheduled reports are bounded by the cap on schedules instead. Without a customer (a
    partner-wide system log export) `partner_id` names the partner."""
    owner = customer.partner_id if customer is not None else partner_id
    assert owner is not None, "a report belongs to a partner"
    customer_id = customer.id if customer is not None else None
    await lock_partner(owner)
    if schedule_id is None:
        await check_quota(customer_id, owner)
    report = await UsageReport.create(
        customer_id=customer_id,
        partner_id=owner,
        requested_by_user_id=requested_by_user_id,
        schedule_id=schedule_id,
        format=fmt,
        period_from=since,
        period_to=until,
        timezone=timezone,
        columns=columns,
        filters=filters,
        with_prices=with_prices,
    )
    await dispatch(owner)
    return report


def choose(
    waiting: Sequence[tuple[int, int | None]], in_flight: Counter[int | None], free: int, per_customer: int
) -> list[int]:
    """Fair picks among waiting (report id, customer id): fewest builds in flight first, then the oldest."""
    counts = Counter(in_flight)
    chosen: list[int] = []
    left = list(waiting)
    while free > 0:
        eligible = [
            (counts[customer], report_id, customer) for report_id, customer in left if counts[customer] < per_customer
        ]
        if not eligible:
            break
        _, report_id, customer = min(eligible)
        chosen.append(report_id)
        left.remove((report_id, customer))
        counts[customer] += 1
        free -= 1
    return chosen


async def dispatch(partner_id: int, now: datetime | None = None) -> list[int]:
    """Gives the partner's free build slots to its waiting reports (under `lock_partner`); returns their ids."""
    settings = config()
    in_flight_customers = UsageReport.filter(IN_FLIGHT, partner_id=partner_id).values_list("customer_id", flat=True)
    in_flight: Counter[int | None] = Counter(
        cast("list[int | None]", await in_flight_customers)
    )  # a flat list (Tortoise types it as tuples)
    free = settings.export_max_running_per_partner - in_flight.total()
    if free <= 0:
        return []
    waiting = await (
        UsageReport.filter(partner_id=partner_id, status=ReportStatus.QUEUED, dispatched_at=None)
        .order_by("id")
        .limit(WAITING_WINDOW)
        .values_list("id", "customer_id")
    )
    chosen = choose(waiting, in_flight, free, settings.export_max_running_per_customer)
    if chosen:
        await _send(chosen, dict(waiting), partner_id, now or datetime.now(UTC))
    return chosen


async def _send(report_ids: list[int], customers: dict[int, int], partner_id: int, now: datetime) -> None:
    await UsageReport.filter(id__in=report_ids).update(dispatched_at=now)
    await emit_many(
        (USAGE_REPORT_REQUESTED, customers[report_id], partner_id, {"report_id": report_id}) for report_id in report_ids
    )


@dataclass(frozen=True, slots=True)
class InFlight:
    """What the sweep reads of an in-flight report."""

    id: int
    customer_id: int
    partner_id: int
    dispatched_at: datetime | None
    started_at: datetime | None
    heartbeat_at: datetime | None


async def _in_flight(partner_id: int | None = None) -> list[InFlight]:
    """Every in-flight report, or one partner's."""
    qs = UsageReport.filter(IN_FLIGHT)
    if partner_id is not None:
        qs = qs.filter(partner_id=partner_id)
    rows = await qs.values_list("id", "customer_id", "partner_id", "dispatched_at", "started_at", "heartbeat_at")
    return [InFlight(*row) for row in rows]


def needs_resend(report: InFlight, now: datetime) -> bool:
    """An in-flight report nobody is building, and whose build message is not known to be on its way."""
    alive = _alive_at(report.heartbeat_at, report.started_at)
    if alive is not None and alive > now - lease():
        return False
    sent, started = _utc(report.dispatched_at), _utc(report.started_at)
    if sent is None:
        return True  # running without a message on record (requested before the queue existed)
    if started is not None and sent <= started:
        return True  # the last message was taken by the build that died
    return sent < now - RESEND_AFTER  # the message was lost on the way


async def sweep(now: datetime | None = None) -> int:
    """The periodic pass: re-sends the builds nobody is doing and dispatches every partner with waiting reports (each
    partner in its own transaction); returns how many builds it sent."""
    now = now or datetime.now(UTC)
    partners = {r.partner_id for r in await _in_flight() if needs_resend(r, now)}
    waiting = UsageReport.filter(status=ReportStatus.QUEUED, dispatched_at=None).distinct()
    partners |= set(cast("list[int]", await waiting.values_list("partner_id", flat=True)))  # a flat list
    sent = 0
    for partner_id in sorted(partners):
        async with in_transaction():
            if not await lock_partner(partner_id):
                continue
            # re-read under the lock: another sweep or a build's end may have acted meanwhile
            stuck = [r for r in await _in_flight(partner_id=partner_id) if needs_resend(r, now)]
            if stuck:
                await _send([r.id for r in stuck], {r.id: r.customer_id for r in stuck}, partner_id, now)
            sent += len(stuck) + len(await dispatch(partner_id, now))
    return sent
