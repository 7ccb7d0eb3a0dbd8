"""Invoices a page at a time, and the billing portal link (a read that may create the provider's customer)."""

from __future__ import annotations

from domain.invoices import services as invoices
from domain.invoices.models import Invoice
from domain.payments import services as payments
from resolvers.common import Page, decode_global_id, paginate
from resolvers.context import Context


async def invoices_page(ctx: Context, customer_id: str, first: int | None, after: str | None) -> Page[Invoice]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await invoices.invoices_of(ctx.viewer, pk), first, after, newest_first=True)


async def billing_portal_session(ctx: Context, customer_id: str, return_url: str) -> payments.PortalSession:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await payments.billing_portal_session(ctx.viewer, pk, return_url)
