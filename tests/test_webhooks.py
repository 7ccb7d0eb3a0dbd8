"""Outgoing webhooks, end to end: endpoints registered over GraphQL, events produced from the outbox after commit,
signed deliveries to a real local HTTP receiver that verifies them with the `standardwebhooks` library, retries,
a worker killed mid-request, SSRF refusals in production, fairness between tenants, and who may do what."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from domain import config as domain_config
from domain.accounts.models import Role
from domain.audit.models import AuditEvent, AuditEventType
from domain.events.models import OutboxEvent
from domain.features.models import FeatureToggles
from domain.webhooks import delivery, sender
from domain.webhooks.models import DeliveryState, EndpointStatus, WebhookDelivery, WebhookEndpoint
from jobs.broker import EmbeddedConsumer
from server.locks import Leases
from server.relay import Relay
from tests.conftest import GQL, ROOT, TEST_DATABASE_URL, Factory, count_queries, gid
from tests.receivers import http_receiver, settle
from tests.test_alerts import Mailbox, mailbox  # noqa: F401  (the real SMTP server fixture)

CREATE = """mutation($i: WebhookEndpointCreateInput!) { webhookEndpointCreate(input: $i) {
  webhookEndpoint { id url eventTypes status customer { id } } secret errors { field code message } } }"""
UPDATE = """mutation($i: WebhookEndpointUpdateInput!) { webhookEndpointUpdate(input: $i) {
  webhookEndpoint { id status url } errors { field code message } } }"""
ROTATE = """mutation($i: WebhookEndpointSecretRotateInput!) { webhookEndpointSecretRotate(input: $i) {
  secret errors { code } } }"""
DELETE = """mutation($i: WebhookEndpointDeleteInput!) { webhookEndpointDelete(input: $i) {
  webhookEndpoint { status } errors { code } } }"""
REDELIVER = """mutation($i: WebhookRedeliverInput!) { webhookRedeliver(input: $i) {
  delivery { status } errors { code message } } }"""
DELIVERIES = """query($id: ID!, $f: WebhookDeliveryFilter) { webhookDeliveries(endpointId: $id, filter: $f) {
  totalCount nodes { id eventType status attempts responseStatus latencyMs webhookId
  request { url body headers } attemptLog { attempt responseStatus error } } } }"""
REFILL = """mutation($i: WalletRefillInput!) { walletRefill(input: $i) { errors { code message } } }"""


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> Any:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


async def _endpoint(gql: GQL, token: str, url: str, types: list[str] | None = None) -> tuple[str, str]:
    data = await gql(CREATE, {"i": {"url": url, "eventTypes": types or ["wallet.refilled"]}}, token)
    made = data["webhookEndpointCreate"]
    assert made["errors"] == [], made
    return made["webhookEndpoint"]["id"], made["secret"]


async def _refill(gql: GQL, token: str, customer_id: int, amount: str = "50.00") -> None:
    data = await gql(
        REFILL,
        {"i": {"customerId": gid("Customer", customer_id), "amount": amount, "idempotencyKey": uuid.uuid4().hex}},
        token,
    )
    assert data["walletRefill"]["errors"] == []


async def _deliveries(gql: GQL, token: str, endpoint_id: str, **filters: str) -> dict[str, Any]:
    data = await gql(DELIVERIES, {"id": endpoint_id, "f": filters or None}, token)
    return data["webhookDeliveries"]


async def test_an_event_reaches_a_real_receiver_signed_so_standard_webhooks_verifies_it(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given a partner admin's endpoint for wallet refills, at a real local receiver
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    with http_receiver([200]) as receiver:
        endpoint_id, secret = await _endpoint(gql, token, f"{receiver.url}/hooks")
        # when a refill commits and the outbox is worked off
        await _refill(gql, token, tenant.customers[0].id, "50.00")
        await settle(app)
        # then the receiver got one request the library verifies with the secret shown once
        assert len(receiver.requests) == 1
        got = receiver.requests[0]
        payload = Webhook(secret).verify(got.body, got.headers)
    assert got.path == "/hooks"
    assert payload["type"] == "wallet.refilled"
    assert payload["data"]["customerId"] == gid("Customer", tenant.customers[0].id)
    assert payload["data"]["amount"] == "50.00"
    assert payload["data"]["source"] == "manual"
    assert got.headers["webhook-id"].startswith("msg_")
    # and the delivery log shows the request, response code, latency and attempt count
    log = await _deliveries(gql, token, endpoint_id)
    assert log["totalCount"] == 1
    entry = log["nodes"][0]
    assert (entry["status"], entry["attempts"], entry["responseStatus"]) == ("SUCCEEDED", 1, 200)
    assert entry["latencyMs"] is not None
    assert entry["webhookId"] == got.headers["webhook-id"]
    assert entry["request"]["body"] == got.body.decode()
    assert entry["request"]["headers"]["webhook-id"] == got.headers["webhook-id"]
    # and the delivery is an INTEGRATION audit event of the partner
    audited = await AuditEvent.filter(type=AuditEventType.INTEGRATION, action="webhook.delivery").all()
    assert [(e.partner_id, e.details["response_status"]) for e in audited] == [(tenant.partner.id, 200)]


async def test_after_a_500_it_retries_once_more_on_schedule_and_stops_at_the_success(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given a receiver answering 500 and then 200
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    with http_receiver([500, 200]) as receiver:
        endpoint_id, _ = await _endpoint(gql, token, receiver.url)
        await _refill(gql, token, tenant.customers[0].id)
        await settle(app)
        row = await WebhookDelivery.get()
        assert (row.state, row.attempts, row.response_status) == (DeliveryState.WAITING, 1, 500)
        # when the sweep runs before the retry is due, then when it is due
        due = row.next_attempt_at
        assert await delivery.sweep(now=due - timedelta(seconds=1)) == 0
        assert await delivery.sweep(now=due) == 1
        assert await delivery.attempt(row.id, now=due) == DeliveryState.SUCCEEDED
        # then nothing more is ever sent
        assert await delivery.sweep(now=due + timedelta(days=2)) == 0
        await settle(app)
        ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 2 and ids[0] == ids[1]
    log = await _deliveries(gql, token, endpoint_id)
    assert [(a["attempt"], a["responseStatus"]) for a in log["nodes"][0]["attemptLog"]] == [(2, 200), (1, 500)]


async def test_a_failing_receiver_is_retried_with_backoff_for_about_a_day_then_the_delivery_fails(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given a receiver that always answers 500
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    with http_receiver([500]) as receiver:
        await _endpoint(gql, token, receiver.url)
        await _refill(gql, token, tenant.customers[0].id)
        await settle(app)
        first = (await WebhookDelivery.get()).last_attempt_at
        # when every retry is run as it falls due
        for _ in range(20):
            row = await WebhookDelivery.get()
            if row.state == DeliveryState.FAILED:
                break
            assert await delivery.sweep(now=row.next_attempt_at) == 1
            await delivery.attempt(row.id, now=row.next_attempt_at)
        # then it gave up after 8 attempts spread over about a day, and sends nothing more
        row = await WebhookDelivery.get()
        assert (row.state, row.attempts) == (DeliveryState.FAILED, 8)
        assert first is not None and row.last_attempt_at is not None
        assert timedelta(hours=20) < row.last_attempt_at - first < timedelta(hours=26)
        assert await delivery.sweep(now=row.last_attempt_at + timedelta(days=3)) == 0
        assert len(receiver.requests) == 8


async def test_a_busy_receiver_is_retried_when_its_retry_after_says_and_retries_are_spread(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given a receiver answering 503 with `Retry-After: 600` (ten minutes, where the schedule says 5 s), then 200
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)

    def busy_then_ok(got: Any) -> tuple[int, dict[str, str], bytes]:
        return (503, {"retry-after": "600"}, b"busy") if len(receiver.requests) == 1 else (200, {}, b"ok")

    with http_receiver(respond=busy_then_ok) as receiver:
        await _endpoint(gql, token, receiver.url)
        await _refill(gql, token, tenant.customers[0].id)
        await settle(app)
        # then the retry waits as long as the receiver asked
        row = await WebhookDelivery.get()
        assert (row.state, row.attempts, row.response_status) == (DeliveryState.WAITING, 1, 503)
        assert row.last_attempt_at is not None and row.next_attempt_at is not None
        waited = row.next_attempt_at - row.last_attempt_at
        assert timedelta(seconds=599) <= waited <= timedelta(seconds=610), waited
        assert await delivery.sweep(now=row.next_attempt_at - timedelta(seconds=60)) == 0
        assert await delivery.sweep(now=row.next_attempt_at) == 1
        assert await delivery.attempt(row.id, now=row.next_attempt_at) == DeliveryState.SUCCEEDED


def test_retry_after_reads_seconds_and_dates_and_ignores_nonsense() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert sender.retry_after("120", now) == timedelta(seconds=120)
    assert sender.retry_after("Mon, 30 Nov 2026 12:05:00 GMT", now) == timedelta(minutes=5)
    assert sender.retry_after("Mon, 30 Nov 2026 11:00:00 GMT", now) == timedelta(0)
    assert sender.retry_after("soon", now) is None
    assert sender.retry_after("", now) is None
    assert sender.retry_after("99999999999999999999", now) == timedelta(seconds=10**7)


def test_retry_delays_are_spread_by_jitter_and_a_long_retry_after_is_capped() -> None:
    row = WebhookDelivery(attempts=2)
    moment = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    delays = {delivery._next_attempt(row, moment) for _ in range(50)}
    assert len(delays) > 40  # not one instant for every delivery that failed at once
    five_minutes = timedelta(minutes=5)
    assert all(five_minutes * 0.9 <= d - moment <= five_minutes * 1.1 for d in delays if d is not None)
    capped = delivery._next_attempt(row, moment, timedelta(days=30))
    assert capped == moment + delivery.LONGEST_RETRY_AFTER


_WORKER = """
import asyncio, sys
from tortoise import Tortoise
from server.settings import get_settings
from domain.webhooks import delivery

