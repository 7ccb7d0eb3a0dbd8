"""AI credits, partner credit pools, USD wallets and billing preferences."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.billing import commands, credits, preferences, wallet
from domain.billing.models import BillingMode as DomainBillingMode
from domain.billing.models import BillingPreferences
from domain.billing.models import RefillRequest as RefillRequestRow
from domain.billing.models import RefillRequestStatus as DomainRefillRequestStatus
from domain.billing.read import CreditState, PoolState, WalletState, low_balance_level
from domain.ledger.models import Transfer as TransferRow
from domain.ledger.models import TransferKind as DomainTransferKind
from resolvers import billing as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import BillingError
from schema.nodes import Connection, ModelNode, maybe_view, shows
from schema.scalars import JSON, Money, usd

if TYPE_CHECKING:
    from schema.accounts import User
    from schema.customers import Customer
    from schema.partners import Partner

BillingMode = strawberry.enum(DomainBillingMode, name="BillingMode")
RefillRequestStatus = strawberry.enum(DomainRefillRequestStatus, name="RefillRequestStatus")
TransferKind = strawberry.enum(DomainTransferKind, name="TransferKind")


@strawberry.enum(description="The credit meter's colour: primary, orange (below the low threshold), red (<10%).")
class CreditHealth(enum.Enum):
    OK = "OK"
    LOW = "LOW"
    CRITICAL = "CRITICAL"


@shows(CreditState)
@strawberry.type(description="A customer's AI credits: `available | used | assigned`. Node id = the customer's.")
class CreditBalance(relay.Node):
    id: relay.NodeID[int]
    available: Decimal
    used: Decimal
    assigned: Decimal
    expired: Decimal
    low_credit_threshold: Decimal | None
    health: CreditHealth

    @classmethod
    def of(cls, state: CreditState) -> CreditBalance:
        return cls(
            id=state.customer_id,
            available=state.available,
            used=state.used,
            assigned=state.assigned,
            expired=state.expired,
            low_credit_threshold=state.low_threshold,
            health=CreditHealth(state.health),
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # one coroutine for Node's overloads on `required`
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[CreditBalance | None]:
        ids = [int(i) for i in node_ids]
        states = await info.context.loaders.credits_by_customer.load_many(ids)
        return [cls.of(s) if s else None for s in states]


@shows(PoolState)
@strawberry.type(description="A partner's credit pool: what it can still hand out and what its customers hold.")
class CreditPool:
    available: Decimal
    assigned: Decimal

    @classmethod
    def of(cls, state: PoolState) -> CreditPool:
        return cls(available=state.available, assigned=state.assigned)


@shows(TransferRow)
@strawberry.type
class LedgerTransfer(ModelNode):
    loader = "transfer_by_id"
    id: relay.NodeID[int]
    kind: TransferKind  # type: ignore[valid-type]
    currency: str
    amount: Decimal
    metadata: JSON
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field(
        description="The debited account's balance right after; null unless the viewer owns that account (a "
        "customer user never sees a partner's pool or revenue, nor a funding account)."
    )
    async def debit_balance_after(self, info: Info) -> Decimal | None:
        return await r.balance_after(info.context, self.model.debit_account_id, self.model.debit_balance_after)

    @strawberry.field(description="The credited account's balance right after; shown like `debitBalanceAfter`.")
    async def credit_balance_after(self, info: Info) -> Decimal | None:
        return await r.balance_after(info.context, self.model.credit_account_id, self.model.credit_balance_after)


@strawberry.type(description="One manual refill of a wallet, with the balance right after it.")
class WalletRefill(ModelNode):
    loader = "wallet_refill_by_id"
    id: relay.NodeID[int]
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field
    def amount(self) -> Money:
        return usd(self.model.amount)

    @strawberry.field
    def balance_after(self) -> Money:
        return usd(self.model.credit_balance_after)

    @strawberry.field
    def reference(self) -> str:
        return str((self.model.metadata or {}).get("reference", ""))


@strawberry.type(description="The internal refill-needed workflow item; closed by the next refill.")
class RefillRequest:
    id: strawberry.ID
    status: RefillRequestStatus  # type: ignore[valid-type]
    requested_amount: Money | None
    balance_at_open: Money
    threshold: Money
    opened_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, row: RefillRequestRow) -> RefillRequest:
        return cls(
            id=strawberry.ID(str(row.id)),
            status=row.status,
            requested_amount=usd(row.requested_amount) if row.requested_amount is not None else None,
            balance_at_open=usd(row.balance_at_open),
            threshold=usd(row.threshold),
            opened_at=row.opened_at,
            closed_at=row.closed_at,
        )


@shows(WalletState)
@strawberry.type(description="A customer's prepaid USD wallet. Node id = the customer's.")
class Wallet(relay.Node):
    id: relay.NodeID[int]
    balance: Money
    refill_amount: Money | None
    refill_threshold: Money | None
    low_balance_level: Money | None = strawberry.field(description="30% of the refill amount.")
    estimated_days_until_refill: Decimal | None = strawberry.field(
        description="(balance − threshold) ÷ trailing 7-day average daily spend; null without spend."
    )
    refill_request: RefillRequest | None

    @strawberry.field(description="Refills, newest first.")
    async def refills(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[WalletRefill]:
        return Connection.of(await r.refills(info.context, self.id, first, after), WalletRefill)

    @classmethod
    def of(cls, state: WalletState) -> Wallet:
        low = state.low_balance_level
        return cls(
            id=state.customer_id,
            balance=usd(state.balance),
            refill_amount=usd(state.refill_amount) if state.refill_amount is not None else None,
            refill_threshold=usd(state.refill_threshold) if state.refill_threshold is not None else None,
            low_balance_level=usd(low) if low is not None else None,
            estimated_days_until_refill=state.estimated_days_until_refill,
            refill_request=RefillRequest.of(state.refill_request) if state.refill_request else None,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # one coroutine for Node's overloads on `required`
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Wallet | None]:
        out: list[Wallet | None] = []
        for raw in node_ids:
            customer = await info.context.loaders.customer_by_id.load(int(raw))
            out.append(cls.of(await r.wallet_state(info.context, customer.id)) if customer else None)
        return out


@shows(BillingPreferences)
@strawberry.type(name="BillingPreferences")
class BillingPreferencesType:
    billing_mode: BillingMode  # type: ignore[valid-type]
    monthly_spending_cap: Money | None
    cap_alert_at_80: bool
    refill_amount: Money | None
    refill_threshold: Money | None
    low_balance_alert: bool
    refill_processed_alert: bool
    low_credit_threshold: Decimal | None
    extra_alert_recipients: list[str]
    auto_top_up: bool
    model: strawberry.Private[Any]

    @strawberry.field(description="Always on: sent when the account reaches 100% of the monthly cap.")
    def cap_reached_alert(self) -> bool:
        return True

    @strawberry.field(description="Always on: wallet/payment failures go to the billing contacts.")
    def payment_failed_alert(self) -> bool:
        return True

    @strawberry.field(description="Wallet balance at which the optional low-balance alert fires (30% of refill).")
    def low_balance_level(self) -> Money | None:
        level = low_balance_level(self.model.refill_amount)
        return usd(level) if level is not None else None

    @strawberry.field(description="An active admin of the customer who receives billing alerts.")
    async def primary_contact(self, info: Info) -> Annotated[User, strawberry.lazy("schema.accounts")] | None:
        uid = self.model.primary_contact_user_id
        return maybe_view(await info.context.loaders.user_by_id.load(uid)) if uid else None

    @classmethod
    def of(cls, prefs: BillingPreferences) -> BillingPreferencesType:
        def money(value: Decimal | None) -> Money | None:
            return usd(value) if value is not None else None

        return cls(
            billing_mode=prefs.billing_mode,
            monthly_spending_cap=money(prefs.monthly_spending_cap),
            cap_alert_at_80=prefs.cap_alert_at_80,
            refill_amount=money(prefs.refill_amount),
            refill_threshold=money(prefs.refill_threshold),
            low_balance_alert=prefs.low_balance_alert,
            refill_processed_alert=prefs.refill_processed_alert,
            low_credit_threshold=prefs.low_credit_threshold,
            extra_alert_recipients=list(prefs.extra_alert_recipients or []),
            auto_top_up=prefs.auto_top_up,
            model=prefs,
        )


# ---------------------------------------------------------------- mutations


@strawberry.input
class PartnerCreditsAddInput:
    partner_id: strawberry.ID
    credits: Decimal
    idempotency_key: str
    note: str | None = None


@strawberry.input
class CustomerCreditsRechargeInput:
    customer_id: strawberry.ID
    credits: Decimal
    idempotency_key: str


@strawberry.input
class CustomerCreditsReclaimInput:
    customer_id: strawberry.ID
    credits: Decimal
    idempotency_key: str


@strawberry.input
class WalletRefillInput:
    customer_id: strawberry.ID
    amount: Decimal = strawberry.field(description='USD as a decimal string, e.g. "100.00".')
    idempotency_key: str
    reference: str | None = None


@strawberry.input
class BillingPreferencesUpdateInput:
    customer_id: strawberry.ID
    billing_mode: BillingMode | None = strawberry.UNSET  # type: ignore[valid-type]
    primary_contact_user_id: strawberry.ID | None = strawberry.UNSET
    monthly_spending_cap: Decimal | None = strawberry.UNSET
    cap_alert_at_80: bool | None = strawberry.UNSET
    refill_amount: Decimal | None = strawberry.UNSET
    refill_threshold: Decimal | None = strawberry.UNSET
    low_balance_alert: bool | None = strawberry.UNSET
    refill_processed_alert: bool | None = strawberry.UNSET
    low_credit_threshold: Decimal | None = strawberry.UNSET
    extra_alert_recipients: list[str] | None = strawberry.UNSET
    auto_top_up: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Charge the saved card for the refill amount when the balance crosses the refill threshold "
        "(once per crossing; needs the card provider).",
    )


@strawberry.type
class PartnerCreditsAddPayload:
    transfer: LedgerTransfer | None
    errors: list[BillingError]
    partner_id: strawberry.Private[int | None]

    @strawberry.field
    async def partner(self, info: Info) -> Annotated[Partner, strawberry.lazy("schema.partners")] | None:
        return maybe_view(await info.context.loaders.partner_by_id.load(self.partner_id)) if self.partner_id else None

    @strawberry.field
    async def credit_pool(self, info: Info) -> CreditPool | None:
        if not self.partner_id:
            return None
        state = await info.context.loaders.pool_by_partner.load(self.partner_id)
        return CreditPool(available=state.available, assigned=state.assigned)


@strawberry.type
class CustomerCreditsPayload:
    transfer: LedgerTransfer | None
    errors: list[BillingError]
    customer_id: strawberry.Private[int | None]

    @strawberry.field
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        return maybe_view(await r.customer_of(info.context, self.customer_id)) if self.customer_id else None

    @strawberry.field
    async def credits(self, info: Info) -> CreditBalance | None:
        if not self.customer_id:
            return None
        state = await info.context.loaders.credits_by_customer.load(self.customer_id)
        return CreditBalance.of(state) if state else None


CustomerCreditsRechargePayload = strawberry.type(type("CustomerCreditsRechargePayload", (CustomerCreditsPayload,), {}))
CustomerCreditsReclaimPayload = strawberry.type(type("CustomerCreditsReclaimPayload", (CustomerCreditsPayload,), {}))


@strawberry.type
class WalletRefillPayload:
    refill: WalletRefill | None
    transfer: LedgerTransfer | None
    errors: list[BillingError]
    customer_id: strawberry.Private[int | None]

    @strawberry.field
    async def wallet(self, info: Info) -> Wallet | None:
        if not self.customer_id:
            return None
        return Wallet.of(await r.wallet_state(info.context, self.customer_id))


@strawberry.type
class BillingPreferencesUpdatePayload:
    billing: BillingPreferencesType | None
    errors: list[BillingError]


@strawberry.type
class BillingMutations:
    @strawberry.mutation(description="Platform admins: adds credits to a partner's pool.")
    async def partner_credits_add(self, info: Info, input: PartnerCreditsAddInput) -> PartnerCreditsAddPayload:
        ran = await r.run(info.context, credits.partner_credits_add, input, commands.PartnerCreditsAdd)
        return PartnerCreditsAddPayload(
            transfer=LedgerTransfer.maybe(ran.outcome.value),
            errors=BillingError.list(ran.outcome.errors),
            partner_id=ran.command.partner_id if ran.command else None,
        )

    @strawberry.mutation(description="Moves credits from the partner's pool to the customer.")
    async def customer_credits_recharge(
        self, info: Info, input: CustomerCreditsRechargeInput
    ) -> CustomerCreditsRechargePayload:  # type: ignore[valid-type]
        ran = await r.run(info.context, credits.customer_credits_recharge, input, commands.CustomerCreditsRecharge)
        return CustomerCreditsRechargePayload(
            transfer=LedgerTransfer.maybe(ran.outcome.value),
            errors=BillingError.list(ran.outcome.errors),
            customer_id=ran.command.customer_id if ran.command and ran.outcome.value else None,
        )

    @strawberry.mutation(description="Returns unused credits from the customer to the partner's pool.")
    async def customer_credits_reclaim(
        self, info: Info, input: CustomerCreditsReclaimInput
    ) -> CustomerCreditsReclaimPayload:  # type: ignore[valid-type]
        ran = await r.run(info.context, credits.customer_credits_reclaim, input, commands.CustomerCreditsReclaim)
        return CustomerCreditsReclaimPayload(
            transfer=LedgerTransfer.maybe(ran.outcome.value),
            errors=BillingError.list(ran.outcome.errors),
            customer_id=ran.command.customer_id if ran.command and ran.outcome.value else None,
        )

    @strawberry.mutation(description="Records a manual wallet refill (closes the open refill request).")
    async def wallet_refill(self, info: Info, input: WalletRefillInput) -> WalletRefillPayload:
        ran = await r.run(info.context, wallet.wallet_refill, input, commands.WalletRefill)
        return WalletRefillPayload(
            refill=WalletRefill.maybe(ran.outcome.value),
            transfer=LedgerTransfer.maybe(ran.outcome.value),
            errors=BillingError.list(ran.outcome.errors),
            customer_id=ran.command.customer_id if ran.command and ran.outcome.value else None,
        )

    @strawberry.mutation(description="Billing mode, primary contact, spending cap, wallet refill settings, alerts.")
    async def billing_preferences_update(
        self, info: Info, input: BillingPreferencesUpdateInput
    ) -> BillingPreferencesUpdatePayload:
        outcome = await perform(
            info.context, preferences.billing_preferences_update, input, commands.BillingPreferencesUpdate
        )
        return BillingPreferencesUpdatePayload(
            billing=BillingPreferencesType.of(outcome.value) if outcome.value else None,
            errors=BillingError.list(outcome.errors),
        )
