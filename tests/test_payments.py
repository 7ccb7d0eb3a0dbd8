"""Card payments through the real `stripe` SDK against a local fake Stripe API: the billing portal, checkout
top-ups settled by Stripe-signed webhooks exactly once (also when the same event arrives twice at once), failed
payments, automatic top-ups once per threshold crossing, and what the manual provider answers."""

from __future__ import annotations

import base64
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from tortoise.transactions import in_transaction

from domain.alerts.models import Alert, AlertKind
from domain.billing.models import RefillRequest, RefillRequestStatus
from domain.billing.wallet import charge_wallet
from domain.demo.models import DemoState
from domain.events.models import OutboxEvent
from domain.ledger import services as ledger
from domain.ledger.models import Transfer, TransferKind
from domain.payments.models import Payment, PaymentStatus, ProviderCustomer, ProviderEvent
from tests.conftest import GQL, Factory, gather, gid, run_cli
from tests.fake_stripe import fake_stripe, signed_event
from tests.receivers import settle

PORTAL = """query($id: ID!, $url: String!) { billingPortalSession(customerId: $id, returnUrl: $url) { url reason } }"""
CHECKOUT = """mutation($i: WalletTopUpCheckoutInput!) { walletTopUpCheckout(input: $i) {
  checkoutUrl payment { id status amount { amount } purpose } errors { field code message } } }"""
PREFS = """mutation($i: BillingPreferencesUpdateInput!) { billingPreferencesUpdate(input: $i) {
  billing { autoTopUp } errors { field code message } } }"""
REFILL = """mutation($i: WalletRefillInput!) { walletRefill(input: $i) { errors { code } } }"""
RETURN_URL = "https://portal.partner.example/billing"


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> Any:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


async def _wallet_customer(gql: GQL, factory: Factory, **prefs: Any) -> tuple[Any, str, str]:
    tenant = await factory.tenant(customers=1)
    staff = await gql.login(tenant.owner.email)
    admin = await gql.login(tenant.admins[0].email)
    values = {"billingMode": "REFILLABLE_WALLET", "refillAmount": "100", "refillThreshold": "20", **prefs}
    data = await gql(PREFS, {"i": {"customerId": gid("Customer", tenant.customers[0].id), **values}}, staff)
    assert data["billingPreferencesUpdate"]["errors"] == [], data
    return tenant, staff, admin


async def _checkout(gql: GQL, token: str, customer_id: int, amount: str, key: str | None = None) -> dict[str, Any]:
    data = await gql(
        CHECKOUT,
        {
            "i": {
                "customerId": gid("Customer", customer_id),
                "amount": amount,
                "idempotencyKey": key or uuid.uuid4().hex,
            }
        },
        token,
    )
    return data["walletTopUpCheckout"]


async def _post_event(client: httpx.AsyncClient, body: bytes, signature: str) -> httpx.Response:
    return await client.post(
        "/v1/stripe/webhook", content=body, headers={"stripe-signature": signature, "content-type": "application/json"}
    )


def pk(global_id: str) -> str:
    """The primary key in a global id, as Stripe metadata carries it."""
    return base64.b64decode(global_id).decode().split(":")[1]


async def _wallet(customer: Any) -> Decimal:
    return await ledger.balance_of(ledger.customer_wallet(customer.id, customer.partner_id))


async def test_without_a_card_provider_there_is_no_portal_no_checkout_and_no_auto_top_up(
    gql: GQL, factory: Factory
) -> None:
    tenant, staff, admin = await _wallet_customer(gql, factory)
    customer = gid("Customer", tenant.customers[0].id)
    portal = await gql(PORTAL, {"id": customer, "url": RETURN_URL}, admin)
    assert portal["billingPortalSession"] == {"url": None, "reason": "PROVIDER_NOT_CONFIGURED"}
    checkout = await _checkout(gql, admin, tenant.customers[0].id, "25.00")
    assert [e["code"] for e in checkout["errors"]] == ["PROVIDER_NOT_CONFIGURED"] and checkout["checkoutUrl"] is None
    auto = await gql(PREFS, {"i": {"customerId": customer, "autoTopUp": True}}, staff)
    assert [(e["field"], e["code"]) for e in auto["billingPreferencesUpdate"]["errors"]] == [
        ("autoTopUp", "NOT_ELIGIBLE")
    ]


