"""Closing months into invoices, sending them, collecting them and marking them paid.

`close_month` (scheduled, idempotent) turns each customer's invoice-funded usage of a calendar month (UTC) into one
invoice: lines by unit type and price from the rated events, the exact subtotal, the total in cents, a number from
the partner's counter. Months close in order: an invoice holds every event of its period (and before) recorded by
its cutoff that no earlier invoice holds. Each invoice is written in one transaction that first locks the partner's counter row, so
two schedulers closing the same month serialise there, the second finds the invoice and stops, and numbers have no
gaps (a number is taken only by an invoice that commits with it). Usage recorded up to the close (`usage_cutoff`) is
in the invoice; usage of the month recorded later (events may arrive up to 35 days late) goes into the customer's
next invoice, so none is billed twice or never.

Paying clears the invoice's accrual in the ledger: the total from the partner's external funding into the
customer's invoice account, and the sub-cent rounding between it and the subtotal to or from revenue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage

from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.alerts.services import billing_contacts
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.commands import InvoiceMarkPaid
from domain.common.json import JsonObject, JsonValue
from domain.common.validation import Validator
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.events import services as events
from domain.invoices import links
from domain.invoices.models import Invoice, InvoiceCounter, InvoiceStatus
from domain.invoices.render import UNIT_LABELS, invoice_email
from domain.ledger import services as ledger
from domain.ledger.idempotency import Kept, check_key, money_mutation
from domain.ledger.models import Currency, TransferKind
from domain.partners.models import Partner
from domain.payments.models import Payment, PaymentPurpose, PaymentStatus
from domain.payments.providers import MANUAL, InvoiceLineOut, cents, provider
from domain.payments.services import fail_payment, provider_customer
from domain.usage.models import Funding, UsageEvent
from domain.usage.rules import MAX_AGE
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff, restrict

SYSTEM = Viewer.system("invoices")
INVOICE = Kept("invoice_id", Invoice)
# a month is closed this long after it ended: usage batches that were running at midnight have committed by then
CLOSE_GRACE = timedelta(minutes=15)
ZERO = Decimal(0)
Send = Callable[[EmailMessage], Awaitable[None]]


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _instant(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# ---------------------------------------------------------------- closing a month


async def close_month(month: date | None = None, now: datetime | None = None) -> int:
    """Invoices every customer with invoice-funded usage in `month` (default: the month before this one) that has
    none for it yet; returns how many it created. Nothing before the month ended plus CLOSE_GRACE."""
    moment = now or datetime.now(UTC)
    start = month_start(month) if month else month_start(month_start(moment.date()) - timedelta(days=1))
    end = next_month(start)
    if moment < _instant(end) + CLOSE_GRACE:
        return 0
    candidates: list[int] = (
        await _usage(start, end, moment)
        .distinct()
        .values_list(  # type: ignore[assignment]
            "customer_id", flat=True
        )
    )
    done = set(
        await Invoice.filter(period_start=start, customer_id__in=list(candidates)).values_list("customer_id", flat=True)
    )
    created = 0
    for customer_id in sorted(set(candidates) - done):
        created += await _close_customer(customer_id, start, end, moment)
    return created


def _usage(start: date, end: date, cutoff: datetime, customer_id: int | None = None) -> QuerySet[UsageEvent]:
    """Invoice-funded events of the month and earlier (up to MAX_AGE late), recorded by `cutoff`."""
    qs = UsageEvent.filter(
        funding=Funding.INVOICE,
        occurred_at__gte=_instant(start) - MAX_AGE,
        occurred_at__lt=_instant(end),
        recorded_at__lte=cutoff,
    )
    return qs.filter(customer_id=customer_id) if customer_id is not None else qs


def _plain(value: Decimal) -> str:
    """A decimal without trailing zeros or exponent: 15.500000 → "15.5"."""
    return f"{value.normalize():f}"


def _lines(rows: list[dict[str, object]]) -> list[JsonObject]:
    totals: dict[tuple[str, Decimal], list[Decimal]] = {}
    for row in rows:
        key = (str(row["unit_type"]), Decimal(str(row["unit_price"])))
        acc = totals.setdefault(key, [ZERO, ZERO])
        acc[0] += Decimal(str(row["quantity"]))
        acc[1] += Decimal(str(row["cost"]))
    order = list(UNIT_LABELS)
    return [
        {"unit_type": unit, "quantity": _plain(q), "unit_price": _plain(price), "amount": _plain(amount)}
        for (unit, price), (q, amount) in sorted(
            totals.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else 99, kv[0][1])
        )
    ]


async def _close_customer(customer_id: int, start: date, end: date, cutoff: datetime) -> int:
    customer = await Customer.get(id=customer_id)
    partner = await Partner.get(id=customer.partner_id)
    async with in_transaction():
        await InvoiceCounter.bulk_create([InvoiceCounter(partner_id=partner.id)], ignore_conflicts=True)
        counter = await InvoiceCounter.select_for_update().get(partner_id=partner.id)
        if await Invoice.filter(customer_id=customer.id, period_start__gte=start).exists():
            return 0  # another scheduler closed it while this one waited for the counter (or a later month)
        previous = await Invoice.filter(customer_id=customer.id).order_by("-period_start").first()
        usage = _usage(start, end, cutoff, customer.id)
        if previous is not None:
            # not on an earlier invoice: those hold everything of their period recorded by their cutoff
            usage = usage.filter(
                Q(recorded_at__gt=previous.usage_cutoff) | Q(occurred_at__gte=_instant(previous.period_end))
            )
        rows = await usage.values("unit_type", "unit_price", "quantity", "cost")
        if not rows:
            return 0
        lines = _lines(rows)
        subtotal = sum((Decimal(str(line["amount"])) for line in lines), ZERO)
        total = subtotal.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        sequence = counter.last_sequence + 1
        invoice = await Invoice.create(
            partner_id=partner.id,
            customer_id=customer.id,
            period_start=start,
            period_end=end,
            sequence=sequence,
            number=f"INV-{sequence:06d}",
            status=InvoiceStatus.OPEN,
            lines=lines,
            subtotal=subtotal,
            total=total,
            seller={"name": partner.name, "email": partner.sender_email, "color": partner.primary_color},
            bill_to={"name": customer.name, "address": _address(customer)},
            usage_cutoff=cutoff,
            finalized_at=cutoff,
        )
        counter.last_sequence = sequence
        await counter.save(update_fields=["last_sequence"])
        if total == ZERO:  # nothing to collect: settled at once
            await _settle(invoice, "nothing due", cutoff)
        await events.emit(
            events.INVOICE_FINALIZED, customer_id=customer.id, partner_id=partner.id, invoice_id=invoice.id
        )
        await record(
            SYSTEM,
            AuditEventType.BILLING,
            "invoice.finalize",
            object_type="Invoice",
            object_id=invoice.id,
            partner_id=partner.id,
            customer_id=customer.id,
            details={"number": invoice.number, "period": f"{start:%Y-%m}", "subtotal": str(subtotal)},
        )
    return 1


def _address(customer: Customer) -> str:
    parts = [customer.address1, customer.address2, customer.city, customer.state, customer.zip, customer.country]
    return ", ".join(p for p in parts if p)


# ---------------------------------------------------------------- paying


async def _settle(invoice: Invoice, reference: str, moment: datetime) -> None:
    """PAID, and the invoice's accrual cleared in the ledger (inside a transaction, the invoice locked)."""
    funding = ledger.external_funding(Currency.USD, invoice.partner_id)
    account = ledger.customer_invoice(invoice.customer_id, invoice.partner_id)
    revenue = ledger.revenue(Currency.USD, invoice.partner_id, invoice.customer_id)
    if invoice.total > ZERO:
        await ledger.post(
            funding,
            account,
            invoice.total,
            TransferKind.INVOICE_PAYMENT,
            metadata={"invoice_id": invoice.id, "number": invoice.number, "reference": reference},
            idempotency_key=f"invoice:{invoice.id}:paid",
        )
    rounding = invoice.total - invoice.subtotal
    if rounding != ZERO:
        debit, credit = (account, revenue) if rounding > ZERO else (revenue, account)
        await ledger.post(
            debit,
            credit,
            abs(rounding),
            TransferKind.ADJUSTMENT,
            metadata={"invoice_id": invoice.id, "rounding": True},
            idempotency_key=f"invoice:{invoice.id}:rounding",
        )
    invoice.status, invoice.paid_at, invoice.payment_reference = InvoiceStatus.PAID, moment, reference[:200]
    await invoice.save(update_fields=["status", "paid_at", "payment_reference"])


