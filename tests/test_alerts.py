"""Billing alerts end to end (seed 001): a change through GraphQL or a domain service, the outbox relay, the job,
and a real SMTP server (aiosmtpd) receiving white-label email; refill notices; the outbox's rollback guarantee."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from aiosmtpd.controller import Controller
from tortoise.transactions import in_transaction

from domain import config as domain_config
from domain.accounts.models import Role, User
from domain.alerts import services as alerts
from domain.alerts.models import Alert, AlertKind, AlertStatus
from domain.audit.models import AuditEvent
from domain.billing.credits import burn_credits
from domain.billing.models import RefillRequest
from domain.billing.wallet import charge_wallet
from domain.events.models import OutboxEvent
from domain.features.models import FeatureToggles
from jobs import mailer
from jobs.broker import EmbeddedConsumer
from server.locks import Leases
from server.relay import Relay
from tests.conftest import GQL, REDIS_URL, ROOT, TEST_DATABASE_URL, Factory, gid
from tests.funding import fund_credits
from tests.servers import free_port

PUBLIC_URL = "https://desk.brand.example"
BILLING_PREFERENCES_LINK = f"{PUBLIC_URL}/settings/billing-and-reports/billing-preferences"
PREFS = """mutation($i: BillingPreferencesUpdateInput!) { billingPreferencesUpdate(input: $i) {
  errors { field code message } } }"""
RECORD = """mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted errors { code message } } }"""
REFILL = """mutation($i: WalletRefillInput!) { walletRefill(input: $i) {
  wallet { balance { amount } refillRequest { status } } errors { field code message } } }"""
PARTNER_UPDATE = """mutation($i: PartnerUpdateInput!) { partnerUpdate(input: $i) {
  partner { senderEmail branding { logoUrl primaryColor secondaryColor } } errors { field code message } } }"""
ALERTS = """query($id: ID!) { alerts(customerId: $id) { totalCount
  nodes { id kind status recipients values attempts lastError sentAt } } }"""
RETRY = """mutation($i: AlertRetryInput!) { alertRetry(input: $i) {
  alert { status recipients } errors { code message } } }"""


def actors() -> Any:
    """The alert actors, imported late: an actor binds to the broker current at import, set by the app fixture."""
    import jobs.alerts

    return jobs.alerts


# ---------------------------------------------------------------- a real SMTP server


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps every accepted envelope (or refuses them all while `reject` is set)."""

    url: str
    envelopes: list[Any] = field(default_factory=list)
    reject: str | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reject:
            return self.reject
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]  # type: ignore[misc]

    def of_kind(self, kind: AlertKind) -> list[EmailMessage]:
        return [m for m in self.messages if (m["X-Partnerdesk-Alert"] or "").endswith(f":{kind}")]


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    port = free_port()
    box = Mailbox(f"smtp://127.0.0.1:{port}")
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    saved = (mailer._settings["smtp_url"], mailer._settings["outbox_dir"])
    mailer.configure(box.url, tmp_path)
    try:
        yield box
    finally:
        mailer.configure(saved[0], saved[1])  # type: ignore[arg-type]
        controller.stop()


@pytest.fixture(autouse=True)
def public_url() -> Iterator[str]:
    with domain_config.overridden(public_url=PUBLIC_URL):
        yield PUBLIC_URL


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


async def run_jobs(app: Any, *, max_retries: int = 5) -> EmbeddedConsumer:
    """What production does after a commit: the relay hands outbox events to the broker, a worker runs them."""
    await Relay(Leases(None)).drain_once()
    consumer = EmbeddedConsumer(app.state.broker, max_retries=max_retries)
    await consumer.drain()
    return consumer


# ---------------------------------------------------------------- set-up helpers


def key() -> str:
    return uuid.uuid4().hex


