"""Metering: a usage batch sent over GraphQL as the metering command, the usage log and summaries, campaigns and
rate cards."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Protocol

from domain.campaigns.models import Campaign
from domain.common import ids
from domain.usage import read, services
from domain.usage.commands import EventIds, UsageEventIn, UsageRecord
from domain.usage.models import UnitType, UsageEvent
from domain.usage.rating import Rate, rate_book
from resolvers.common import Outcome, Page, attempt, cursor_pk, decode_global_id, page_size, paginate
from resolvers.context import Context


class EventInput(Protocol):
    """A usage event as the `usageRecord` input carries it."""

    @property
    def idempotency_key(self) -> str: ...
    @property
    def customer_id(self) -> str: ...
    @property
    def unit_type(self) -> UnitType: ...
    @property
    def quantity(self) -> object: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def case_type(self) -> str | None: ...
    @property
    def hold_id(self) -> str | None: ...
    @property
    def metadata(self) -> object: ...
    @property
    def direction(self) -> object: ...
    @property
    def from_number(self) -> str | None: ...
    @property
    def to_number(self) -> str | None: ...
    @property
    def duration_seconds(self) -> int | None: ...
    @property
    def segments(self) -> int | None: ...
    @property
    def campaign_id(self) -> str | None: ...
    @property
    def call_id(self) -> str | None: ...


async def usage_record(ctx: Context, events: Iterable[EventInput]) -> Outcome[services.RecordResult]:
    """The batch as the metering command (`POST /v1/usage/events` parses JSON into the same): an id that names
    nothing refuses its event alone, so ids are decoded per event (`EventIds`), not by `to_command`."""
    ids = EventIds()
    batch = [
        UsageEventIn(
            idempotency_key=e.idempotency_key,
            customer_id=ids.customer(e.customer_id),
            unit_type=e.unit_type,
            quantity=e.quantity,
            occurred_at=e.occurred_at,
            case_type=e.case_type,
            hold_id=ids.hold(e.hold_id),
            metadata=e.metadata,
            direction=None if e.direction is None else str(e.direction),
            from_number=e.from_number,
            to_number=e.to_number,
            duration_seconds=e.duration_seconds,
            segments=e.segments,
            campaign_id=ids.campaign(e.campaign_id),
            call_id=e.call_id,
        )
        for e in events
    ]
    return await attempt(services.usage_record(ctx.viewer, UsageRecord(batch, "graphql")))


def campaign_pk(campaign_id: str | None) -> int | None:
    """A campaign filter's id; one that names no campaign matches nothing (no campaign has id 0)."""
    return None if campaign_id is None else ids.decode(campaign_id, "Campaign") or 0


async def usage_events(
    ctx: Context,
    customer_id: str,
    unit_type: UnitType | None,
    paid: bool | None,
    since: datetime | None,
    until: datetime | None,
    first: int | None,
    after: str | None,
    *,
    case_type: str | None = None,
    campaign_id: str | None = None,
) -> Page[UsageEvent]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    narrowed = read.UsageFilter(unit_type, paid, since, until, case_type, campaign_pk(campaign_id))
    qs = await read.usage_events(ctx.viewer, pk, narrowed)
    return await paginate(qs, first, after, newest_first=True)


async def usage_summary(
    ctx: Context,
    customer_id: str,
    since: date,
    until: date,
    group_by: str,
    *,
    case_type: str | None = None,
    campaign_id: str | None = None,
) -> tuple[list[read.SummaryRow], bool]:
    """The summary rows, and whether the viewer may see their costs."""
    pk = decode_global_id(customer_id, "Customer", "customerId")
    rows = await read.usage_summary(
        ctx.viewer, pk, since, until, group_by, case_type=case_type, campaign_id=campaign_pk(campaign_id)
    )
    return rows, await prices_visible(ctx, pk)


async def usage_dashboard(ctx: Context, customer_id: str, since: date, until: date) -> read.Dashboard:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await read.usage_dashboard(ctx.viewer, pk, since, until)


async def campaigns_of(ctx: Context, customer_id: int, first: int | None, after: str | None) -> Page[Campaign]:
    """`Customer.campaigns`, batched with the other customers of the same request."""
    return await ctx.loaders.campaigns_by_customer.load((customer_id, page_size(first), cursor_pk(Campaign, after)))


async def rate_card(ctx: Context, partner_id: int) -> list[Rate]:
    """The partner's current prices; none for a customer's people while the customer's pricing is hidden."""
    customer_id = ctx.viewer.customer_id
    if ctx.viewer.is_customer_user and customer_id is not None:
        if not await ctx.loaders.prices_visible.load(customer_id):
            return []
    return (await rate_book([partner_id])).current(partner_id)


async def prices_visible(ctx: Context, customer_id: int) -> bool:
    """Whether the viewer may see this (visible) customer's prices and costs (domain/features/pricing.py)."""
    return bool(await ctx.loaders.prices_visible.load(customer_id))
