"""Usage reports: a customer's reports, report schedules and report settings, and a report's live status. (Requesting
exports and managing schedules and settings are mutations that call their domain service directly:
schema/reports.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TypeVar, cast

from domain.events.services import USAGE_REPORT_UPDATED
from domain.reports import recipients, schedules, services
from domain.reports.models import FINAL_STATUSES, ReportSchedule, ReportSettings, UsageReport
from resolvers.common import Page, decode_global_id, paginate
from resolvers.context import Context
from resolvers.subscriptions import watch

T = TypeVar("T")


async def usage_reports(ctx: Context, customer_id: str, first: int | None, after: str | None) -> Page[UsageReport]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await services.usage_reports(ctx.viewer, pk), first, after, newest_first=True)


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


async def _report_changes(ctx: Context, report: UsageReport, present: Callable[[UsageReport], T]) -> AsyncIterator[T]:
    """Changes are watched per customer (every report of the customer wakes it, and a burst may be coalesced into
    its latest payload), so each wake re-reads this report and skips it when its status did not move."""
    # an async generator (typed as an iterator): closing it ends the subscription at once
    changes = cast("AsyncGenerator[object, None]", watch(ctx, USAGE_REPORT_UPDATED, report.customer_id))
    next_change = asyncio.ensure_future(anext(changes))
    try:
        # one loop step lets the watch register before the first read, so no change can fall in between
        await asyncio.sleep(0)
        last: str | None = None
        while True:
            row = await UsageReport.get_or_none(id=report.id)
            if row is None:
                return
            if row.status != last:
                last = row.status
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