def minutes(customer_id: int, count: str) -> dict[str, Any]:
    """Voice minutes at the default $0.06 a minute."""
    from datetime import UTC, datetime

    return {
        "idempotencyKey": key(),
        "customerId": gid("Customer", customer_id),
        "unitType": "VOICE_MINUTES",
        "quantity": count,
        "occurredAt": datetime.now(UTC).isoformat(),
    }


async def prefs(gql: GQL, token: str, customer_id: int, **values: Any) -> None:
    data = await gql(PREFS, {"i": {"customerId": gid("Customer", customer_id), **values}}, token)
    assert data["billingPreferencesUpdate"]["errors"] == [], data


async def record_minutes(gql: GQL, token: str, customer_id: int, count: str) -> None:
    data = await gql(RECORD, {"i": {"events": [minutes(customer_id, count)]}}, token)
    assert data["usageRecord"]["accepted"] == 1, data


async def refill(gql: GQL, token: str, customer_id: int, amount: str) -> dict[str, Any]:
    data = await gql(
        REFILL, {"i": {"customerId": gid("Customer", customer_id), "amount": amount, "idempotencyKey": key()}}, token
    )
    assert data["walletRefill"]["errors"] == [], data
    return data["walletRefill"]


async def charge(customer: Any, amount: str) -> None:
    async with in_transaction():
        await charge_wallet(customer, Decimal(amount))


def png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 90, 31)).save(out, format="PNG")
    return out.getvalue()


async def brand(gql: GQL, token: str, partner_id: int) -> str:
    """Brands the partner (a logo uploaded as a GraphQL multipart request); returns the logo's URL."""
    import json

    variables = {
        "i": {
            "partnerId": gid("Partner", partner_id),
            "senderEmail": "billing@brightcall.example.com",
            "branding": {"logo": None, "primaryColor": "#FF5A1F", "secondaryColor": "#1B2E4B"},
        }
    }
    response = await gql.client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": PARTNER_UPDATE, "variables": variables}),
            "map": json.dumps({"0": ["variables.i.branding.logo"]}),
        },
        files={"0": ("logo.png", png(), "image/png")},
        headers={"authorization": f"Bearer {token}"},
    )
    data = response.json()["data"]
    assert data["partnerUpdate"]["errors"] == [], data
    return data["partnerUpdate"]["partner"]["branding"]["logoUrl"]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None, "no HTML part"
    return part.get_content()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, "no plain-text part"
    return part.get_content()


async def alerts_of(gql: GQL, token: str, customer_id: int) -> list[dict[str, Any]]:
    data = await gql(ALERTS, {"id": gid("Customer", customer_id)}, token)
    return data["alerts"]["nodes"]


# ---------------------------------------------------------------- the spending cap