async def main() -> None:
    await Tortoise.init(config=get_settings().tortoise_config(), _enable_global_fallback=True)
    await delivery.attempt(int(sys.argv[1]))

asyncio.run(main())
"""


async def test_a_worker_killed_mid_delivery_is_followed_by_a_redelivery_with_the_same_webhook_id(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given a dispatched delivery and a receiver that holds the first request open
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    with http_receiver([200]) as receiver:
        receiver.hold = threading.Event()
        await _endpoint(gql, token, receiver.url)
        await _refill(gql, token, tenant.customers[0].id)
        await Relay(Leases(None)).drain_once()  # the fan-out job
        await EmbeddedConsumer(app.state.broker, max_retries=0).drain()
        app.state.broker.flush_all()
        row = await WebhookDelivery.get()
        assert row.state == DeliveryState.DISPATCHED
        # when a worker process sends it and is killed while the request is in flight
        env = {**os.environ, "DATABASE_URL": TEST_DATABASE_URL, "APP_ENV": "test"}
        worker = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(row.id)], cwd=ROOT, env=env, start_new_session=True
        )
        try:
            assert await asyncio.to_thread(receiver.arrived.wait, 60), "the worker never sent the request"
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        stuck = await WebhookDelivery.get()
        assert (stuck.state, stuck.attempts) == (DeliveryState.SENDING, 1)
        held, receiver.hold = receiver.hold, None
        held.set()
        # then once its lease runs out the sweep sends it again, and the receiver sees the same webhook-id
        assert stuck.busy_until is not None
        assert await delivery.sweep(now=stuck.busy_until - timedelta(seconds=1)) == 0
        assert await delivery.sweep(now=stuck.busy_until + timedelta(seconds=1)) == 1
        await settle(app)
        ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 2 and ids[0] == ids[1]
    done = await WebhookDelivery.get()
    assert (done.state, done.attempts) == (DeliveryState.SUCCEEDED, 2)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",  # not https
        "https://127.0.0.1/in",
        "https://10.1.2.3/in",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/in",
        "https://[::ffff:127.0.0.1]/in",
        "https://100.64.0.1/in",  # shared address space
        "https://localhost/in",
        "https://metadata.google.internal/in",
        "https://user:pw@hooks.example.com/in",
        "ftp://hooks.example.com/in",
    ],
)
async def test_in_production_private_loopback_and_metadata_targets_are_refused_when_registered(
    gql: GQL, factory: Factory, url: str
) -> None:
    tenant = await factory.tenant(customers=0)
    token = await gql.login(tenant.owner.email)
    with domain_config.overridden(app_env="prod"):
        data = await gql(CREATE, {"i": {"url": url, "eventTypes": ["wallet.refilled"]}}, token)
    assert [(e["field"], e["code"]) for e in data["webhookEndpointCreate"]["errors"]] == [("url", "INVALID")]
    assert not await WebhookEndpoint.exists()


def _loopback_name() -> str:
    """A host name this machine resolves to a loopback address (its own name, from /etc/hosts)."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        pytest.skip("this machine's name does not resolve")
    if not all(a.startswith("127.") or a == "::1" for a in addresses):
        pytest.skip("this machine's name does not resolve to loopback")
    return name