async def invoice_mark_paid(viewer: Viewer, command: InvoiceMarkPaid) -> Invoice:
    """The billing team records a payment taken outside Partnerdesk (manual provider)."""
    require_partner_staff(viewer, admin=True)
    found = await get_visible(Invoice, viewer, command.invoice_id, field="invoice_id")
    v = Validator()
    reference = v.text("reference", command.reference, max_length=200) or ""
    key = check_key(command.idempotency_key)
    v.raise_if_invalid()

    async def perform() -> Invoice:
        invoice = await Invoice.select_for_update().get(id=found.id)
        if invoice.status != InvoiceStatus.OPEN:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Only open invoices can be marked paid.", "invoice_id")
        if invoice.external_id is not None:
            raise DomainError.single(
                ErrorCode.NOT_ELIGIBLE, "This invoice is collected by the payment provider.", "invoice_id"
            )
        await _settle(invoice, reference or "manual", datetime.now(UTC))
        await record(
            viewer,
            AuditEventType.BILLING,
            "invoice.mark_paid",
            object_type="Invoice",
            object_id=invoice.id,
            partner_id=invoice.partner_id,
            customer_id=invoice.customer_id,
            details={"number": invoice.number, "total": str(invoice.total), "reference": reference},
        )
        return invoice

    request: JsonObject = {"invoice_id": found.id, "reference": reference}
    return await money_mutation(viewer, "invoiceMarkPaid", key, request, perform, INVOICE)


