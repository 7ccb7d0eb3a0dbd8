"""Monthly invoices: a month closed once per customer (two schedulers at once included), totals equal to the rated
usage of the month, gapless numbers per partner, the white-label PDF emailed to the billing contacts and served by a
signed link, `invoice.finalized` to webhooks, `invoiceMarkPaid` for the manual provider and Stripe collection."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from domain.invoices import services as invoices
from domain.invoices.models import Invoice, InvoiceStatus
from domain.ledger import services as ledger
from domain.payments.models import Payment, PaymentPurpose
from domain.usage.models import Funding, UsageEvent
from tests.conftest import GQL, Factory, gather, gid, run_cli
from tests.fake_stripe import fake_stripe, signed_event
from tests.receivers import http_receiver, settle
from tests.test_alerts import Mailbox, mailbox  # noqa: F401  (the real SMTP server fixture)

RECORD = """mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted rejected { code message } } }"""
INVOICES = """query($id: ID!) { invoices(customerId: $id) { totalCount nodes { id number period status pdfUrl
  lines { unitType quantity unitPrice { amount } amount { amount } } subtotal { amount } total { amount } } } }"""
MARK_PAID = """mutation($i: InvoiceMarkPaidInput!) { invoiceMarkPaid(input: $i) {
  invoice { status } errors { field code message } } }"""
HOOK = """mutation($i: WebhookEndpointCreateInput!) { webhookEndpointCreate(input: $i) { secret errors { code } } }"""


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> Any:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


def _last_month() -> tuple[date, datetime]:
    """Last month, and a moment after it closed by which everything recorded now is in its invoice."""
    now = datetime.now(UTC)
    start = (now.date().replace(day=1) - timedelta(days=1)).replace(day=1)
    closes = datetime(now.year, now.month, 1, tzinfo=UTC) + invoices.CLOSE_GRACE
    return start, max(now, closes) + timedelta(minutes=1)


async def _record(gql: GQL, token: str, customer_id: int, unit: str, quantity: str, at: datetime) -> None:
    event = {
        "idempotencyKey": uuid.uuid4().hex,
        "customerId": gid("Customer", customer_id),
        "unitType": unit,
        "quantity": quantity,
        "occurredAt": at.isoformat(),
    }
    data = await gql(RECORD, {"i": {"events": [event]}}, token)
    assert data["usageRecord"]["accepted"] == 1, data


async def _usage_last_month(gql: GQL, token: str, customer_id: int, start: date) -> None:
    """Calls and texts on the last day of last month, and a call this month (not in last month's invoice)."""
    last_day = datetime(start.year, start.month, 1, 12, tzinfo=UTC) + timedelta(days=27)
    now = datetime.now(UTC)
    last_day = min(last_day.replace(day=28), now - timedelta(hours=1))
    await _record(gql, token, customer_id, "VOICE_MINUTES", "12.5", last_day)
    await _record(gql, token, customer_id, "VOICE_MINUTES", "3", last_day)
    await _record(gql, token, customer_id, "SMS_SEGMENTS", "7", last_day)
    if now.day > 1 or now.hour > 1:
        await _record(gql, token, customer_id, "VOICE_MINUTES", "100", now - timedelta(minutes=30))


async def test_closing_a_month_twice_at_once_makes_one_invoice_per_customer_equal_to_the_rated_usage(
    app: Any,
    gql: GQL,
    factory: Factory,
    mailbox: Mailbox,  # noqa: F811
    client: httpx.AsyncClient,
) -> None:
    # given two monthly-invoice customers of one partner with usage last month, and a partner webhook endpoint
    tenant = await factory.tenant(customers=2)
    staff = await gql.login(tenant.owner.email)
    start, closing = _last_month()
    for customer in tenant.customers:
        await _usage_last_month(gql, staff, customer.id, start)
    with http_receiver([200]) as receiver:
        hook = await gql(HOOK, {"i": {"url": receiver.url, "eventTypes": ["invoice.finalized"]}}, staff)
        assert hook["webhookEndpointCreate"]["errors"] == []
        # when two schedulers close the month at the same moment, and again later
        made = await gather(invoices.close_month(start, closing), invoices.close_month(start, closing))
        again = await invoices.close_month(start, closing + timedelta(hours=5))
        await settle(app)
        hooks = [json.loads(r.body) for r in receiver.requests]
    # then each customer has one invoice, numbered without gaps
    assert sum(made) == 2 and again == 0
    rows = await Invoice.all().order_by("sequence")
    assert [(r.number, r.status) for r in rows] == [("INV-000001", "OPEN"), ("INV-000002", "OPEN")]
    assert {r.customer_id for r in rows} == {c.id for c in tenant.customers}
    # and its total is the rated usage of the month, line by unit type and price
    for row in rows:
        events = await UsageEvent.filter(
            customer_id=row.customer_id,
            funding=Funding.INVOICE,
            occurred_at__gte=datetime(start.year, start.month, 1, tzinfo=UTC),
            occurred_at__lt=datetime(row.period_end.year, row.period_end.month, 1, tzinfo=UTC),
        )
        assert len(events) == 3
        assert row.subtotal == sum((e.cost for e in events), Decimal(0)) == Decimal("1.0")  # 15.5 × 0.06 + 7 × 0.01
        assert row.total == Decimal("1.00")
    listed = await gql(INVOICES, {"id": gid("Customer", rows[0].customer_id)}, staff)
    invoice = listed["invoices"]["nodes"][0]
    assert invoice["period"] == f"{start:%Y-%m}"
    assert [
        (ln["unitType"], ln["quantity"], ln["unitPrice"]["amount"], ln["amount"]["amount"]) for ln in invoice["lines"]
    ] == [
        ("VOICE_MINUTES", "15.5", "0.06", "0.93"),
        ("SMS_SEGMENTS", "7", "0.01", "0.07"),
    ]
    # and each was emailed once to the billing contact with its PDF, under the partner's name
    sent = [m for m in mailbox.messages if m["X-Partnerdesk-Invoice"]]
    assert sorted(m["X-Partnerdesk-Invoice"] for m in sent) == ["INV-000001", "INV-000002"]
    attachment = next(sent[0].iter_attachments())
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(attachment.get_content())).pages)
    assert tenant.partner.name in text and sent[0]["X-Partnerdesk-Invoice"] in text
    # and announced to the partner's endpoint
    assert sorted(h["data"]["invoice"]["number"] for h in hooks) == ["INV-000001", "INV-000002"]
    assert {h["type"] for h in hooks} == {"invoice.finalized"}
    # and the PDF link works without signing in; a tampered one does not
    path = "/" + invoice["pdfUrl"].split("://", 1)[1].split("/", 1)[1]
    pdf = await client.get(path)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert (await client.get(path[:-3] + "abc")).status_code == 403


