"""Periodic jobs: slots claimed once across schedulers, monthly phone-number charges once per month, the 90-day
retention purge (ledger balanced, audit chain verifiable), and `partnerdesk jobs status`."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dramatiq
import pytest

from domain.accounts.models import Membership, Role, Session, User
from domain.accounts.services import org_key
from domain.alerts import services as alerts
from domain.alerts.models import Alert
from domain.audit.models import AuditEvent
from domain.billing.commands import BillingPreferencesUpdate
from domain.billing.models import BillingPreferences
from domain.billing.preferences import billing_preferences_update
from domain.customers.commands import CustomerDisable, CustomerEnable
from domain.customers.models import Customer
from domain.customers.retention import RETENTION, purge_customer
from domain.customers.services import customer_disable, customer_enable
from domain.ledger import services as ledger
from domain.ledger.models import Currency, LedgerAccount
from domain.usage.models import CapCrossing, MonthlySpend, PhoneNumber, UsageEvent, UsageRollup
from jobs.broker import EmbeddedConsumer
from server.locks import Leases
from server.pubsub import PubSub
from server.scheduler import Scheduler
from tests.conftest import GQL, REDIS_URL, SYSTEM, Factory, eventually, gid, run_cli
from tests.funding import fund_wallet

HOUR = 3600.0
DAY_START = 1_900_000_000.0 // 86_400 * 86_400  # a UTC midnight: every job's slot starts there


def scheduled() -> Any:
    """The periodic actors, imported late: an actor binds to the broker current at import (set by the app)."""
    import jobs.scheduled

    return jobs.scheduled


def queued(broker: Any) -> list[str]:
    """Actor names of the messages waiting in a StubBroker, without consuming them."""
    names = []
    for queue in broker.queues.values():
        names += [dramatiq.Message.decode(raw).actor_name for raw in list(queue.queue)]
    return sorted(names)


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


@pytest.fixture
async def redis_leases() -> AsyncIterator[tuple[Leases, Leases]]:
    """Two processes' worth of leases on one real Redis, under a prefix of this test's own."""
    prefix = f"pd-test-{uuid.uuid4().hex[:8]}"
    first, second = Leases(REDIS_URL, prefix=prefix), Leases(REDIS_URL, prefix=prefix)
    yield first, second
    assert first.redis is not None
    for redis_key in await first.redis.keys(f"{prefix}:*"):
        await first.redis.delete(redis_key)
    await first.close()
    await second.close()


@pytest.mark.redis
async def test_deployments_with_their_own_key_prefix_share_nothing_on_one_redis() -> None:
    # given two deployments (REDIS_KEY_PREFIX) on one Redis database, each with its leases and pub/sub
    prefixes = [f"pd-deploy-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    leases = [Leases(REDIS_URL, prefix=p) for p in prefixes]
    hubs = [PubSub(REDIS_URL, p) for p in prefixes]
    for hub in hubs:
        await hub.start()
    try:
        # when both take the relay lease, and the first publishes a change of customer 1
        held = [await lease.acquire("relay", 5) for lease in leases]
        with hubs[0].subscribe("credits:1") as own, hubs[1].subscribe("credits:1") as other:
            await hubs[0].publish("credits:1", {"n": 1})
            delivered = [await own.wait(2), await other.wait(0.3)]
        # then each holds its own lease and only the first deployment's subscriber heard the change
        assert held == [True, True]
        assert delivered == [True, False]
    finally:
        for hub in hubs:
            await hub.stop()
        for lease in leases:
            await lease.release("relay")
            await lease.close()


# ---------------------------------------------------------------- slots


@pytest.mark.redis
async def test_two_schedulers_on_one_redis_enqueue_each_slot_once(
    app: Any, redis_leases: tuple[Leases, Leases]
) -> None:
    # given two schedulers (as in two processes) with leases on the same Redis
    first, second = Scheduler(redis_leases[0]), Scheduler(redis_leases[1])
    every = {name: period for name, _, period in first.jobs}
    moment = DAY_START + 10
    # when both tick the same slot at the same time, twice
    sent = await asyncio.gather(first.tick_once(moment), second.tick_once(moment))
    again = await asyncio.gather(first.tick_once(moment + 1), second.tick_once(moment + 1))
    # then each job is enqueued once in all
    assert sorted(sent[0] + sent[1]) == sorted(every)
    assert again == [[], []]
    names = queued(app.state.broker)
    assert names == sorted(actor.actor_name for _, actor, _ in first.jobs)
    # when the next minute starts
    app.state.broker.flush_all()
    later = await asyncio.gather(first.tick_once(moment + 60), second.tick_once(moment + 60))
    # then only the per-minute jobs are due again, once each; the others wait for their next slot
    per_minute = sorted(name for name, period in every.items() if 60 % period == 0)  # due every minute or more often
    assert "usage_hold_expiry" in per_minute and len(per_minute) < len(every)
    assert sorted(later[0] + later[1]) == per_minute
    assert queued(app.state.broker) == sorted(actor.actor_name for name, actor, _ in first.jobs if name in per_minute)
    # and the last tick is visible to every process
    assert (
        await redis_leases[1].get_value("scheduler:last_tick") == datetime.fromtimestamp(moment + 60, UTC).isoformat()
    )


async def test_an_embedded_scheduler_enqueues_a_slot_once(app: Any) -> None:
    # given the embedded scheduler (in-process leases) and one hourly job
    actor = scheduled().monthly_phone_number_charges
    scheduler = Scheduler(Leases(None), jobs=[("monthly_phone_number_charges", actor, 3600)])
    start = DAY_START + 5 * HOUR
    # when it ticks every second for an hour and a minute
    sent = [await scheduler.tick_once(start + s) for s in range(0, 3660, 1)]
    # then the job was enqueued at the start of each hour only
    assert [i for i, names in enumerate(sent) if names] == [0, 3600]
    assert queued(app.state.broker) == ["monthly_phone_number_charges"] * 2


async def test_an_embedded_scheduler_forgets_expired_slot_claims(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the embedded scheduler with a per-minute job, and a clock we move ourselves
    import server.locks

    clock = [1_000.0]
    monkeypatch.setattr(server.locks.time, "monotonic", lambda: clock[0])
    leases = Leases(None)
    scheduler = Scheduler(leases, jobs=[("usage_hold_expiry", scheduled().usage_hold_expiry, 60)])
    # when it runs for a day
    for minute in range(24 * 60):
        clock[0] = 1_000.0 + minute * 60
        assert await scheduler.tick_once(DAY_START + minute * 60) == ["usage_hold_expiry"]
    # then it enqueued every slot once and keeps only the claims that can still matter (not one per slot)
    assert len(queued(app.state.broker)) == 24 * 60
    assert len(leases._local) <= 4


# ---------------------------------------------------------------- phone numbers


async def test_two_runs_of_monthly_phone_number_charges_charge_a_number_once(app: Any, factory: Factory) -> None:
    # given a wallet customer with two active numbers and an inactive one
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await fund_wallet(customer, "10")
    for number, active in (("+15550100", True), ("+15550101", True), ("+15550102", False)):
        await PhoneNumber.create(customer_id=customer.id, number=number, active=active)
    actor = scheduled().monthly_phone_number_charges
    scheduler = Scheduler(Leases(None), jobs=[("monthly_phone_number_charges", actor, 3600)])
    now = datetime.now(UTC).timestamp()
    # when the scheduler enqueues the job in two hourly slots, and a worker runs both
    await scheduler.tick_once(now)
    await scheduler.tick_once(now + HOUR)
    ran = await EmbeddedConsumer(app.state.broker).drain()
    # then each active number was charged once ($2 each)
    assert ran == 2
    rows = await UsageEvent.filter(customer_id=customer.id).order_by("id")
    month = f"{datetime.now(UTC):%Y-%m}"
    assert sorted(r.metadata["number"] for r in rows) == ["+15550100", "+15550101"]
    assert {(r.unit_type, r.cost, r.metadata["month"]) for r in rows} == {("PHONE_NUMBER_MONTHS", Decimal(2), month)}
    assert await ledger.balance_of(ledger.customer_wallet(customer.id, customer.partner_id)) == Decimal(6)


async def test_the_next_month_charges_the_numbers_again(factory: Factory) -> None:
    # given a number charged for this month
    from domain.usage.services import charge_phone_numbers

    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await PhoneNumber.create(customer_id=customer.id, number="+15550199")
    now = datetime.now(UTC)
    first = await charge_phone_numbers()
    # when the job runs on the first day of next month, twice
    next_month = date(now.year + (now.month == 12), now.month % 12 + 1, 1)
    at = datetime(next_month.year, next_month.month, 1, 0, 30, tzinfo=UTC)
    second = await charge_phone_numbers(at=at)
    third = await charge_phone_numbers(at=at)
    # then the number is charged once per month
    assert (first.accepted, second.accepted, third.accepted, third.duplicates) == (1, 1, 0, 1)
    months = sorted(r.metadata["month"] for r in await UsageEvent.filter(customer_id=customer.id))
    assert months == [f"{now:%Y-%m}", f"{next_month:%Y-%m}"]


@pytest.mark.postgres
async def test_concurrent_runs_of_monthly_phone_number_charges_charge_once(factory: Factory) -> None:
    # given two active numbers
    from domain.usage.services import charge_phone_numbers

    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    for number in ("+15550110", "+15550111"):
        await PhoneNumber.create(customer_id=customer.id, number=number)
    # when two workers run the job at the same moment
    results = await asyncio.gather(*(charge_phone_numbers() for _ in range(4)))
    # then each number is charged once
    assert sum(r.accepted for r in results) == 2
    assert await UsageEvent.filter(customer_id=customer.id).count() == 2


# ---------------------------------------------------------------- retention


async def _customer_with_history(gql: GQL, factory: Factory, tenant: Any, index: int) -> dict[str, Any]:
    """A customer with the kinds of data retention must erase: users, a login from an IP, usage, a wallet,
    a phone number, a cap crossing, an alert and billing preferences naming people."""
    customer, admin = tenant.customers[index], tenant.admins[index]
    staff = await gql.login(tenant.owner.email)
    await gql.login(admin.email)  # a session and an audited login with an IP address
    await billing_preferences_update(
        SYSTEM,
        BillingPreferencesUpdate(
            customer.id,
            monthly_spending_cap=Decimal(1),
            extra_alert_recipients=[f"finance{index}@private.example.com"],
        ),
    )
    await fund_wallet(customer, "5")
    await PhoneNumber.create(customer_id=customer.id, number=f"+1555020{index}")
    data = await gql(
        "mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted } }",
        {
            "i": {
                "events": [
                    {
                        "idempotencyKey": uuid.uuid4().hex,
                        "customerId": gid("Customer", customer.id),
                        "unitType": "VOICE_MINUTES",
                        "quantity": "20",
                        "occurredAt": datetime.now(UTC).isoformat(),
                    }
                ]
            }
        },
        staff,
    )
    assert data["usageRecord"]["accepted"] == 1
    await alerts.payment_failed(customer, f"pi_{index}", "card declined")
    return {"customer": customer, "admin": admin}


async def _rows_of(customer_id: int) -> dict[str, int]:
    return {
        "memberships": await Membership.filter(customer_id=customer_id).count(),
        "alerts": await Alert.filter(customer_id=customer_id).count(),
        "preferences": await BillingPreferences.filter(customer_id=customer_id).count(),
        "phone_numbers": await PhoneNumber.filter(customer_id=customer_id).count(),
        "usage_events": await UsageEvent.filter(customer_id=customer_id).count(),
        "rollups": await UsageRollup.filter(customer_id=customer_id).count(),
        "monthly_spend": await MonthlySpend.filter(customer_id=customer_id).count(),
        "cap_crossings": await CapCrossing.filter(customer_id=customer_id).count(),
    }


async def _disabled_days_ago(customer: Customer, days: float) -> None:
    await customer_disable(SYSTEM, CustomerDisable(customer.id))
    await Customer.filter(id=customer.id).update(disabled_at=datetime.now(UTC) - timedelta(days=days))


async def _audit_text() -> str:
    rows = await AuditEvent.all().values("actor_label", "ip", "user_agent", "details")
    return json.dumps(rows, default=str)


async def test_retention_purges_customers_disabled_90_days_and_keeps_ledger_and_audit_verifiable(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given three customers with history: one disabled 90 days ago, one 89 days ago, one active
    tenant = await factory.tenant(customers=3)
    old, recent, active = [await _customer_with_history(gql, factory, tenant, i) for i in range(3)]
    # and a user who is an admin of the old customer and a member of the active one
    shared = await factory.user(role=Role.CUSTOMER_ADMIN, customer=old["customer"])
    await Membership.create(
        user=shared,
        role=Role.CUSTOMER_MEMBER,
        customer=active["customer"],
        org_key=org_key(tenant.partner.id, active["customer"].id),
    )
    await _disabled_days_ago(old["customer"], 90.01)
    await _disabled_days_ago(recent["customer"], 89)
    old_id, old_admin = old["customer"].id, old["admin"]
    before_old = await _rows_of(old_id)
    assert all(count > 0 for count in before_old.values()), before_old
    kept_before = {c["customer"].id: await _rows_of(c["customer"].id) for c in (recent, active)}
    assert "203.0.113.7" in await _audit_text() and old_admin.email in await _audit_text()
    # when the daily retention job is scheduled and run
    scheduler = Scheduler(Leases(None), jobs=[("retention", scheduled().retention, 86400)])
    assert await scheduler.tick_once() == ["retention"]
    assert await EmbeddedConsumer(app.state.broker).drain() == 1
    # then the old customer and everything personal about it is gone
    assert not await Customer.filter(id=old_id).exists()
    assert await _rows_of(old_id) == dict.fromkeys(before_old, 0)
    assert not await User.filter(id=old_admin.id).exists()
    assert not await Session.filter(user_id=old_admin.id).exists()
    audit = await AuditEvent.filter(customer_id=old_id).exclude(action="customer.purge")
    assert audit and all(e.details == {} and e.ip is None and e.actor_label is None for e in audit)
    text = await _audit_text()
    assert old_admin.email not in text and "finance0@private.example.com" not in text
    # and the shared user stays, with the membership it has elsewhere
    assert await User.filter(id=shared.id).exists()
    assert [m.customer_id for m in await Membership.filter(user_id=shared.id)] == [active["customer"].id]
    # and the customers disabled 89 days ago and active are untouched
    for c in (recent, active):
        assert await Customer.filter(id=c["customer"].id).exists()
        assert await User.filter(id=c["admin"].id).exists()
        assert await _rows_of(c["customer"].id) == kept_before[c["customer"].id]
    # and the ledger still balances and the audit chain still verifies
    checked, problems = await ledger.verify()
    assert checked > 0 and problems == []
    for currency in Currency:
        balances = await LedgerAccount.filter(currency=currency).values_list("balance", flat=True)
        assert sum(balances, Decimal(0)) == 0, currency
    assert await LedgerAccount.filter(customer_id=old_id).exists()  # money history is kept, by id only
    verified = run_cli("audit", "verify", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "0 problem(s)" in verified.stdout
    # and running it again changes nothing
    assert await scheduled().retention.fn.__wrapped__() == 0


async def test_retention_keeps_a_customer_re_enabled_after_it_was_selected(factory: Factory) -> None:
    # given a customer disabled 91 days ago, selected for purging...
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await _disabled_days_ago(customer, 91)
    selected = await Customer.get(id=customer.id)
    # ...and re-enabled before the purge ran
    await customer_enable(SYSTEM, CustomerEnable(customer.id))
    # when the purge reaches it
    purged = await purge_customer(selected, datetime.now(UTC) - RETENTION)
    # then it is kept with its users
    assert purged is False
    assert await Customer.filter(id=customer.id).exists()
    assert await User.filter(id=tenant.admins[0].id).exists()


# ---------------------------------------------------------------- jobs status


def test_jobs_status_runs_embedded(database: str) -> None:
    # when
    result = run_cli("jobs", "status", check=False)
    # then
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["broker"].startswith("embedded")
    assert status["outbox_pending"] == 0
    assert "queues" not in status


@pytest.mark.redis
async def test_jobs_status_runs_with_redis(factory: Factory) -> None:
    # given a Redis namespace with one ready alert job, an unpublished outbox event and a scheduler tick
    from dramatiq.brokers.redis import RedisBroker

    namespace = f"pd-status-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    leases = Leases(REDIS_URL)
    try:
        broker.enqueue(dramatiq.Message(queue_name="alerts", actor_name="send_alert", args=(1,), kwargs={}, options={}))
        tenant = await factory.tenant(customers=1)
        await alerts.payment_failed(tenant.customers[0], "pi_status", "declined")
        await Scheduler(leases, jobs=[]).tick_once(1_900_000_000.0)
        # when
        result = run_cli("jobs", "status", env={"REDIS_URL": REDIS_URL or "", "DRAMATIQ_NAMESPACE": namespace})
        # then
        status = json.loads(result.stdout)
        assert status["broker"] == "redis"
        assert status["outbox_pending"] >= 1
        assert status["queues"]["alerts"] == {"ready": 1, "delayed": 0, "dead_letters": 0}
        assert status["queues"]["scheduled"]["ready"] == 0
        assert set(status["queues"]) >= {"alerts", "scheduled", "maintenance", "exports"}  # every declared queue
        assert status["last_scheduler_tick"] == datetime.fromtimestamp(1_900_000_000.0, UTC).isoformat()
    finally:
        broker.flush_all()
        broker.close()
        await leases.close()


# ---------------------------------------------------------------- leases on PostgreSQL (no Redis)


@pytest.mark.postgres
async def test_processes_sharing_postgresql_without_redis_elect_one_relay_and_a_dead_holder_frees_it(
    database: str,
) -> None:
    prefix = f"pd-test-{uuid.uuid4().hex[:8]}"
    # given two processes' leases on one PostgreSQL database and no Redis
    first = Leases(None, prefix, database_url=database, recheck_seconds=0)
    second = Leases(None, prefix, database_url=database, recheck_seconds=0)
    try:
        assert first.shared and second.shared
        # when both ask for the relay lease, twice
        held = [await first.acquire("relay", 10), await second.acquire("relay", 10)]
        again = [await first.acquire("relay", 10), await second.acquire("relay", 10)]
        # then one holds it, and keeps it
        assert held == [True, False] and again == [True, False]
        # and schedulers claim each slot once between them
        claims = [await first.claim_once("job:1", 60), await second.claim_once("job:1", 60)]
        assert claims == [True, False]
        assert await first.claim_once("job:1", 60) is False
        # when the holder's connection dies (its process is gone)
        first._pg.terminate()
        # then the other takes the lease as soon as the server has noticed, and the first, reconnected, is refused
        assert await eventually(lambda: second.acquire("relay", 10), tries=100, pause=0.02)
        assert await first.acquire("relay", 10) is False
        # when the holder releases it, the other takes it
        await second.release("relay")
        assert await first.acquire("relay", 10) is True
    finally:
        await first.close()
        await second.close()


@pytest.mark.redis
async def test_a_held_lease_is_answered_from_memory_until_it_must_be_renewed(
    redis_leases: tuple[Leases, Leases],
) -> None:
    first, _ = redis_leases
    first.recheck_seconds = 60
    assert first.redis is not None
    calls = 0
    original = first.redis.set

    async def counting_set(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)

    first.redis.set = counting_set  # type: ignore[method-assign]
    # when the relay asks for its lease on every drain
    results = [await first.acquire("relay", ttl_seconds=3) for _ in range(50)]
    # then Redis is asked once, not 50 times, and the answer is trusted only a third of the lease
    assert results == [True] * 50 and calls == 1
    key = f"{first.prefix}:lease:relay"
    assert first._answers[key][1] - asyncio.get_running_loop().time() <= 1.0 + 0.1


def test_connections_of_their_own_take_the_pools_host_credentials_and_tls_settings() -> None:
    from server.settings import asyncpg_connect_kwargs

    # a DATABASE_URL as Tortoise reads it: TLS, an application name and a schema, and the pool's sizes
    url = "postgres://pd:s3cret@db.internal:6432/partnerdesk?ssl=require&minsize=1&maxsize=8&application_name=pd&schema=app"
    kwargs = asyncpg_connect_kwargs(url)
    # the relay's LISTEN and the leases' connections use the same, without the pool's sizes
    assert kwargs == {
        "host": "db.internal",
        "port": 6432,
        "user": "pd",
        "password": "s3cret",
        "database": "partnerdesk",
        "ssl": True,
        "server_settings": {"application_name": "pd", "search_path": "app"},
    }
    assert asyncpg_connect_kwargs("postgresql://u@localhost/db")["database"] == "db"


@pytest.mark.postgres
async def test_without_redis_every_process_hears_a_live_change_once_through_postgresql(database: str) -> None:
    # given two processes' hubs on one PostgreSQL database and no Redis (one relay per database publishes)
    prefix = f"pd-test-{uuid.uuid4().hex[:8]}"
    hubs = [PubSub(None, prefix, database_url=database) for _ in range(2)]
    for hub in hubs:
        await hub.start()
    try:
        heard: list[list[dict[str, Any]]] = [[], []]
        subscriptions = [
            hub.add("credits:1", lambda s, i=i: heard[i].append(dict(s.payload))) for i, hub in enumerate(hubs)
        ]
        # when the relay's process publishes three changes in a row
        for n in range(3):
            await hubs[0].publish("credits:1", {"n": n})
        for _ in range(200):
            if all(len(h) == 3 for h in heard):
                break
            await asyncio.sleep(0.01)
        # then both processes' subscribers heard each change once, in order
        assert heard == [[{"n": 0}, {"n": 1}, {"n": 2}]] * 2
        for hub, subscription in zip(hubs, subscriptions, strict=True):
            hub.remove(subscription)
    finally:
        for hub in hubs:
            await hub.stop()


@pytest.mark.postgres
async def test_an_asyncpg_scheme_url_shares_leases_and_lease_connections_keep_alive(database: str) -> None:
    url = "asyncpg://" + database.split("://", 1)[1]
    leases = Leases(None, f"pd-test-{uuid.uuid4().hex[:8]}", database_url=url)
    try:
        assert leases.shared and await leases.acquire("relay", 10)
        assert leases._connect is not None
        assert leases._connect["server_settings"]["tcp_keepalives_idle"] == "5"
        assert await leases._pg.fetchval("SHOW tcp_keepalives_idle") == "5"
    finally:
        await leases.close()


class FreezableProxy:
    """A TCP proxy to PostgreSQL that can stop forwarding while keeping both sockets open: a holder cut off by a
    partition (or hung) behind a middlebox that keeps its TCP connection up, so no keepalive notices."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.frozen = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if self.frozen.is_set():
                    await asyncio.sleep(3600)  # neither side hears anything, neither socket closes
                sink.write(data)
                await sink.drain()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.mark.postgres
async def test_a_holder_cut_off_stops_acting_on_its_lease_and_another_takes_it(database: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    prefix = f"pd-test-{uuid.uuid4().hex[:8]}"
    parts = urlsplit(database)
    proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    credentials = parts.netloc.rsplit("@", 1)[0]
    through_proxy = urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))
    # given a process holding the relay lease through a connection that will go silent, and another process
    first = Leases(None, prefix, database_url=through_proxy, recheck_seconds=0)
    second = Leases(None, prefix, database_url=database, recheck_seconds=0)
    try:
        assert await first.acquire("relay", 10) is True
        assert await second.acquire("relay", 10) is False
        # when the holder is cut off (nothing closes: no FIN, no RST)
        proxy.frozen.set()
        # then its own next check gives the lease up within its timeout instead of hanging
        assert await asyncio.wait_for(first.acquire("relay", 10), 6) is False
        # and the other process takes it once the server has ended the silent session (idle_session_timeout)
        assert await eventually(lambda: second.acquire("relay", 10), tries=40, pause=0.5)
    finally:
        proxy.frozen.clear()
        await second.close()
        first._pg = None  # its connection is wedged behind the proxy
        proxy.close()