# ---------------------------------------------------------------- after finalizing


async def deliver(invoice_id: int, send: Send) -> int:
    """Emails the invoice (PDF attached, with a link) to the customer's billing contacts, once. Returns how many
    addresses it went to."""
    invoice = await Invoice.get_or_none(id=invoice_id)
    if invoice is None or invoice.emailed_at is not None:
        return 0
    recipients = await billing_contacts(await Customer.get(id=invoice.customer_id))
    if recipients:
        await send(invoice_email(invoice, recipients, links.url(invoice.id, links.EMAIL_TTL)))
    await Invoice.filter(id=invoice.id, emailed_at=None).update(emailed_at=datetime.now(UTC))
    return len(recipients)


async def push_to_provider(invoice_id: int) -> str:
    """With a card provider, the open invoice is created there, which collects it from the saved card (the job
    retries a provider failure; the provider's idempotency keys make the retry create nothing twice)."""
    card = provider()
    invoice = await Invoice.get_or_none(id=invoice_id)
    if card.name == MANUAL or invoice is None or invoice.status != InvoiceStatus.OPEN or invoice.external_id:
        return "skipped"
    external_customer = await provider_customer(await Customer.get(id=invoice.customer_id))
    if external_customer is None:
        return "skipped"
    lines = [
        InvoiceLineOut(
            UNIT_LABELS.get(str(line["unit_type"]), str(line["unit_type"])), cents(Decimal(str(line["amount"])))
        )
        for line in invoice.lines
    ]
    rounding = cents(invoice.total) - sum(line.cents for line in lines)
    if rounding:
        lines.append(InvoiceLineOut("Rounding", rounding))
    external = await card.push_invoice(external_customer, invoice.id, invoice.number, lines)
    if external is None:
        return "skipped"
    async with in_transaction():
        await Invoice.filter(id=invoice.id).update(provider=card.name, external_id=external)
        await Payment.create(
            customer_id=invoice.customer_id,
            partner_id=invoice.partner_id,
            provider=card.name,
            purpose=PaymentPurpose.INVOICE,
            amount=invoice.total,
            external_id=external,
            invoice_id=invoice.id,
        )
    return "pushed"