async def test_usage_recorded_after_the_close_goes_into_the_next_invoice_not_lost_nor_billed_twice(
    gql: GQL, factory: Factory
) -> None:
    # given last month closed while more of its usage was still to arrive
    tenant = await factory.tenant(customers=1)
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    start, closing = _last_month()
    await _usage_last_month(gql, staff, customer.id, start)
    await invoices.close_month(start, closing)
    first = await Invoice.get()
    late_at = min(datetime(start.year, start.month, 28, 18, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=1))
    await _record(gql, staff, customer.id, "SMS_SEGMENTS", "50", late_at)
    await UsageEvent.filter(customer_id=customer.id, quantity=50).update(recorded_at=closing + timedelta(minutes=1))
    # when the next month closes
    this_month = (start + timedelta(days=40)).replace(day=1)
    next_close = datetime(this_month.year, this_month.month, 1, tzinfo=UTC) + timedelta(days=40)
    assert await invoices.close_month(this_month, next_close) == 1
    # then the late texts are on the next invoice, and every event is billed exactly once
    second = await Invoice.exclude(id=first.id).get()
    late = [
        (Decimal(ln["quantity"]), Decimal(ln["amount"])) for ln in second.lines if ln["unit_type"] == "SMS_SEGMENTS"
    ]
    assert late == [(Decimal(50), Decimal("0.5"))]
    assert all(ln["unit_type"] != "SMS_SEGMENTS" or Decimal(ln["quantity"]) == 7 for ln in first.lines)
    billed = first.subtotal + second.subtotal
    assert billed == sum((e.cost for e in await UsageEvent.filter(customer_id=customer.id)), Decimal(0))
    assert second.number == "INV-000002"


