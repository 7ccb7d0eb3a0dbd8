"""Usage reports: building dispatched exports, sweeping the export queue, requesting scheduled reports, emailing
their links, purging old files."""

from __future__ import annotations

import dramatiq

from domain.reports import queue, schedules, services
from jobs import mailer


@dramatiq.actor(queue_name="exports", max_retries=3, min_backoff=5_000, max_backoff=300_000, time_limit=3_600_000)
async def build_usage_report(report_id: int) -> str:
    """Builds a dispatched report once. A redelivered message finds it final, or held by a live build, and stops; a
    RUNNING report whose build stopped renewing its lease (the worker died) is built again."""
    return await services.build(report_id)


@dramatiq.actor(queue_name="exports", max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def deliver_scheduled_report(report_id: int) -> bool:
    """Emails a scheduled report's download link to its recipients, once."""
    return await schedules.deliver(report_id, mailer.send)


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def sweep_export_queue() -> int:
    """Re-sends builds whose worker died or whose message was lost, and fills free build slots fairly."""
    return await queue.sweep()


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def report_schedules() -> int:
    """Requests the reports of periods that just completed (each period once per schedule)."""
    return await schedules.run_due()


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def purge_expired_reports() -> int:
    return await services.purge_expired()
