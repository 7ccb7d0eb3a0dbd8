"""Metering, holds, the spending cap, campaigns and rate cards."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from domain.billing import cap
from domain.campaigns import services as campaigns
from domain.campaigns.models import Campaign
from domain.usage import services
from domain.usage.models import UnitType, UsageHold
from domain.usage.rating import Rate, rate_book
from resolvers.common import Outcome, Page, attempt, cursor_pk, decode_global_id, page_size, paginate
from resolvers.context import Context


def decode_or_none(value: Any, type_name: str) -> int | None:
    if value is None:
        return None
    try:
        return decode_global_id(value, type_name, "id")
    except Exception:
        return None


def to_event(raw: dict[str, Any]) -> services.UsageEventIn:
    """An event as sent over GraphQL or the ingestion endpoint (global ids not decoded yet)."""
    hold = raw.get("hold_id")
    return services.UsageEventIn(
        idempotency_key=raw.get("idempotency_key"),
        customer_id=decode_or_none(raw.get("customer_id"), "Customer"),
        unit_type=raw.get("unit_type"),
        quantity=raw.get("quantity"),
        occurred_at=raw.get("occurred_at"),
        case_type=raw.get("case_type"),
        hold_id=None if hold is None else decode_or_none(hold, "UsageHold") or services.UNKNOWN_HOLD,
        metadata=raw.get("metadata"),
    )


async def usage_record(
    ctx: Context, events: list[dict[str, Any]], source: str = "graphql"
) -> Outcome[services.RecordResult]:
    async def run() -> services.RecordResult:
        result = await services.record_usage(ctx.viewer, [to_event(e) for e in events])
        await services.audit_usage_batch(ctx.viewer, result, source)
        return result

    return await attempt(run())


async def usage_authorize(ctx: Context, data: dict[str, Any]) -> Outcome[UsageHold]:
    async def run() -> UsageHold:
        customer_id = decode_global_id(data["customer_id"], "Customer", "customer_id")
        response = await services.usage_authorize(
            ctx.viewer, customer_id, data["unit_type"], data["estimated_quantity"], data["idempotency_key"]
        )
        return await UsageHold.get(id=response["hold_id"])

    return await attempt(run())


async def usage_hold_release(ctx: Context, hold_id: Any) -> Outcome[UsageHold]:
    async def run() -> UsageHold:
        return await services.usage_hold_release(ctx.viewer, decode_global_id(hold_id, "UsageHold", "hold_id"))

    return await attempt(run())


async def usage_events(
    ctx: Context,
    customer_id: Any,
    unit_type: UnitType | None,
    paid: bool | None,
    since: datetime | None,
    until: datetime | None,
    first: int | None,
    after: str | None,
) -> Page[Any]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    qs = await services.usage_events(ctx.viewer, pk, unit_type=unit_type, paid=paid, since=since, until=until)
    return await paginate(qs, first, after, newest_first=True)


async def usage_summary(
    ctx: Context, customer_id: Any, since: date, until: date, group_by: str
) -> list[services.SummaryRow]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await services.usage_summary(ctx.viewer, pk, since, until, group_by)


async def spending_cap_update(ctx: Context, data: dict[str, Any]) -> Outcome[cap.CapState]:
    async def run() -> cap.CapState:
        customer_id = decode_global_id(data["customer_id"], "Customer", "customer_id")
        return await cap.spending_cap_update(ctx.viewer, customer_id, data.get("cap"))

    return await attempt(run())


async def campaign_create(ctx: Context, data: dict[str, Any]) -> Outcome[Campaign]:
    async def run() -> Campaign:
        customer_id = decode_global_id(data["customer_id"], "Customer", "customer_id")
        return await campaigns.campaign_create(ctx.viewer, customer_id, data.get("name"))

    return await attempt(run())


async def campaigns_of(ctx: Context, customer_id: int, first: int | None, after: str | None) -> Page[Campaign]:
    """`Customer.campaigns`, batched with the other customers of the same request."""
    return await ctx.loaders.campaigns_by_customer.load((customer_id, page_size(first), cursor_pk(Campaign, after)))


async def rate_card(ctx: Context, partner_id: int) -> list[Rate]:
    return (await rate_book([partner_id])).current(partner_id)
