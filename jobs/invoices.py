"""Monthly invoices: closing the month that ended, emailing each invoice, pushing it to the card provider."""

from __future__ import annotations

import dramatiq

from domain.invoices import services
from jobs import mailer


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def close_invoice_months() -> int:
    """Invoices last month's invoice-funded usage, once per customer (idempotent; runs hourly)."""
    return await services.close_month()


@dramatiq.actor(queue_name="alerts", max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def deliver_invoice(invoice_id: int) -> int:
    return await services.deliver(invoice_id, mailer.send)


@dramatiq.actor(queue_name="payments", max_retries=8, min_backoff=10_000, max_backoff=900_000)
async def push_invoice(invoice_id: int) -> str:
    return await services.push_to_provider(invoice_id)
