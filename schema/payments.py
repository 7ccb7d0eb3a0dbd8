"""Card payments and invoices: the billing portal, wallet top-ups by card, monthly invoices."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from domain.billing.commands import InvoiceMarkPaid, WalletTopUpCheckout
from domain.invoices import links
from domain.invoices import services as invoices
from domain.invoices.models import Invoice as InvoiceRow
from domain.invoices.models import InvoiceStatus as DomainInvoiceStatus
from domain.payments import services as payments
from domain.payments.models import Payment as PaymentRow
from domain.payments.models import PaymentPurpose as DomainPaymentPurpose
from domain.payments.models import PaymentStatus as DomainPaymentStatus
from resolvers import payments as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import BillingError, ErrorCode
from schema.nodes import Connection, ModelNode, maybe_view, shows
from schema.scalars import Money, usd

if TYPE_CHECKING:
    from schema.customers import Customer
    from schema.usage import UnitType

InvoiceStatus = strawberry.enum(
    DomainInvoiceStatus,
    name="InvoiceStatus",
    description="DRAFT: not finalized; OPEN: sent, awaiting payment; PAID; VOID: cancelled, nothing owed.",
)
PaymentStatus = strawberry.enum(DomainPaymentStatus, name="PaymentStatus")
PaymentPurpose = strawberry.enum(DomainPaymentPurpose, name="PaymentPurpose")


@strawberry.type(description="A link to the payment provider's billing portal (payment methods, invoices).")
class BillingPortalSession:
    url: str | None = strawberry.field(description="Open it at once: it expires within minutes.")
    reason: ErrorCode | None = strawberry.field(  # type: ignore[valid-type]
        description="Why there is no URL: PROVIDER_NOT_CONFIGURED (manual payments) or PROVIDER_ERROR."
    )


@shows(PaymentRow)
@strawberry.type(description="A card payment through the payment provider.")
class Payment(ModelNode):
    loader = "payment_by_id"
    id: relay.NodeID[int]
    purpose: PaymentPurpose  # type: ignore[valid-type]
    status: PaymentStatus  # type: ignore[valid-type]
    checkout_url: str | None = strawberry.field(description="Where the customer pays (checkout top-ups).")
    created_at: datetime
    completed_at: datetime | None
    model: strawberry.Private[Any]

    @strawberry.field
    def amount(self) -> Money:
        return usd(self.model.amount)

    @strawberry.field
    def failure_reason(self) -> str | None:
        return self.model.failure_reason or None


@strawberry.type
class InvoiceLine:
    unit_type: Annotated[UnitType, strawberry.lazy("schema.usage")]  # type: ignore[valid-type]
    quantity: Decimal
    unit_price: Money
    amount: Money


@shows(InvoiceRow)
@strawberry.type(description="A monthly invoice of a MONTHLY_INVOICE customer's usage, numbered per partner.")
class Invoice(ModelNode):
    loader = "invoice_by_id"
    id: relay.NodeID[int]
    number: str
    status: InvoiceStatus  # type: ignore[valid-type]
    period_start: date
    period_end: date = strawberry.field(description="The first day after the period.")
    finalized_at: datetime | None
    paid_at: datetime | None
    payment_reference: str
    model: strawberry.Private[Any]

    @strawberry.field(description="The calendar month, `YYYY-MM` (UTC).")
    def period(self) -> str:
        return f"{self.model.period_start:%Y-%m}"

    @strawberry.field
    def lines(self) -> list[InvoiceLine]:
        return [
            InvoiceLine(
                unit_type=line["unit_type"],
                quantity=Decimal(str(line["quantity"])),
                unit_price=usd(Decimal(str(line["unit_price"]))),
                amount=usd(Decimal(str(line["amount"]))),
            )
            for line in self.model.lines
        ]

    @strawberry.field(description="Σ of the lines: the rated usage, exact.")
    def subtotal(self) -> Money:
        return usd(self.model.subtotal)

    @strawberry.field(description="What is owed: the subtotal rounded to cents.")
    def total(self) -> Money:
        return usd(self.model.total)

    @strawberry.field(description="The white-label PDF (a signed link, valid 24 hours).")
    def pdf_url(self) -> str:
        return links.url(self.model.id)

    @strawberry.field
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        return maybe_view(await info.context.loaders.customer_by_id.load(self.model.customer_id))


@strawberry.input
class WalletTopUpCheckoutInput:
    customer_id: strawberry.ID
    amount: Decimal = strawberry.field(description='USD as a decimal string, e.g. "100.00" (1.00 to 100000.00).')
    idempotency_key: str


@strawberry.type
class WalletTopUpCheckoutPayload:
    checkout_url: str | None = strawberry.field(description="Send the customer here to pay by card.")
    payment: Payment | None
    errors: list[BillingError]


@strawberry.input
class InvoiceMarkPaidInput:
    invoice_id: strawberry.ID
    idempotency_key: str
    reference: str | None = None


@strawberry.type
class InvoiceMarkPaidPayload:
    invoice: Invoice | None
    errors: list[BillingError]


@strawberry.type
class PaymentQueries:
    @strawberry.field(
        description="A link to the payment provider's billing portal for the customer (its admins and partner "
        "staff); `url` is null, with the `reason`, when no card provider is configured."
    )
    async def billing_portal_session(
        self, info: Info, customer_id: strawberry.ID, return_url: str
    ) -> BillingPortalSession:
        session = await r.billing_portal_session(info.context, customer_id, return_url)
        return BillingPortalSession(url=session.url, reason=session.reason)

    @strawberry.field(description="A customer's invoices, newest first.")
    async def invoices(
        self, info: Info, customer_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[Invoice]:
        return Connection.of(await r.invoices_page(info.context, customer_id, first, after), Invoice)


@strawberry.type
class PaymentMutations:
    @strawberry.mutation(description="A card checkout page that tops the wallet up once paid (Stripe).")
    async def wallet_top_up_checkout(self, info: Info, input: WalletTopUpCheckoutInput) -> WalletTopUpCheckoutPayload:
        outcome = await perform(info.context, payments.wallet_top_up_checkout, input, WalletTopUpCheckout)
        payment = outcome.value
        return WalletTopUpCheckoutPayload(
            checkout_url=payment.checkout_url if payment else None,
            payment=Payment.maybe(payment),
            errors=BillingError.list(outcome.errors),
        )

    @strawberry.mutation(description="Records that an open invoice was paid outside Partnerdesk (manual provider).")
    async def invoice_mark_paid(self, info: Info, input: InvoiceMarkPaidInput) -> InvoiceMarkPaidPayload:
        outcome = await perform(info.context, invoices.invoice_mark_paid, input, InvoiceMarkPaid)
        return InvoiceMarkPaidPayload(invoice=Invoice.maybe(outcome.value), errors=BillingError.list(outcome.errors))