async def test_cap_reached_emails_the_primary_contact_and_extras_under_the_partners_brand(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a branded partner and a customer with a $1 cap, a primary billing contact and an extra recipient
    tenant = await factory.tenant(customers=1, name="BrightCall")
    customer, first_admin = tenant.customers[0], tenant.admins[0]
    contact = await factory.user(role=Role.CUSTOMER_ADMIN, customer=customer)
    staff = await gql.login(tenant.owner.email)
    logo = await brand(gql, staff, tenant.partner.id)
    await prefs(
        gql,
        staff,
        customer.id,
        monthlySpendingCap="1.00",
        primaryContactUserId=gid("User", contact.id),
        extraAlertRecipients=["finance@example.com"],
    )
    # when usage jumps straight past the cap ($1.02) and the jobs run
    await record_minutes(gql, staff, customer.id, "17")
    await run_jobs(app)
    # then exactly one email: the cap-reached alert, to the contact and the extra recipient only
    assert len(mailbox.envelopes) == 1
    assert sorted(mailbox.envelopes[0].rcpt_tos) == sorted([contact.email, "finance@example.com"])
    assert first_admin.email not in mailbox.envelopes[0].rcpt_tos
    message = mailbox.messages[0]
    assert message["Subject"] == "BrightCall: Monthly spending cap reached"
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("BrightCall", "billing@brightcall.example.com")
    assert mailbox.envelopes[0].mail_from == "billing@brightcall.example.com"
    html = html_of(message)
    assert logo.startswith(f"{PUBLIC_URL}/logos/partner-") and f'src="{logo}"' in html
    assert "background:#FF5A1F" in html and "color:#1B2E4B" in html
    assert f'href="{BILLING_PREFERENCES_LINK}"' in html
    assert BILLING_PREFERENCES_LINK in text_of(message)
    assert "$1.00" in html and "$1.02" in html
    # and the alerts connection shows it as sent, with its recipients and values
    nodes = await alerts_of(gql, staff, customer.id)
    assert len(nodes) == 1
    node = nodes[0]
    assert (node["kind"], node["status"], node["attempts"], node["lastError"]) == ("CAP_REACHED", "SENT", 1, "")
    assert sorted(node["recipients"]) == sorted([contact.email, "finance@example.com"])
    assert node["values"]["cap"] == "1.00" and node["values"]["spent"] == "1.02"
    assert node["sentAt"] is not None


async def test_80_percent_warning_and_cap_reached_each_fire_once_and_the_warning_can_be_turned_off(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given two customers with a $1 cap, the second with the 80% alert switched off
    tenant = await factory.tenant(customers=2)
    warned, quiet = tenant.customers
    staff = await gql.login(tenant.owner.email)
    await prefs(gql, staff, warned.id, monthlySpendingCap="1.00")
    await prefs(gql, staff, quiet.id, monthlySpendingCap="1.00", capAlertAt80=False)
    # when both reach 84%, then 90%
    for customer in (warned, quiet):
        await record_minutes(gql, staff, customer.id, "14")
    await run_jobs(app)
    for customer in (warned, quiet):
        await record_minutes(gql, staff, customer.id, "1")
    await run_jobs(app)
    # then only the first customer got the 80% warning, once
    assert [m["To"] for m in mailbox.of_kind(AlertKind.CAP_WARNING)] == [tenant.admins[0].email]
    assert mailbox.of_kind(AlertKind.CAP_REACHED) == []
    assert mailbox.of_kind(AlertKind.CAP_WARNING)[0]["Subject"].endswith("80% of your monthly spending cap used")
    # when both pass the cap, and go on spending
    for customer in (warned, quiet):
        await record_minutes(gql, staff, customer.id, "2")
        await run_jobs(app)
        await record_minutes(gql, staff, customer.id, "5")
        await run_jobs(app)
    # then each got the always-on cap-reached alert exactly once
    assert sorted(m["To"] for m in mailbox.of_kind(AlertKind.CAP_REACHED)) == sorted(a.email for a in tenant.admins)
    assert len(mailbox.envelopes) == 3
    assert [n["kind"] for n in await alerts_of(gql, staff, quiet.id)] == ["CAP_REACHED"]


# ---------------------------------------------------------------- wallet, credits, payments


async def test_low_balance_fires_once_per_crossing_and_rearms_when_the_balance_recovers(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a wallet customer with a $100 refill amount (low-balance level: $30), funded with $100
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    await prefs(
        gql, staff, customer.id, billingMode="REFILLABLE_WALLET", refillAmount="100", refillProcessedAlert=False
    )
    await refill(gql, staff, customer.id, "100")
    # when usage takes it below $30, then lower still
    await charge(customer, "75")
    await run_jobs(app)
    await charge(customer, "5")
    await run_jobs(app)
    # then one low-balance warning
    low = mailbox.of_kind(AlertKind.LOW_BALANCE)
    assert len(low) == 1
    assert low[0]["To"] == tenant.admins[0].email
    assert "$25.00" in html_of(low[0]) and "$30.00" in html_of(low[0])
    assert BILLING_PREFERENCES_LINK in html_of(low[0])
    # when a refill brings it back above the level and usage crosses it again
    await refill(gql, staff, customer.id, "100")
    await charge(customer, "95")
    await run_jobs(app)
    # then a second warning (and no refill-processed email: switched off)
    assert len(mailbox.of_kind(AlertKind.LOW_BALANCE)) == 2
    assert len(mailbox.envelopes) == 2
    nodes = await alerts_of(gql, staff, customer.id)
    assert [(n["kind"], n["status"]) for n in nodes] == [("LOW_BALANCE", "SENT"), ("LOW_BALANCE", "SENT")]
    assert nodes[0]["values"]["balance"] == "25.00"


async def test_low_balance_alert_switched_off_sends_nothing(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a wallet customer who turned the optional low-balance warning off
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    await prefs(
        gql,
        staff,
        customer.id,
        billingMode="REFILLABLE_WALLET",
        refillAmount="100",
        lowBalanceAlert=False,
        refillProcessedAlert=False,
    )
    await refill(gql, staff, customer.id, "100")
    # when the balance falls below 30% of the refill amount
    await charge(customer, "90")
    await run_jobs(app)
    # then no alert exists and no email went out
    assert await Alert.filter(customer_id=customer.id).count() == 0
    assert mailbox.envelopes == []


async def test_low_credits_alert_needs_the_threshold_and_the_feature_toggle(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given two credit customers with a 50-credit threshold; only the first has low-credit notifications on
    tenant = await factory.tenant(customers=2)
    notified, silent = tenant.customers
    staff = await gql.login(tenant.owner.email)
    for customer in (notified, silent):
        await prefs(gql, staff, customer.id, lowCreditThreshold="50")
        await fund_credits(customer, "100")
    await FeatureToggles.filter(customer_id=notified.id).update(low_credit_notifications=True)
    # when both burn 60 credits, then 10 more
    for amount in ("60", "10"):
        for customer in (notified, silent):
            async with in_transaction():
                await burn_credits(customer, Decimal(amount))
        await run_jobs(app)
    # then one low-credit email, to the first customer's admin
    assert len(mailbox.envelopes) == 1
    (message,) = mailbox.of_kind(AlertKind.LOW_CREDITS)
    assert message["To"] == tenant.admins[0].email
    text = text_of(message)
    assert "Available credits: 40\r\n" in text and "Threshold: 50\r\n" in text and "E+" not in text
    assert await Alert.filter(customer_id=silent.id).count() == 0


async def test_payment_failed_is_always_on_and_raised_once_per_attempt(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a customer whose only admin switched optional billing emails off, and an extra recipient
    tenant = await factory.tenant(customers=1)
    customer, admin = tenant.customers[0], tenant.admins[0]
    await User.filter(id=admin.id).update(notification_preferences={"billing_alerts": False})
    staff = await gql.login(tenant.owner.email)
    await prefs(gql, staff, customer.id, extraAlertRecipients=["ap@example.com"])
    # when the payment provider reports the same failed attempt twice
    first = await alerts.payment_failed(customer, "pi_123", "card declined", Decimal("20"))
    again = await alerts.payment_failed(customer, "pi_123", "card declined", Decimal("20"))
    await run_jobs(app)
    # then one alert and one email, which reaches the opted-out admin too (always on)
    assert first is not None and again is None
    assert len(mailbox.envelopes) == 1
    assert sorted(mailbox.envelopes[0].rcpt_tos) == sorted([admin.email, "ap@example.com"])
    message = mailbox.messages[0]
    assert message["Subject"].endswith("Payment failed")
    assert "card declined" in html_of(message) and "$20.00" in html_of(message)
    assert BILLING_PREFERENCES_LINK in html_of(message)


async def test_optional_alerts_skip_admins_who_opted_out(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a wallet customer with two admins, one of whom switched optional billing emails off
    tenant = await factory.tenant(customers=1)
    customer, opted_out = tenant.customers[0], tenant.admins[0]
    other = await factory.user(role=Role.CUSTOMER_ADMIN, customer=customer)
    await User.filter(id=opted_out.id).update(notification_preferences={"billing_alerts": False})
    staff = await gql.login(tenant.owner.email)
    await prefs(gql, staff, customer.id, billingMode="REFILLABLE_WALLET", refillAmount="100")
    # when a refill is processed (an optional alert)
    await refill(gql, staff, customer.id, "100")
    await run_jobs(app)
    # then only the other admin is emailed
    assert [e.rcpt_tos for e in mailbox.envelopes] == [[other.email]]
    assert mailbox.of_kind(AlertKind.REFILL_PROCESSED)[0]["Subject"].endswith("Wallet refill processed")


async def test_without_a_usable_primary_contact_alerts_go_to_the_active_admins(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a customer with three admins: one deactivated, one (active) who was the primary contact...
    tenant = await factory.tenant(customers=1)
    customer, admin = tenant.customers[0], tenant.admins[0]
    contact = await factory.user(role=Role.CUSTOMER_ADMIN, customer=customer)
    inactive = await factory.user(role=Role.CUSTOMER_ADMIN, customer=customer)
    await User.filter(id=inactive.id).update(is_active=False)
    staff = await gql.login(tenant.owner.email)
    await prefs(gql, staff, customer.id, primaryContactUserId=gid("User", contact.id))
    # ...and who has since been deactivated
    await User.filter(id=contact.id).update(is_active=False)
    # when a payment fails
    await alerts.payment_failed(customer, "pi_1", "expired card")
    await run_jobs(app)
    # then the always-on alert still reaches the customer's active admins
    assert [sorted(e.rcpt_tos) for e in mailbox.envelopes] == [[admin.email]]
    assert (await Alert.get(customer_id=customer.id)).status == AlertStatus.SENT


# ---------------------------------------------------------------- delivery exactly once


async def test_a_redelivered_alert_message_sends_one_email(app: Any, factory: Factory, mailbox: Mailbox) -> None:
    # given an alert whose job message the relay put on the queue
    tenant = await factory.tenant(customers=1)
    alert = await alerts.payment_failed(tenant.customers[0], "pi_9", "insufficient funds")
    assert alert is not None
    assert await Relay(Leases(None)).drain_once() >= 1
    broker = app.state.broker
    (raw,) = list(broker.queues["alerts"].queue)
    message = dramatiq.Message.decode(raw)
    # when the broker delivers the same message twice (a worker died after sending, before acking)
    broker.enqueue(message)
    ran = await EmbeddedConsumer(broker).drain()
    # and the actor is run once more by hand
    again = await actors().send_alert.fn.__wrapped__(alert.id)
    # then one email
    assert ran == 3  # both deliveries of the alert's message, and the webhook fan-out of `alert.raised`
    assert again == "SENT"
    assert len(mailbox.envelopes) == 1
    assert (await Alert.get(id=alert.id)).attempts == 1


@pytest.mark.postgres
async def test_concurrent_deliveries_of_one_alert_send_one_email(app: Any, factory: Factory, mailbox: Mailbox) -> None:
    # given a pending alert
    tenant = await factory.tenant(customers=1)
    alert = await alerts.payment_failed(tenant.customers[0], "pi_c", "card declined")
    assert alert is not None
    # when two workers run its job at the same time
    results = await asyncio.gather(*(actors().send_alert.fn.__wrapped__(alert.id) for _ in range(4)))
    # then it is sent once
    assert results == ["SENT"] * 4
    assert len(mailbox.envelopes) == 1


async def test_a_failed_alert_is_marked_failed_and_alert_retry_sends_it(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given an SMTP server that refuses mail, and a cap-reached alert
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    await prefs(gql, staff, customer.id, monthlySpendingCap="1.00")
    mailbox.reject = "554 5.0.0 Transaction failed"
    # when delivery is attempted (and the broker gives up)
    await record_minutes(gql, staff, customer.id, "20")
    consumer = await run_jobs(app, max_retries=0)
    # then the alert is FAILED with the SMTP error, and nothing was delivered
    assert [m.actor_name for m in consumer.dead_letters] == ["send_alert"]
    (node,) = await alerts_of(gql, staff, customer.id)
    assert (node["status"], node["attempts"]) == ("FAILED", 1)
    assert "554" in node["lastError"]
    assert mailbox.envelopes == []
    # when the mail server recovers and an admin retries it (after adding a recipient)
    mailbox.reject = None
    await prefs(gql, staff, customer.id, extraAlertRecipients=["finance@example.com"])
    token = await gql.login(tenant.admins[0].email)
    retried = await gql(RETRY, {"i": {"alertId": node["id"]}}, token)
    assert retried["alertRetry"]["errors"] == []
    assert retried["alertRetry"]["alert"]["status"] == "PENDING"
    await run_jobs(app)
    # then it is sent once, to the current recipients
    assert sorted(mailbox.envelopes[0].rcpt_tos) == sorted([tenant.admins[0].email, "finance@example.com"])
    assert len(mailbox.envelopes) == 1
    (node,) = await alerts_of(gql, staff, customer.id)
    assert (node["status"], node["attempts"]) == ("SENT", 2)
    # and a sent alert cannot be retried
    refused = await gql(RETRY, {"i": {"alertId": node["id"]}}, token)
    assert [e["code"] for e in refused["alertRetry"]["errors"]] == ["INVALID"]
    await run_jobs(app)
    assert len(mailbox.envelopes) == 1


async def test_alert_retry_clicked_twice_at_once_sends_one_email(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a FAILED alert whose first delivery is long done
    tenant = await factory.tenant(customers=1)
    alert = await alerts.payment_failed(tenant.customers[0], "pi_r", "card declined")
    assert alert is not None
    await Alert.filter(id=alert.id).update(status=AlertStatus.FAILED, last_error="timeout")
    await OutboxEvent.all().update(published_at=alert.created_at)
    staff = await gql.login(tenant.owner.email)
    # when an admin's retries arrive at the same time
    answers = await asyncio.gather(*(gql(RETRY, {"i": {"alertId": gid("Alert", alert.id)}}, staff) for _ in range(5)))
    relayed = await Relay(Leases(None)).drain_once()
    await EmbeddedConsumer(app.state.broker).drain()
    # then one retry is accepted, one delivery enqueued and one email sent
    codes = sorted(tuple(e["code"] for e in a["alertRetry"]["errors"]) for a in answers)
    assert codes == [(), ("INVALID",), ("INVALID",), ("INVALID",), ("INVALID",)]
    assert relayed == 1
    assert len(mailbox.envelopes) == 1


@pytest.mark.postgres
async def test_one_crossing_reported_concurrently_raises_one_alert(
    app: Any, factory: Factory, mailbox: Mailbox
) -> None:
    # given a customer
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    # when the payment provider's webhook reports the same failed attempt four times at once
    raised = await asyncio.gather(*(alerts.payment_failed(customer, "pi_dup", "declined") for _ in range(4)))
    relayed = await Relay(Leases(None)).drain_once()
    await EmbeddedConsumer(app.state.broker).drain()
    # then one alert is raised, announced and audited once, and emailed once
    assert sum(1 for a in raised if a is not None) == 1
    assert relayed == 1
    assert await AuditEvent.filter(action="alert.raised", customer_id=customer.id).count() == 1
    assert len(mailbox.envelopes) == 1


async def test_alerts_of_another_partners_customer_are_not_visible(gql: GQL, factory: Factory) -> None:
    # given an alert of a customer of another partner
    mine, theirs = await factory.tenant(customers=1), await factory.tenant(customers=1)
    alert = await alerts.payment_failed(theirs.customers[0], "pi_x", "declined")
    assert alert is not None
    await Alert.filter(id=alert.id).update(status=AlertStatus.FAILED)
    staff = await gql.login(mine.owner.email)
    # when my staff asks for them, or retries it
    listed = await gql.raw(ALERTS, {"id": gid("Customer", theirs.customers[0].id)}, staff)
    retried = await gql(RETRY, {"i": {"alertId": gid("Alert", alert.id)}}, staff)
    # then both are NOT_FOUND
    assert listed.json()["data"] is None
    assert "not found" in listed.json()["errors"][0]["message"].lower()
    assert [e["code"] for e in retried["alertRetry"]["errors"]] == ["NOT_FOUND"]
    assert (await Alert.get(id=alert.id)).status == AlertStatus.FAILED


# ---------------------------------------------------------------- the outbox


async def test_a_rolled_back_transaction_enqueues_nothing(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a funded wallet customer with a refill threshold and a low-balance level
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    await prefs(
        gql, staff, customer.id, billingMode="REFILLABLE_WALLET", refillAmount="100", refillProcessedAlert=False
    )
    await refill(gql, staff, customer.id, "100")
    await prefs(gql, staff, customer.id, refillThreshold="50")
    await run_jobs(app)
    assert mailbox.envelopes == []
    pending_before = await OutboxEvent.filter(published_at=None).count()
    # when a charge that would raise the refill request and the low-balance alert rolls back
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await charge_wallet(customer, Decimal("90"))
            assert await OutboxEvent.filter(published_at=None).count() > pending_before
            raise RuntimeError("the request failed after the charge")
    relayed = await Relay(Leases(None)).drain_once()
    ran = await EmbeddedConsumer(app.state.broker).drain()
    # then nothing was relayed, enqueued, sent or kept
    assert (pending_before, relayed, ran) == (0, 0, 0)
    assert mailbox.envelopes == []
    assert await Alert.filter(customer_id=customer.id).count() == 0
    assert await RefillRequest.filter(customer_id=customer.id).count() == 0
    # when the same charge commits
    await charge(customer, "90")
    await run_jobs(app)
    # then the refill notice and the low-balance alert go out
    subjects = sorted(m["Subject"] for m in mailbox.messages)
    assert subjects == sorted([f"Refill needed: {customer.name}", f"{tenant.partner.name}: Wallet balance is low"])


# ---------------------------------------------------------------- the refill workflow


async def test_refill_workflow_notifies_partner_admins_once_and_the_refill_closes_it(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a wallet customer ($100 refill when below $50) of a partner with two admins and a member
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    second_admin = await factory.user(role=Role.PARTNER_ADMIN, partner=tenant.partner)
    member = await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)
    staff = await gql.login(tenant.owner.email)
    await prefs(
        gql,
        staff,
        customer.id,
        billingMode="REFILLABLE_WALLET",
        refillAmount="100",
        lowBalanceAlert=False,
        refillProcessedAlert=False,
    )
    await refill(gql, staff, customer.id, "100")
    await prefs(gql, staff, customer.id, refillThreshold="50", refillProcessedAlert=True)
    await run_jobs(app)
    assert mailbox.envelopes == []
    # when usage takes the wallet below the threshold, twice
    await charge(customer, "60")
    await charge(customer, "10")
    await run_jobs(app)
    # then one refill request, and one internal notice to the partner's admins
    request = await RefillRequest.get(customer_id=customer.id)
    assert request.status == "OPEN" and request.notified_at is not None
    assert len(mailbox.envelopes) == 1
    assert sorted(mailbox.envelopes[0].rcpt_tos) == sorted([tenant.owner.email, second_admin.email])
    assert member.email not in mailbox.envelopes[0].rcpt_tos
    notice = mailbox.messages[0]
    assert notice["Subject"] == f"Refill needed: {customer.name}"
    assert "Current balance: $40.00" in notice.get_content()
    assert "Refill threshold: $50.00" in notice.get_content()
    # when the notice job is delivered again
    assert await actors().notify_refill_request.fn.__wrapped__(request.id) == 0
    assert len(mailbox.envelopes) == 1
    # when the billing team records the refill
    done = await refill(gql, staff, customer.id, "100")
    await run_jobs(app)
    # then the request is closed and the customer gets the refill-processed alert
    assert done["wallet"]["refillRequest"] is None
    assert (await RefillRequest.get(id=request.id)).status == "CLOSED"
    (processed,) = mailbox.of_kind(AlertKind.REFILL_PROCESSED)
    assert processed["To"] == tenant.admins[0].email
    assert "$130.00" in html_of(processed)
    assert len(mailbox.envelopes) == 2


async def test_a_refill_request_closed_before_its_notice_ran_sends_no_notice(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given a wallet customer whose balance fell below the threshold...
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    await prefs(
        gql,
        staff,
        customer.id,
        billingMode="REFILLABLE_WALLET",
        refillAmount="100",
        refillThreshold="50",
        refillProcessedAlert=False,
    )
    await refill(gql, staff, customer.id, "60")
    await charge(customer, "20")
    # ...and was refilled before the notice jobs ran
    await refill(gql, staff, customer.id, "100")
    # when the jobs run
    await run_jobs(app)
    # then nobody is told to refill a wallet that was already refilled
    assert [m["Subject"] for m in mailbox.messages if m["Subject"].startswith("Refill needed")] == []
    statuses = await RefillRequest.filter(customer_id=customer.id).values_list("status", flat=True)
    assert statuses == ["CLOSED", "CLOSED"]  # opened when the threshold was set, and again after the charge


# ---------------------------------------------------------------- the Redis broker and a worker process


@pytest.mark.redis
async def test_an_alert_through_redis_and_a_worker_process_is_emailed_once(
    app: Any, factory: Factory, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given a `dramatiq` worker process on Redis that mails through the test SMTP server
    from dramatiq.brokers.redis import RedisBroker

    tenant = await factory.tenant(customers=1, name="Redis Reseller")
    namespace = f"pd-alerts-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": REDIS_URL or "",
        "APP_ENV": "test",
        "DRAMATIQ_NAMESPACE": namespace,
        "SMTP_URL": mailbox.url,
        "PUBLIC_URL": PUBLIC_URL,
        "OUTBOX_DIR": str(tmp_path / "worker-outbox"),
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "server.worker", "--processes", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    redis_broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    try:
        # and a relay that enqueues to that Redis broker, as in production
        monkeypatch.setattr(actors().send_alert, "broker", redis_broker)
        alert = await alerts.payment_failed(tenant.customers[0], "pi_redis", "card declined", Decimal("12.5"))
        assert alert is not None
        # when the relay hands the alert to Redis
        assert await Relay(Leases(None)).drain_once() >= 1
        # then the worker sends it
        for _ in range(300):
            if (await Alert.get(id=alert.id)).status == AlertStatus.SENT and mailbox.envelopes:
                break
            await asyncio.sleep(0.1)
        assert len(mailbox.envelopes) == 1, log_path.read_text()
        # when the relay publishes it again (as if it crashed before marking the event published)
        await OutboxEvent.all().update(published_at=None)
        assert await Relay(Leases(None)).drain_once() >= 1
        for _ in range(50):
            if (await Alert.get(id=alert.id)).attempts > 1 or len(mailbox.envelopes) > 1:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        # then the worker ran the job again but sent nothing more
        assert len(mailbox.envelopes) == 1, log_path.read_text()
        message = mailbox.messages[0]
        assert message["Subject"] == "Redis Reseller: Payment failed"
        assert f'href="{BILLING_PREFERENCES_LINK}"' in html_of(message)
        assert mailbox.envelopes[0].rcpt_tos == [tenant.admins[0].email]
        assert (await Alert.get(id=alert.id)).status == AlertStatus.SENT
    finally:
        # the master relays SIGTERM to its worker processes; signalling the whole group too gives each worker a
        # second one, on which dramatiq exits without stopping its consumer threads (and hangs until SIGKILL)
        os.kill(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        redis_broker.flush_all()
        redis_broker.close()
