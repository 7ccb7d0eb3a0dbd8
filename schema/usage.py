"""Usage metering: events, summaries, holds, the monthly spending cap, campaigns and rate cards."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.billing import cap
from domain.billing.cap import CapState
from domain.billing.commands import SpendingCapUpdate
from domain.campaigns import services as campaigns
from domain.campaigns.commands import CampaignCreate
from domain.campaigns.models import Campaign as CampaignRow
from domain.campaigns.models import CampaignStatus as DomainCampaignStatus
from domain.campaigns.models import PauseReason as DomainPauseReason
from domain.usage import holds
from domain.usage.commands import UsageAuthorize, UsageHoldRelease
from domain.usage.models import Direction as DomainDirection
from domain.usage.models import Funding as DomainFunding
from domain.usage.models import HoldStatus as DomainHoldStatus
from domain.usage.models import UnitType as DomainUnitType
from domain.usage.rating import Rate
from domain.usage.read import SummaryRow
from resolvers import usage as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import ErrorCode, UsageError
from schema.nodes import Connection, ModelNode, maybe_view, shows
from schema.scalars import JSON, Money, usd

if TYPE_CHECKING:
    from schema.customers import Customer

UnitType = strawberry.enum(DomainUnitType, name="UnitType")
HIDDEN_PRICE = (
    "Null for the customer's people, API keys and embed tokens while its pricing is hidden (`showPricing` off, "
    "or AI credits on)."
)
Funding = strawberry.enum(DomainFunding, name="Funding", description="What paid for the usage.")
HoldStatus = strawberry.enum(DomainHoldStatus, name="HoldStatus")
Direction = strawberry.enum(DomainDirection, name="Direction", description="Which way a call or message went.")
CampaignStatus = strawberry.enum(DomainCampaignStatus, name="CampaignStatus")
PauseReason = strawberry.enum(DomainPauseReason, name="PauseReason")


@strawberry.enum
class UsageGroupBy(enum.Enum):
    DAY = "DAY"
    MONTH = "MONTH"
    UNIT_TYPE = "UNIT_TYPE"


@strawberry.enum
class SpendingCapStatus(enum.Enum):
    NONE = "NONE"
    UNDER = "UNDER"
    WARNING = "WARNING"
    REACHED = "REACHED"


@strawberry.type(description="One metered event, rated when it was recorded.")
class UsageEvent(ModelNode):
    loader = "usage_event_by_id"
    id: relay.NodeID[int]
    unit_type: UnitType  # type: ignore[valid-type]
    quantity: Decimal
    credits: Decimal
    occurred_at: datetime
    recorded_at: datetime
    case_type: str
    idempotency_key: str
    funding: Funding  # type: ignore[valid-type]
    paid: bool = strawberry.field(description="Settled from credits or the wallet (or on a paid invoice).")
    metadata: JSON
    direction: Direction | None  # type: ignore[valid-type]
    from_number: str | None
    to_number: str | None
    duration_seconds: int | None
    segments: int | None
    call_id: str | None
    model: strawberry.Private[Any]

    @strawberry.field(description=HIDDEN_PRICE)
    async def cost(self, info: Info) -> Money | None:
        return usd(self.model.cost) if await r.prices_visible(info.context, self.model.customer_id) else None

    @strawberry.field(description="The campaign the call or message belongs to, when one was named.")
    async def campaign(self, info: Info) -> Campaign | None:
        cid = self.model.campaign_id
        return Campaign.maybe(await info.context.loaders.campaign_by_id.load(cid)) if cid else None

    @strawberry.field(description=HIDDEN_PRICE)
    async def unit_price(self, info: Info) -> Money | None:
        return usd(self.model.unit_price) if await r.prices_visible(info.context, self.model.customer_id) else None


@strawberry.type
class UsageSummaryRow:
    period: date | None = strawberry.field(description="Day or first day of the month; null for UNIT_TYPE.")
    unit_type: UnitType  # type: ignore[valid-type]
    quantity: Decimal
    cost: Money | None = strawberry.field(description=HIDDEN_PRICE)
    unpaid_cost: Money | None = strawberry.field(description=HIDDEN_PRICE)
    credits: Decimal
    events: int

    @classmethod
    def of(cls, row: SummaryRow, priced: bool = True) -> UsageSummaryRow:
        """A summary row; without its costs where the viewer may not see prices."""
        return cls(
            period=row.period,
            unit_type=row.unit_type,
            quantity=row.quantity,
            cost=usd(row.cost) if priced else None,
            unpaid_cost=usd(row.unpaid_cost) if priced else None,
            credits=row.credits,
            events=row.events,
        )


@strawberry.input
class UsageEventFilter:
    unit_type: UnitType | None = None  # type: ignore[valid-type]
    paid: bool | None = None
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None
    case_type: str | None = strawberry.field(default=None, description='Exactly this case type ("" for none).')
    campaign_id: strawberry.ID | None = None


@strawberry.type(description="One figure of the usage dashboard over a period: how much, and what it cost.")
class UsageFigure:
    quantity: Decimal
    cost: Money | None = strawberry.field(description="Null where the customer's pricing is hidden from the viewer.")
    events: int


@strawberry.type(description="The usage dashboard (seed 001), from the daily rollups.")
class UsageDashboard:
    voice_minutes: UsageFigure
    sms_segments: UsageFigure
    emails: UsageFigure
    storage_mb: UsageFigure = strawberry.field(description="Storage used, in MB-months over the period.")
    total_cost: Money | None


@strawberry.type(description="A pre-authorised amount that counts against the cap and balance until used.")
class UsageHold(ModelNode):
    loader = "usage_hold_by_id"
    id: relay.NodeID[int]
    unit_type: UnitType  # type: ignore[valid-type]
    estimated_quantity: Decimal
    credits: Decimal
    funding: Funding  # type: ignore[valid-type]
    status: HoldStatus  # type: ignore[valid-type]
    expires_at: datetime
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field(description="The cost held against the cap and the balance. " + HIDDEN_PRICE)
    async def amount(self, info: Info) -> Money | None:
        return usd(self.model.amount) if await r.prices_visible(info.context, self.model.customer_id) else None


@shows(CapState)
@strawberry.type(description="The monthly spending cap (calendar month, UTC). Node id = the customer's.")
class SpendingCap(relay.Node):
    id: relay.NodeID[int]
    cap: Money | None
    spent_this_month: Money
    projected_total: Money = strawberry.field(description="Month-to-date spend ÷ elapsed days × days in month.")
    status: SpendingCapStatus

    @classmethod
    def of(cls, state: CapState) -> SpendingCap:
        return cls(
            id=state.customer_id,
            cap=usd(state.cap) if state.cap is not None else None,
            spent_this_month=usd(state.spent),
            projected_total=usd(state.projected),
            status=SpendingCapStatus(state.status),
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # one coroutine for Node's overloads on `required`
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[SpendingCap | None]:
        states = await info.context.loaders.cap_by_customer.load_many([int(i) for i in node_ids])
        return [cls.of(s) if s else None for s in states]


@shows(CampaignRow)
@strawberry.type
class Campaign(ModelNode):
    loader = "campaign_by_id"
    id: relay.NodeID[int]
    name: str
    status: CampaignStatus  # type: ignore[valid-type]
    pause_reason: PauseReason | None  # type: ignore[valid-type]
    paused_at: datetime | None
    created_at: datetime
    model: strawberry.Private[Any]


@shows(Rate)
@strawberry.type(description="A partner's price for one unit type, effective from `effectiveFrom`.")
class RateCardRate:
    unit_type: UnitType  # type: ignore[valid-type]
    price: Money
    credit_price: Decimal = strawberry.field(description="AI credits per unit for credit-funded customers.")
    effective_from: datetime | None = strawberry.field(description="Null: the platform default.")
    is_default: bool

    @classmethod
    def of(cls, rate: Rate) -> RateCardRate:
        return cls(
            unit_type=rate.unit_type,
            price=usd(rate.price),
            credit_price=rate.credit_price,
            effective_from=rate.effective_from,
            is_default=rate.effective_from is None,
        )


@strawberry.input
class RateCardRateInput:
    unit_type: UnitType  # type: ignore[valid-type]
    price: Decimal
    credit_price: Decimal


# ---------------------------------------------------------------- mutations


@strawberry.input
class UsageEventInput:
    idempotency_key: str
    customer_id: strawberry.ID
    unit_type: UnitType  # type: ignore[valid-type]
    quantity: Decimal
    occurred_at: datetime
    case_type: str | None = None
    hold_id: strawberry.ID | None = None
    metadata: JSON | None = None
    direction: Direction | None = None  # type: ignore[valid-type]
    from_number: str | None = strawberry.field(default=None, description="The calling or sending number.")
    to_number: str | None = None
    duration_seconds: int | None = strawberry.field(default=None, description="A call's length.")
    segments: int | None = strawberry.field(default=None, description="A message's segments.")
    campaign_id: strawberry.ID | None = strawberry.field(default=None, description="One of the customer's campaigns.")
    call_id: str | None = strawberry.field(default=None, description="The platform's id of the call or message.")


@strawberry.input
class UsageRecordInput:
    events: list[UsageEventInput]


@strawberry.type
class UsageRejection:
    index: int
    code: ErrorCode  # type: ignore[valid-type]
    message: str
    field: str | None


@strawberry.type
class UsageRecordPayload:
    accepted: int
    duplicates: int
    rejected: list[UsageRejection]
    errors: list[UsageError]


@strawberry.input
class UsageAuthorizeInput:
    customer_id: strawberry.ID
    unit_type: UnitType  # type: ignore[valid-type]
    estimated_quantity: Decimal
    idempotency_key: str


@strawberry.type
class UsageAuthorizePayload:
    hold: UsageHold | None
    errors: list[UsageError]


@strawberry.input
class UsageHoldReleaseInput:
    hold_id: strawberry.ID


@strawberry.type
class UsageHoldReleasePayload:
    hold: UsageHold | None
    errors: list[UsageError]


@strawberry.input
class SpendingCapUpdateInput:
    customer_id: strawberry.ID
    cap: Decimal | None = strawberry.field(description="USD; null removes the cap.")


@strawberry.type
class SpendingCapUpdatePayload:
    spending_cap: SpendingCap | None
    errors: list[UsageError]
    customer_id: strawberry.Private[int | None] = None

    @strawberry.field
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        if self.customer_id is None:
            return None
        return maybe_view(await info.context.loaders.customer_by_id.load(self.customer_id))


@strawberry.input
class CampaignCreateInput:
    customer_id: strawberry.ID
    name: str


@strawberry.type
class CampaignCreatePayload:
    campaign: Campaign | None
    errors: list[UsageError]


@strawberry.type
class UsageQueries:
    @strawberry.field(description="The detailed usage log of a customer, newest first.")
    async def usage_events(
        self,
        info: Info,
        customer_id: strawberry.ID,
        filter: UsageEventFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[UsageEvent]:
        f = filter or UsageEventFilter()
        page = await r.usage_events(
            info.context,
            customer_id,
            f.unit_type,
            f.paid,
            f.from_,
            f.to,
            first,
            after,
            case_type=f.case_type,
            campaign_id=f.campaign_id,
        )
        return Connection.of(page, UsageEvent)

    @strawberry.field(
        description="Quantities and cost per unit type, by day, month or unit type (inclusive days, UTC)."
    )
    async def usage_summary(
        self,
        info: Info,
        customer_id: strawberry.ID,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
        group_by: UsageGroupBy = UsageGroupBy.UNIT_TYPE,
        case_type: Annotated[str | None, strawberry.argument(description='Only this case type ("" for none).')] = None,
        campaign_id: strawberry.ID | None = None,
    ) -> list[UsageSummaryRow]:
        rows, priced = await r.usage_summary(
            info.context, customer_id, from_, to, group_by.value, case_type=case_type, campaign_id=campaign_id
        )
        return [UsageSummaryRow.of(row, priced) for row in rows]

    @strawberry.field(
        description="Voice minutes, SMS segments, emails and storage over inclusive UTC days, from the rollups."
    )
    async def usage_dashboard(
        self,
        info: Info,
        customer_id: strawberry.ID,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
    ) -> UsageDashboard:
        board = await r.usage_dashboard(info.context, customer_id, from_, to)

        def figure(f: Any) -> UsageFigure:
            return UsageFigure(quantity=f.quantity, cost=usd(f.cost) if f.cost is not None else None, events=f.events)

        return UsageDashboard(
            voice_minutes=figure(board.voice_minutes),
            sms_segments=figure(board.sms_segments),
            emails=figure(board.emails),
            storage_mb=figure(board.storage_mb),
            total_cost=usd(board.total_cost) if board.total_cost is not None else None,
        )


@strawberry.type
class UsageMutations:
    @strawberry.mutation(description="Records up to 1,000 usage events; each is rated and charged once.")
    async def usage_record(self, info: Info, input: UsageRecordInput) -> UsageRecordPayload:
        outcome = await r.usage_record(info.context, input.events)
        result = outcome.value
        return UsageRecordPayload(
            accepted=result.accepted if result else 0,
            duplicates=result.duplicates if result else 0,
            rejected=[
                UsageRejection(index=x.index, code=x.code, message=x.message, field=x.field)
                for x in (result.rejected if result else [])
            ],
            errors=UsageError.list(outcome.errors),
        )

    @strawberry.mutation(description="Pre-authorises a call or campaign step: a hold against cap and balance.")
    async def usage_authorize(self, info: Info, input: UsageAuthorizeInput) -> UsageAuthorizePayload:
        outcome = await perform(info.context, holds.usage_authorize, input, UsageAuthorize)
        return UsageAuthorizePayload(hold=UsageHold.maybe(outcome.value), errors=UsageError.list(outcome.errors))

    @strawberry.mutation(description="Releases an unused hold.")
    async def usage_hold_release(self, info: Info, input: UsageHoldReleaseInput) -> UsageHoldReleasePayload:
        outcome = await perform(info.context, holds.usage_hold_release, input, UsageHoldRelease)
        return UsageHoldReleasePayload(hold=UsageHold.maybe(outcome.value), errors=UsageError.list(outcome.errors))

    @strawberry.mutation(description="Sets, raises or removes the monthly cap; pauses or resumes campaigns.")
    async def spending_cap_update(self, info: Info, input: SpendingCapUpdateInput) -> SpendingCapUpdatePayload:
        outcome = await perform(info.context, cap.spending_cap_update, input, SpendingCapUpdate)
        state = outcome.value
        return SpendingCapUpdatePayload(
            spending_cap=SpendingCap.of(state) if state else None,
            errors=UsageError.list(outcome.errors),
            customer_id=state.customer_id if state else None,
        )

    @strawberry.mutation
    async def campaign_create(self, info: Info, input: CampaignCreateInput) -> CampaignCreatePayload:
        outcome = await perform(info.context, campaigns.campaign_create, input, CampaignCreate)
        return CampaignCreatePayload(campaign=Campaign.maybe(outcome.value), errors=UsageError.list(outcome.errors))
