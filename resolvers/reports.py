"""Usage reports: a customer's reports, report schedules and report settings, and a report's live status. (Requesting
exports and managing schedules and settings are mutations that call their domain service directly:
schema/reports.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Protocol, TypeVar, cast

from domain.events.services import USAGE_REPORT_UPDATED
from domain.reports import healed, recipients, schedules, services
from domain.reports.commands import ContactsHealedRecord, HealedContactIn
from domain.reports.models import (
    FINAL_STATUSES,
    HealedContact,
    ReportFormat,
    ReportSchedule,
    ReportSettings,
    UsageReport,
)
from domain.usage.commands import EventIds
from domain.usage.services import RecordResult
from domain.visibility import restrict
from resolvers.common import Outcome, Page, attempt, decode_global_id, paginate
from resolvers.context import Context
from resolvers.subscriptions import watch

T = TypeVar("T")
POLL_SECONDS = 1.0


async def usage_reports(ctx: Context, customer_id: str, first: int | None, after: str | None) -> Page[UsageReport]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await services.usage_reports(ctx.viewer, pk), first, after, newest_first=True)


async def contacts_healed(
    ctx: Context,
    customer_id: str,
    since: datetime | None,
    until: datetime | None,
    first: int | None,
    after: str | None,
) -> Page[HealedContact]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await healed.contacts_healed(ctx.viewer, pk, since, until), first, after, newest_first=True)


async def healed_contacts_report(ctx: Context, customer_id: str) -> ReportSchedule | None:
    return await schedules.healed_contacts_report_of(
        ctx.viewer, decode_global_id(customer_id, "Customer", "customerId")
    )


async def audit_exports(ctx: Context, first: int | None, after: str | None) -> Page[UsageReport]:
    qs = restrict(UsageReport, ctx.viewer).filter(format=ReportFormat.AUDIT_CSV)
    return await paginate(qs, first, after, newest_first=True)


class HealedInput(Protocol):
    """A self-healed contact as the `contactsHealedRecord` input carries it."""

    @property
    def customer_id(self) -> str: ...
    @property
    def external_id(self) -> str: ...
    @property
    def new_number(self) -> str: ...
    @property
    def confirmed_at(self) -> datetime: ...
    @property
    def old_number(self) -> str | None: ...
    @property
    def enriched_at(self) -> datetime | None: ...
    @property
    def call_id(self) -> str | None: ...
    @property
    def wrong_number(self) -> bool | None: ...


async def contacts_healed_record(ctx: Context, items: Iterable[HealedInput]) -> Outcome[RecordResult]:
    """The batch as the command (`POST /v1/contacts/healed` parses JSON into the same): a customer id that names
    nothing refuses its contact alone."""
    ids = EventIds()
    contacts = [
        HealedContactIn(
            customer_id=ids.customer(c.customer_id),
            external_id=c.external_id,
            new_number=c.new_number,
            confirmed_at=c.confirmed_at,
            old_number=c.old_number,
            enriched_at=c.enriched_at,
            call_id=c.call_id,
            wrong_number=c.wrong_number,
        )
        for c in items
    ]
    return await attempt(healed.contacts_healed_record(ctx.viewer, ContactsHealedRecord(contacts, "graphql")))


async def report_settings(ctx: Context, customer_id: str) -> ReportSettings:
    return await recipients.settings_of(ctx.viewer, decode_global_id(customer_id, "Customer", "customerId"))


async def report_schedules(
    ctx: Context, customer_id: str, first: int | None, after: str | None
) -> Page[ReportSchedule]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await schedules.schedules_of(ctx.viewer, pk), first, after)


async def report_updates(ctx: Context, report_id: str, present: Callable[[UsageReport], T]) -> AsyncIterator[T]:
    """`usageReportUpdated`: checks visibility now (NOT_FOUND at subscribe), then streams `present(report)` as it
    is, and again after each change of its status, ending once it is READY or FAILED."""
    report = await services.visible_report(ctx.viewer, decode_global_id(report_id, "UsageReport", "id"))
    return _report_changes(ctx, report, present)


def _state(row: UsageReport) -> tuple[str, int, int | None]:
    return (str(row.status), row.rows_done, row.row_count)


async def _polled(report: UsageReport, present: Callable[[UsageReport], T]) -> AsyncIterator[T]:
    """A partner-wide export (no customer to key its changes by) is re-read every second until it is final."""
    last: tuple[str, int, int | None] | None = None
    while True:
        row = await UsageReport.get_or_none(id=report.id)
        if row is None:
            return
        if _state(row) != last:
            last = _state(row)
            yield present(row)
            if row.status in FINAL_STATUSES:
                return
        await asyncio.sleep(POLL_SECONDS)


async def _report_changes(ctx: Context, report: UsageReport, present: Callable[[UsageReport], T]) -> AsyncIterator[T]:
    """Changes are watched per customer (every report of the customer wakes it, and a burst may be coalesced into
    its latest payload), so each wake re-reads this report and skips it when neither its status nor its progress
    moved."""
    if report.customer_id is None:
        async for item in _polled(report, present):
            yield item
        return
    # an async generator (typed as an iterator): closing it ends the subscription at once
    changes = cast("AsyncGenerator[object, None]", watch(ctx, USAGE_REPORT_UPDATED, report.customer_id))
    next_change = asyncio.ensure_future(anext(changes))
    try:
        # one loop step lets the watch register before the first read, so no change can fall in between
        await asyncio.sleep(0)
        last: tuple[str, int, int | None] | None = None
        while True:
            row = await UsageReport.get_or_none(id=report.id)
            if row is None:
                return
            if _state(row) != last:
                last = _state(row)
                yield present(row)
                if row.status in FINAL_STATUSES:
                    return
            try:
                await next_change
            except StopAsyncIteration:  # the watch ended (the session was revoked)
                return
            next_change = asyncio.ensure_future(anext(changes))
    finally:
        next_change.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await next_change
        await changes.aclose()