async def test_in_production_the_address_resolved_at_send_time_is_checked_not_only_the_name(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given an endpoint whose host name looks public but resolves to loopback (as after DNS rebinding)
    name = _loopback_name()
    with pytest.raises(sender.TargetRefused):
        await sender.resolve(name, 443, allow_private=False)
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    with http_receiver([200]) as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        await _endpoint(gql, token, f"http://{name}:{port}/in")
        await _refill(gql, token, tenant.customers[0].id)
        # when it is sent in production
        with domain_config.overridden(app_env="prod"):
            await settle(app)
        # then nothing reached the address, and the attempt says why
        assert receiver.requests == []
    row = await WebhookDelivery.get()
    assert row.state == DeliveryState.WAITING and row.attempts == 1
    assert row.last_error.startswith("refused:") and "non-public" in row.last_error


async def test_a_failing_endpoints_backlog_waits_in_the_database_and_never_delays_another_partner(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given two partners with an endpoint each; the first one's receiver is down
    slow, quick = await factory.tenant(customers=1), await factory.tenant(customers=1)
    slow_token, quick_token = await gql.login(slow.owner.email), await gql.login(quick.owner.email)
    slow_id, _ = await _endpoint(gql, slow_token, "http://127.0.0.1:9/down")
    quick_id, _ = await _endpoint(gql, quick_token, "http://127.0.0.1:9/also-down")
    # when the first partner produces ten events, then the second one
    for _ in range(10):
        await _refill(gql, slow_token, slow.customers[0].id, "1.00")
    await _refill(gql, quick_token, quick.customers[0].id, "1.00")
    await Relay(Leases(None)).drain_once()
    await EmbeddedConsumer(app.state.broker, max_retries=0).drain()  # the fan-outs only
    # then only the endpoint's slots' worth is handed to the workers; the other partner's is dispatched at once
    states = {
        endpoint: sorted(
            str(d.state) for d in await WebhookDelivery.filter(endpoint_id=int(_pk(endpoint))).order_by("id")
        )
        for endpoint in (slow_id, quick_id)
    }
    limit = domain_config.config().webhook_max_in_flight_per_endpoint
    assert states[slow_id].count("DISPATCHED") == limit and states[slow_id].count("WAITING") == 10 - limit
    assert states[quick_id] == ["DISPATCHED"]
    assert await OutboxEvent.filter(topic="webhook_delivery.requested", published_at=None).count() == limit + 1


def _pk(global_id: str) -> str:
    import base64

    return base64.b64decode(global_id).decode().split(":")[1]


async def test_customer_admins_need_api_access_and_their_endpoint_gets_only_their_customers_events(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given a partner with two customers; the first customer's admin
    tenant = await factory.tenant(customers=2)
    staff = await gql.login(tenant.owner.email)
    admin = await gql.login(tenant.admins[0].email)
    member = await gql.login((await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)).email)
    with http_receiver([200]) as receiver:
        # when it has no API access, then it may not register an endpoint
        refused = await gql(CREATE, {"i": {"url": receiver.url, "eventTypes": ["wallet.refilled"]}}, admin)
        assert [e["code"] for e in refused["webhookEndpointCreate"]["errors"]] == ["REQUIRES_FEATURE"]
        # and partner members may not either
        refused = await gql(CREATE, {"i": {"url": receiver.url, "eventTypes": ["wallet.refilled"]}}, member)
        assert [e["code"] for e in refused["webhookEndpointCreate"]["errors"]] == ["FORBIDDEN"]
        # when it has the add-on, its endpoint receives its own customer's events only
        await FeatureToggles.create(customer_id=tenant.customers[0].id, api_access=True)
        endpoint_id, _ = await _endpoint(gql, admin, receiver.url)
        await _refill(gql, staff, tenant.customers[1].id, "7.00")
        await _refill(gql, staff, tenant.customers[0].id, "8.00")
        await settle(app)
        bodies = [json.loads(r.body) for r in receiver.requests]
    assert [b["data"]["amount"] for b in bodies] == ["8.00"]
    # and the partner's staff see the endpoint, another partner's admin does not
    other = await factory.tenant(customers=0)
    other_token = await gql.login(other.owner.email)
    assert (await _deliveries(gql, staff, endpoint_id))["totalCount"] == 1
    response = await gql.raw(DELIVERIES, {"id": endpoint_id}, other_token)
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # and unknown event types are refused
    bad = await gql(CREATE, {"i": {"url": receiver.url, "eventTypes": ["wallet.stolen"]}}, staff)
    assert [(e["field"], e["code"]) for e in bad["webhookEndpointCreate"]["errors"]] == [("eventTypes", "INVALID")]


async def test_an_endpoint_failing_for_three_days_is_disabled_and_its_owner_emailed(
    app: Any,
    gql: GQL,
    factory: Factory,
    mailbox: Mailbox,  # noqa: F811
) -> None:
    # given an endpoint that has been failing for three days
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    with http_receiver([503]) as receiver:
        endpoint_id, _ = await _endpoint(gql, token, receiver.url)
        await WebhookEndpoint.all().update(failing_since=datetime.now(UTC) - timedelta(days=3, minutes=1))
        # when the next delivery fails too
        await _refill(gql, token, tenant.customers[0].id)
        await settle(app)
    # then the endpoint is disabled, its owner told once, and nothing more is dispatched to it
    endpoint = await WebhookEndpoint.get()
    assert endpoint.status == EndpointStatus.DISABLED and endpoint.disabled_reason.startswith("Failing since")
    notices = [m for m in mailbox.messages if "webhook endpoint was disabled" in m["Subject"]]
    assert [m["To"] for m in notices] == [tenant.owner.email]
    assert receiver.url in notices[0].get_content()
    assert await delivery.dispatch(endpoint.id, datetime.now(UTC) + timedelta(days=1)) == 0
    # when the owner enables it again and redelivers
    enabled = await gql(UPDATE, {"i": {"webhookEndpointId": endpoint_id, "enabled": True}}, token)
    assert enabled["webhookEndpointUpdate"]["webhookEndpoint"]["status"] == "ENABLED"


async def test_redeliver_sends_the_same_message_again_and_a_rotated_secret_signs_beside_the_old_one(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given a delivered event
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    with http_receiver([200]) as receiver:
        endpoint_id, old_secret = await _endpoint(gql, token, receiver.url)
        await _refill(gql, token, tenant.customers[0].id)
        await settle(app)
        delivery_id = (await _deliveries(gql, token, endpoint_id))["nodes"][0]["id"]
        # when the secret is rotated and the delivery is sent again
        rotated = await gql(ROTATE, {"i": {"webhookEndpointId": endpoint_id}}, token)
        new_secret = rotated["webhookEndpointSecretRotate"]["secret"]
        again = await gql(REDELIVER, {"i": {"deliveryId": delivery_id}}, token)
        assert again["webhookRedeliver"]["errors"] == []
        await settle(app)
        first, second = receiver.requests
    # then the receiver gets the same webhook-id, verifiable with the new secret and (for 24 hours) the old one
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert Webhook(new_secret).verify(second.body, second.headers)["type"] == "wallet.refilled"
    assert Webhook(old_secret).verify(second.body, second.headers)["type"] == "wallet.refilled"
    assert old_secret != new_secret
    # and a deleted endpoint is gone for its owner
    deleted = await gql(DELETE, {"i": {"webhookEndpointId": endpoint_id}}, token)
    assert deleted["webhookEndpointDelete"]["webhookEndpoint"]["status"] == "DISABLED"
    response = await gql.raw(DELIVERIES, {"id": endpoint_id}, token)
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_listing_deliveries_costs_the_same_statements_for_2_and_8(app: Any, gql: GQL, factory: Factory) -> None:
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    with http_receiver([200]):
        endpoint_id, _ = await _endpoint(gql, token, "http://127.0.0.1:9/none")
    counts = []
    for n in (2, 8):
        while await WebhookDelivery.all().count() < n:
            await _refill(gql, token, tenant.customers[0].id, "1.00")
            await Relay(Leases(None)).drain_once()
            await EmbeddedConsumer(app.state.broker, max_retries=0).drain()
            app.state.broker.flush_all()
        with count_queries() as counter:
            log = await _deliveries(gql, token, endpoint_id)
        assert log["totalCount"] == n
        counts.append(len(counter.queries))
    assert counts[0] == counts[1]