async def test_the_billing_portal_creates_the_stripe_customer_once_and_answers_a_portal_url(
    gql: GQL, factory: Factory
) -> None:
    tenant, _, admin = await _wallet_customer(gql, factory)
    customer = gid("Customer", tenant.customers[0].id)
    with fake_stripe() as stripe:
        # when the customer's admin opens the portal twice
        first = await gql(PORTAL, {"id": customer, "url": RETURN_URL}, admin)
        second = await gql(PORTAL, {"id": customer, "url": RETURN_URL}, admin)
        # then both are portal links, for the one Stripe customer created on first use
        created = stripe.calls("POST", "/v1/customers")
        sessions = stripe.calls("POST", "/v1/billing_portal/sessions")
    assert first["billingPortalSession"]["url"].startswith("https://billing.stripe.test/")
    assert second["billingPortalSession"]["reason"] is None
    assert len(created) == 1 and created[0]["metadata[partnerdesk_customer_id]"] == str(tenant.customers[0].id)
    remembered = await ProviderCustomer.get(customer_id=tenant.customers[0].id)
    assert [s["customer"] for s in sessions] == [remembered.external_id] * 2
    assert {s["return_url"] for s in sessions} == {RETURN_URL}
    # and a customer of another partner is not found
    other = await factory.tenant(customers=0)
    response = await gql.raw(PORTAL, {"id": customer, "url": RETURN_URL}, await gql.login(other.owner.email))
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.postgres
async def test_a_paid_checkout_credits_the_wallet_once_even_when_stripe_sends_the_event_twice_at_once(
    app: Any, gql: GQL, factory: Factory, client: httpx.AsyncClient
) -> None:
    # given a wallet below its threshold (an open refill request) and a checkout page for $25
    tenant, _, admin = await _wallet_customer(gql, factory)
    customer = tenant.customers[0]
    async with in_transaction():
        await ledger.post(
            ledger.external_funding(ledger.Currency.USD, customer.partner_id),
            ledger.customer_wallet(customer.id, customer.partner_id),
            Decimal(30),
            TransferKind.WALLET_REFILL,
        )
        await charge_wallet(customer, Decimal(15))
    assert await RefillRequest.filter(customer_id=customer.id, status=RefillRequestStatus.OPEN).exists()
    with fake_stripe() as stripe:
        key = uuid.uuid4().hex
        made = await _checkout(gql, admin, customer.id, "25.00", key)
        again = await _checkout(gql, admin, customer.id, "25.00", key)
        sessions = stripe.calls("POST", "/v1/checkout/sessions")
        # then the page is Stripe's, made once, and the repeat answers the same page
        assert made["errors"] == [] and made["checkoutUrl"].startswith("https://checkout.stripe.test/")
        assert again["checkoutUrl"] == made["checkoutUrl"] and again["payment"]["id"] == made["payment"]["id"]
        assert len(sessions) == 1
        assert sessions[0]["line_items[0][price_data][unit_amount]"] == "2500"
        assert sessions[0]["payment_intent_data[setup_future_usage]"] == "off_session"
        payment = await Payment.get(id=int(pk(made["payment"]["id"])))
        # when Stripe reports the payment, the same event twice at the same moment
        body, signature = signed_event(
            "checkout.session.completed",
            {
                "id": payment.external_id,
                "object": "checkout.session",
                "payment_status": "paid",
                "amount_total": 2500,
                "currency": "usd",
                "client_reference_id": str(payment.id),
                "metadata": {"partnerdesk_payment_id": str(payment.id)},
            },
            "evt_checkout_1",
        )
        answers = await gather(_post_event(client, body, signature), _post_event(client, body, signature))
        # and once more later
        replay = await _post_event(client, body, signature)
        # then the wallet got $25 once, the refill request is closed and the refill-processed alert raised
        assert sorted(a.json()["outcome"] for a in answers) == ["duplicate", "settled"]
        assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"
    assert await _wallet(customer) == Decimal(40)
    top_ups = await Transfer.filter(kind=TransferKind.WALLET_REFILL, idempotency_key=f"payment:{payment.id}")
    assert len(top_ups) == 1 and top_ups[0].amount == Decimal(25)
    assert not await RefillRequest.filter(customer_id=customer.id, status=RefillRequestStatus.OPEN).exists()
    assert await Alert.filter(customer_id=customer.id, kind=AlertKind.REFILL_PROCESSED).count() == 1
    assert (await Payment.get(id=payment.id)).status == PaymentStatus.SUCCEEDED
    assert await ProviderEvent.filter(external_id="evt_checkout_1").count() == 1
    topics = await OutboxEvent.filter(topic__in=["wallet.refilled", "payment.succeeded"]).values_list(
        "topic", flat=True
    )
    assert sorted(topics) == ["payment.succeeded", "wallet.refilled"]
    verified = run_cli("ledger", "verify", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_forged_event_is_refused_and_changes_nothing(
    gql: GQL, factory: Factory, client: httpx.AsyncClient
) -> None:
    tenant, _, admin = await _wallet_customer(gql, factory)
    with fake_stripe():
        made = await _checkout(gql, admin, tenant.customers[0].id, "25.00")
        obj = {
            "id": "cs_x",
            "payment_status": "paid",
            "amount_total": 2500,
            "client_reference_id": pk(made["payment"]["id"]),
        }
        body, signature = signed_event("checkout.session.completed", obj, "evt_forged", secret="whsec_not_stripes")
        response = await _post_event(client, body, signature)
        unsigned = await client.post("/v1/stripe/webhook", content=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_SIGNATURE"
    assert unsigned.status_code == 400
    assert await _wallet(tenant.customers[0]) == 0
    assert not await ProviderEvent.exists()


async def test_a_failed_card_payment_raises_the_always_on_payment_failed_alert_once(
    gql: GQL, factory: Factory, client: httpx.AsyncClient
) -> None:
    tenant, _, admin = await _wallet_customer(gql, factory, refillProcessedAlert=False)
    with fake_stripe():
        made = await _checkout(gql, admin, tenant.customers[0].id, "25.00")
        intent = {
            "id": "pi_failed_1",
            "object": "payment_intent",
            "metadata": {"partnerdesk_payment_id": pk(made["payment"]["id"])},
            "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
        }
        body, signature = signed_event("payment_intent.payment_failed", intent, "evt_failed_1")
        first = await _post_event(client, body, signature)
        again = await _post_event(client, body, signature)
    assert first.json()["outcome"] == "failed" and again.json()["outcome"] == "duplicate"
    alerts = await Alert.filter(customer_id=tenant.customers[0].id, kind=AlertKind.PAYMENT_FAILED)
    assert len(alerts) == 1 and alerts[0].values["reason"] == "Your card was declined."
    assert await OutboxEvent.filter(topic="payment.failed").count() == 1
    assert await _wallet(tenant.customers[0]) == 0


async def _cross_threshold(gql: GQL, staff: str, customer: Any) -> None:
    """A manual refill to $30 (closing the request the empty wallet opened), then usage of $15: below $20."""
    refill = {"customerId": gid("Customer", customer.id), "amount": "30.00", "idempotencyKey": uuid.uuid4().hex}
    assert (await gql(REFILL, {"i": refill}, staff))["walletRefill"]["errors"] == []
    async with in_transaction():
        await charge_wallet(customer, Decimal(15))


async def test_auto_top_up_charges_the_saved_card_once_per_crossing(app: Any, gql: GQL, factory: Factory) -> None:
    tenant, staff, admin = await _wallet_customer(gql, factory)
    customer = tenant.customers[0]
    with fake_stripe() as stripe:
        # given automatic top-ups on (the customer has a card at Stripe)
        on = await gql(PREFS, {"i": {"customerId": gid("Customer", customer.id), "autoTopUp": True}}, staff)
        assert on["billingPreferencesUpdate"]["billing"] == {"autoTopUp": True}
        await gql(PORTAL, {"id": gid("Customer", customer.id), "url": RETURN_URL}, admin)
        # when the balance crosses the threshold and the jobs run (twice over)
        await _cross_threshold(gql, staff, customer)
        await settle(app)
        await settle(app)
        # then the card was charged the refill amount once, and the wallet topped up
        intents = stripe.calls("POST", "/v1/payment_intents")
        assert [(i["amount"], i["off_session"], i["confirm"]) for i in intents] == [("10000", "true", "true")]
        assert await _wallet(customer) == Decimal(115)
        assert not await RefillRequest.filter(customer_id=customer.id, status=RefillRequestStatus.OPEN).exists()
        # when it crosses again and the card is declined
        stripe.decline = True
        await charge_wallet_below(customer, Decimal(100))
        await settle(app)
    # then the payment-failed alert fires and the request stays open for a manual refill
    assert await Alert.filter(customer_id=customer.id, kind=AlertKind.PAYMENT_FAILED).count() == 1
    assert await RefillRequest.filter(customer_id=customer.id, status=RefillRequestStatus.OPEN).exists()
    assert [p.status for p in await Payment.all().order_by("id")] == [PaymentStatus.SUCCEEDED, PaymentStatus.FAILED]
    assert await _wallet(customer) == Decimal(15)


async def charge_wallet_below(customer: Any, amount: Decimal) -> None:
    async with in_transaction():
        await charge_wallet(customer, amount)


async def test_a_demo_customer_makes_no_real_payments(gql: GQL, factory: Factory) -> None:
    # given a wallet customer in demo mode, with a card provider configured
    tenant, _, admin = await _wallet_customer(gql, factory)
    customer = gid("Customer", tenant.customers[0].id)
    await DemoState.create(customer_id=tenant.customers[0].id, enabled=True)
    with fake_stripe() as stripe:
        # when its admin opens the billing portal and asks for a card top-up
        portal = await gql.raw(PORTAL, {"id": customer, "url": RETURN_URL}, admin)
        checkout = await _checkout(gql, admin, tenant.customers[0].id, "25.00")
        # then both are refused and nothing reached Stripe
        calls = stripe.calls("POST", "/v1/checkout/sessions") + stripe.calls("POST", "/v1/customers")
    assert portal.json()["errors"][0]["extensions"]["code"] == "NOT_ELIGIBLE"
    assert [(e["field"], e["code"]) for e in checkout["errors"]] == [("customerId", "NOT_ELIGIBLE")]
    assert calls == [] and not await Payment.filter(customer_id=tenant.customers[0].id).exists()