@pytest.mark.postgres
async def test_marking_an_invoice_paid_clears_its_accrual_once_and_the_books_balance(
    gql: GQL, factory: Factory
) -> None:
    tenant = await factory.tenant(customers=1)
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    start, closing = _last_month()
    await _usage_last_month(gql, staff, customer.id, start)
    await invoices.close_month(start, closing)
    invoice = await Invoice.get()
    owed_before = await ledger.balance_of(ledger.customer_invoice(customer.id, customer.partner_id))
    key = uuid.uuid4().hex
    # when the billing team marks it paid (twice with the same key, then with another)
    paid = await gql(
        MARK_PAID,
        {"i": {"invoiceId": gid("Invoice", invoice.id), "idempotencyKey": key, "reference": "wire 42"}},
        staff,
    )
    repeat = await gql(
        MARK_PAID,
        {"i": {"invoiceId": gid("Invoice", invoice.id), "idempotencyKey": key, "reference": "wire 42"}},
        staff,
    )
    other = await gql(
        MARK_PAID, {"i": {"invoiceId": gid("Invoice", invoice.id), "idempotencyKey": uuid.uuid4().hex}}, staff
    )
    # then it is PAID once, and the invoice account owes only what was not on the invoice
    assert paid["invoiceMarkPaid"] == {"invoice": {"status": "PAID"}, "errors": []} == repeat["invoiceMarkPaid"]
    assert [e["code"] for e in other["invoiceMarkPaid"]["errors"]] == ["NOT_ELIGIBLE"]
    owed_after = await ledger.balance_of(ledger.customer_invoice(customer.id, customer.partner_id))
    assert owed_after - owed_before == invoice.subtotal
    verified = run_cli("ledger", "verify", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # and a customer admin may not mark invoices paid
    admin = await gql.login(tenant.admins[0].email)
    refused = await gql(MARK_PAID, {"i": {"invoiceId": gid("Invoice", invoice.id), "idempotencyKey": "k-1"}}, admin)
    assert [e["code"] for e in refused["invoiceMarkPaid"]["errors"]] == ["FORBIDDEN"]


async def test_with_stripe_the_invoice_is_pushed_there_and_paid_through_it(
    app: Any, gql: GQL, factory: Factory, client: httpx.AsyncClient
) -> None:
    tenant = await factory.tenant(customers=1)
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    start, closing = _last_month()
    await _usage_last_month(gql, staff, customer.id, start)
    with fake_stripe() as stripe:
        # when the month closes with Stripe configured
        await invoices.close_month(start, closing)
        await settle(app)
        invoice = await Invoice.get()
        # then the invoice is created at Stripe with its lines, finalized, and collected there
        created = stripe.calls("POST", "/v1/invoices")
        items = stripe.calls("POST", "/v1/invoiceitems")
        assert created[0]["metadata[partnerdesk_invoice_id]"] == str(invoice.id)
        assert created[0]["collection_method"] == "charge_automatically"
        assert sorted(int(i["amount"]) for i in items) == [7, 93]
        assert stripe.calls("POST", f"/v1/invoices/{invoice.external_id}/finalize")
        payment = await Payment.get(purpose=PaymentPurpose.INVOICE)
        # when Stripe reports it paid
        body, signature = signed_event(
            "invoice.paid",
            {
                "id": invoice.external_id,
                "object": "invoice",
                "amount_paid": 100,
                "metadata": {"partnerdesk_invoice_id": str(invoice.id)},
            },
            "evt_invoice_paid",
        )
        response = await client.post("/v1/stripe/webhook", content=body, headers={"stripe-signature": signature})
    assert response.json()["outcome"] == "paid"
    assert (await Invoice.get()).status == InvoiceStatus.PAID
    assert (await Payment.get(id=payment.id)).status == "SUCCEEDED"
    # and invoiceMarkPaid is not for invoices Stripe collects
    refused = await gql(MARK_PAID, {"i": {"invoiceId": gid("Invoice", invoice.id), "idempotencyKey": "k-2"}}, staff)
    assert [e["code"] for e in refused["invoiceMarkPaid"]["errors"]] == ["NOT_ELIGIBLE"]