def _invoice_query(obj: JsonObject) -> Q:
    metadata: JsonValue = obj.get("metadata")
    raw = metadata.get("partnerdesk_invoice_id") if isinstance(metadata, dict) else None
    if isinstance(raw, str) and raw.isdigit():
        return Q(id=int(raw))
    return Q(external_id=str(obj.get("id", "")))


async def on_provider_invoice(event_type: str, obj: JsonObject, event_id: str) -> str:
    """The provider's news about an invoice it collects (inside the event's transaction)."""
    invoice = await Invoice.select_for_update().filter(_invoice_query(obj)).first()
    if invoice is None:
        return "ignored"
    payment = await Payment.filter(invoice_id=invoice.id, purpose=PaymentPurpose.INVOICE).first()
    moment = datetime.now(UTC)
    if event_type == "invoice.paid":
        if invoice.status != InvoiceStatus.OPEN:
            return f"already {invoice.status}"
        await _settle(invoice, f"{invoice.provider} {invoice.external_id}", moment)
        if payment is not None:
            await Payment.filter(id=payment.id).update(status=PaymentStatus.SUCCEEDED, completed_at=moment)
            await events.emit(
                events.PAYMENT_SUCCEEDED,
                customer_id=invoice.customer_id,
                partner_id=invoice.partner_id,
                payment_id=payment.id,
            )
        return "paid"
    if event_type == "invoice.voided":
        if invoice.status != InvoiceStatus.OPEN:
            return f"already {invoice.status}"
        # nothing will be collected: the accrual is written off against revenue
        if invoice.subtotal > ZERO:
            await ledger.post(
                ledger.revenue(Currency.USD, invoice.partner_id, invoice.customer_id),
                ledger.customer_invoice(invoice.customer_id, invoice.partner_id),
                invoice.subtotal,
                TransferKind.ADJUSTMENT,
                metadata={"invoice_id": invoice.id, "voided": True},
                idempotency_key=f"invoice:{invoice.id}:void",
            )
        invoice.status, invoice.voided_at = InvoiceStatus.VOID, moment
        await invoice.save(update_fields=["status", "voided_at"])
        return "voided"
    if payment is None:
        return "ignored"
    reason = str(obj.get("last_finalization_error") or "The invoice payment failed.")
    return await fail_payment(payment, reason, event_id)


# ---------------------------------------------------------------- reads


async def invoices_of(viewer: Viewer, customer_id: int) -> QuerySet[Invoice]:
    """A visible customer's invoices (NOT_FOUND beyond the viewer's reach), for the API layer to paginate."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    return restrict(Invoice, viewer).filter(customer_id=customer.id)


async def invoice_pdf_for(token: str, viewer: Viewer) -> Invoice:
    """The invoice behind a signed link (`links.LinkInvalid` / `LinkExpired` otherwise); the download is audited."""
    invoice_id = links.verify(token)
    invoice = await Invoice.get_or_none(id=invoice_id)
    if invoice is None:
        raise links.LinkInvalid(token)
    async with in_transaction():
        await record(
            viewer,
            AuditEventType.EXPORT,
            "invoice.download",
            object_type="Invoice",
            object_id=invoice.id,
            partner_id=invoice.partner_id,
            customer_id=invoice.customer_id,
            details={"number": invoice.number},
        )
    return invoice
