"""Metering throughput over real HTTP against a real uvicorn server and PostgreSQL, with the raw driver as baseline.

    .venv/bin/python bench/usage.py [--workers 1,2] [--events 40000] [--ingest-spread 1,10,40] [--pairs 1500]
                                    [--profile DIR]

Without DATABASE_URL it starts a throwaway PostgreSQL cluster (durable: fsync and synchronous_commit on) and removes
it afterwards; with DATABASE_URL (a server URL) it only creates and drops a fresh database there. The database is
migrated with the project's migrations and seeded through the domain services (in a subprocess): a platform admin,
partners and customers on REFILLABLE_WALLET billing with funded wallets, some of them with funded AI credits, so
every event is really charged. Then, per server configuration (`--workers`), it starts
`uvicorn server.app:create_app --factory` on a free loopback port, signs in over HTTP (`login`) and measures:

  ingest-cN POST /v1/usage/events, 1,000 events per request naming N distinct customers, 4 concurrent clients
            (the work per batch grows with the customers in it: a ledger transfer and cap check each)
  graphql   usageRecord with 1,000 events per request as variables, 4 concurrent clients
  pairs     usageAuthorize then usageRecord(holdId) of one event, 8 concurrent clients
  raw       asyncpg baseline: executemany of 1,000 rows into a table shaped like usage_event with a unique key
            (ON CONFLICT DO NOTHING) + one balance UPDATE per batch, one transaction per batch, 4 connections
  raw-ingest-cN  the same with ingest-cN's spread (N > 1) and, like ingestion, every customer's balance in the
            batch locked in id order and debited: ingest-cN's `vs raw` divides by it (like for like); the ratio to
            the single-balance raw is printed below the table too

Customers of different partners are created interleaved, as in production, so concurrent batches contend on the
partners' revenue accounts. The raw baseline runs before and after the server phases (on a shared machine the two
can differ a lot); `vs raw` divides by their mean. Each phase does a fixed amount of work after a short warm-up and
gives up at a deadline. CPU seconds of the server, of PostgreSQL (throwaway cluster only), of this client and of
every other process are read from /proc, so the table also says where the cores went and how much other load
disturbed the run; pg_stat_activity is sampled to tell lock waits from commit waits from time spent in the app.
At the end it checks the books (every event stored once and counted in the rollups; `ledger verify`).
`--profile DIR` samples the server with py-spy during each HTTP phase (single worker) and prints where the time went
by layer and by activity. Everything it starts is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._http import Connection  # noqa: E402
from bench._pg import free_port, fresh_database, throwaway_postgres  # noqa: E402
from bench._proc import children, cpu_seconds, machine_busy_seconds, postmaster_of  # noqa: E402

PASSWORD = "Bench-pass-1"
ADMIN_EMAIL = "bench-admin@example.com"
BATCH = 1000
UNITS = ("SMS_SEGMENTS", "VOICE_MINUTES", "CHAT_TURNS", "EMAILS")
RECORD = (
    "mutation($i: UsageRecordInput!) { usageRecord(input: $i) "
    "{ accepted duplicates rejected { index code field message } errors { code message } } }"
)
AUTHORIZE = "mutation($i: UsageAuthorizeInput!) { usageAuthorize(input: $i) { hold { id } errors { code message } } }"
LOGIN = "mutation($i: LoginInput!) { login(input: $i) { token errors { code message } } }"


# ---------------------------------------------------------------- seeding (runs in a subprocess)


async def _seed(partners: int, customers_per_partner: int, credit_every: int) -> dict[str, Any]:
    from tortoise import Tortoise
    from tortoise.transactions import in_transaction

    from domain.accounts.commands import AdminCreate
    from domain.accounts.models import Role
    from domain.accounts.services import admin_create
    from domain.billing.commands import BillingPreferencesUpdate
    from domain.billing.credits import grant_credits
    from domain.billing.models import BillingMode, GrantSource
    from domain.billing.preferences import billing_preferences_update
    from domain.customers.commands import CustomerCreate
    from domain.customers.services import customer_create
    from domain.features.services import set_ai_credits
    from domain.ledger import services as ledger
    from domain.ledger.models import Currency, TransferKind
    from domain.partners.commands import PartnerCreate
    from domain.partners.services import partner_create
    from domain.viewer import Viewer
    from resolvers.common import encode_global_id
    from server.settings import get_settings

    system = Viewer.system("bench")
    await Tortoise.init(config=get_settings().tortoise_config(), _enable_global_fallback=True)
    try:
        await admin_create(system, AdminCreate(ADMIN_EMAIL, PASSWORD))
        made_partners = []
        for p in range(partners):
            created = await partner_create(
                system,
                PartnerCreate(
                    name=f"Bench Partner {p}",
                    owner_email=f"owner{p}@bench{p}.example.com",
                    owner_password=PASSWORD,
                    owner_name=f"Owner {p}",
                ),
            )
            made_partners.append(created.partner)
        out = []
        # customers of different partners interleaved by id, as they are when partners sign customers up over time
        for n in range(partners * customers_per_partner):
            partner = made_partners[n % partners]
            staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id, label="bench")
            customer = (
                await customer_create(
                    staff,
                    CustomerCreate(
                        username=f"benchcust{n}",
                        first_name="Bench",
                        last_name=f"Customer{n}",
                        email=f"admin{n}@benchcustomer{n}.example.com",
                        password=PASSWORD,
                        password_confirmation=PASSWORD,
                        company_name=f"Bench Customer {n}",
                    ),
                )
            ).customer
            await billing_preferences_update(
                system, BillingPreferencesUpdate(customer.id, billing_mode=BillingMode.REFILLABLE_WALLET)
            )
            credits = credit_every > 0 and n % credit_every == 0
            async with in_transaction():
                await ledger.post(
                    ledger.external_funding(Currency.USD, customer.partner_id),
                    ledger.customer_wallet(customer.id, customer.partner_id),
                    Decimal(10) ** 9,
                    TransferKind.WALLET_REFILL,
                )
            if credits:
                await set_ai_credits(customer.id, True)
                async with in_transaction():
                    amount = Decimal(10) ** 11
                    transfer = await ledger.post(
                        ledger.external_funding(Currency.CREDITS, customer.partner_id),
                        ledger.customer_credits(customer.id, customer.partner_id),
                        amount,
                        TransferKind.CREDITS_GRANT,
                    )
                    await grant_credits(customer, amount, GrantSource.ADJUSTMENT, transfer)
            out.append(
                {
                    "id": customer.id,
                    "gid": encode_global_id("Customer", customer.id),
                    "partner_id": customer.partner_id,
                    "credits": credits,
                }
            )
        return {"customers": out}
    finally:
        await Tortoise.close_connections()


def seed(url: str, partners: int, customers_per_partner: int, credit_every: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "APP_ENV": "test",
        "LOG_LEVEL": "WARNING",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST": "1024",
    }
    args = [sys.executable, __file__, "--seed-only", str(partners), str(customers_per_partner), str(credit_every)]
    done = subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- processes and CPU accounting


@dataclass
class Cpu:
    server: float = 0.0
    pg: float | None = None
    client: float = 0.0
    others: float = 0.0  # every other process on the machine (other benchmarks, test runs) over the same window


class CpuMeter:
    """CPU seconds used by the server tree, the PostgreSQL tree, this process and everything else between start()
    and stop()."""

    def __init__(self, server_pid: int | None, pg_pid: int | None) -> None:
        self.server_pid, self.pg_pid = server_pid, pg_pid

    def _read(self) -> tuple[float, float | None, float, float]:
        server = cpu_seconds([self.server_pid], tree=True) if self.server_pid else 0.0
        pg = cpu_seconds([self.pg_pid], tree=True) if self.pg_pid else None
        return server, pg, time.process_time(), machine_busy_seconds()

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> Cpu:
        after, before = self._read(), self.before
        pg = after[1] - before[1] if after[1] is not None and before[1] is not None else None
        cpu = Cpu(after[0] - before[0], pg, after[2] - before[2])
        cpu.others = max(0.0, after[3] - before[3] - cpu.server - (cpu.pg or 0.0) - cpu.client)
        return cpu


@contextlib.contextmanager
def uvicorn_server(url: str, workers: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "APP_ENV": "test", "LOG_LEVEL": "WARNING", "DATABASE_URL": url}
    env.pop("REDIS_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "server.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-proxy-headers",  # as `partnerdesk serve` runs: the app applies TRUSTED_PROXIES itself
    ]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    log = tempfile.NamedTemporaryFile(prefix="partnerdesk-bench-uvicorn-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, log.name)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        tail = Path(log.name).read_text(errors="replace")[-6000:]
        if tail.strip():
            print(f"--- server log tail ({workers} worker(s)) ---\n{tail}\n---", flush=True)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log_name: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited with {proc.returncode}:\n{Path(log_name).read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("uvicorn did not become healthy within 60 s")


# ---------------------------------------------------------------- workload


@dataclass
class Outcome:
    name: str
    config: str
    unit: str  # "events" or "pairs"
    done: int = 0
    seconds: float = 0.0
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    cpu: Cpu = field(default_factory=Cpu)
    timed_out: bool = False
    profile: Profile | None = None
    meter: CpuMeter | None = None
    db_url: str | None = None  # sample pg_stat_activity of this database while the phase runs
    sessions: dict[str, float] = field(default_factory=dict)  # mean backends per state over the phase

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def make_events(customers: list[dict[str, Any]], count: int, per_batch: int, tag: str) -> list[list[dict[str, Any]]]:
    """`count` events in batches of 1,000, each batch spread over `per_batch` random customers."""
    rng = random.Random(tag)
    now = datetime.now(UTC)
    earliest = max(now - timedelta(hours=2), now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    span = max(1, int((now - earliest).total_seconds()) - 5)
    batches = []
    for b in range(count // BATCH):
        chosen = rng.sample(customers, min(per_batch, len(customers)))
        batch = []
        for i in range(BATCH):
            c = chosen[i % len(chosen)]
            unit = UNITS[rng.randrange(len(UNITS))]
            batch.append(
                {
                    "idempotencyKey": f"{tag}-{b}-{i}-{uuid.uuid4().hex[:12]}",
                    "customerId": c["gid"],
                    "unitType": unit,
                    "quantity": str(rng.randint(1, 5)),
                    "occurredAt": (now - timedelta(seconds=rng.randrange(span))).isoformat(),
                    "caseType": "support",
                    "metadata": {"callId": f"call-{b}-{i}"},
                }
            )
        batches.append(batch)
    return batches


async def drive(
    clients: int, jobs: list[Any], work: Callable[[Any], Awaitable[int]], outcome: Outcome, deadline: float
) -> None:
    """Runs `work` over `jobs` with `clients` concurrent workers until done or `deadline` (monotonic) passes; CPU
    is metered over exactly this window when the outcome carries a meter."""
    queue = list(reversed(jobs))
    meter = outcome.meter

    async def worker() -> None:
        while queue and time.monotonic() < deadline:
            job = queue.pop()
            t0 = time.perf_counter()
            try:
                n = await work(job)  # not `outcome.done += await …`: that reads `done` before awaiting
                outcome.done += n
            except Exception as exc:
                outcome.failures[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1
            outcome.latencies.append(time.perf_counter() - t0)
            outcome.requests += 1

    stop = asyncio.Event()
    monitor = asyncio.create_task(watch_sessions(outcome, stop)) if outcome.db_url else None
    if meter:
        meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    outcome.seconds = time.perf_counter() - started
    if meter:
        outcome.cpu = meter.stop()
    outcome.timed_out = bool(queue)
    stop.set()
    if monitor:
        await monitor


SESSION_STATES = {
    "app": "idle in transaction: waiting for the app server (its CPU and round trips)",
    "lock": "waiting for a row or transaction lock held by another batch",
    "io": "waiting on I/O or WAL flush (durable commits)",
    "lwlock": "waiting on an internal lightweight lock",
    "cpu": "running a statement",
}
_SESSIONS_SQL = """
SELECT count(*) FILTER (WHERE state = 'idle in transaction') AS app,
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') AS lock,
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'IO') AS io,
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'LWLock') AS lwlock,
       count(*) FILTER (WHERE state = 'active' AND wait_event_type IS NULL) AS cpu
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


async def watch_sessions(outcome: Outcome, stop: asyncio.Event, every: float = 0.02) -> None:
    """Samples what the database sessions are doing, to tell lock waits from commit waits from app time."""
    import asyncpg

    assert outcome.db_url
    conn = await asyncpg.connect(outcome.db_url.replace("postgres://", "postgresql://", 1))
    totals: Counter[str] = Counter()
    samples = 0
    try:
        while not stop.is_set():
            row = await conn.fetchrow(_SESSIONS_SQL)
            for key in SESSION_STATES:
                totals[key] += row[key]
            samples += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        await conn.close()
    outcome.sessions = {k: totals[k] / samples for k in SESSION_STATES} if samples else {}


class Api:
    def __init__(self, base: str) -> None:
        import httpx

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.base = base
        self.client = httpx.AsyncClient(base_url=base, timeout=120, limits=limits)
        self.token = ""

    async def close(self) -> None:
        await self.client.aclose()

    @property
    def headers(self) -> dict[str, str]:
        auth = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return {**auth, "content-type": "application/json"}

    async def gql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        return await self.gql_raw(body)

    async def gql_raw(self, body: bytes) -> dict[str, Any]:
        response = await self.client.post("/graphql", content=body, headers=self.headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        data = response.json()
        if data.get("errors"):
            raise RuntimeError(f"GraphQL errors: {data['errors'][:1]}")
        return data["data"]

    async def login(self) -> None:
        data = await self.gql(LOGIN, {"i": {"login": ADMIN_EMAIL, "password": PASSWORD}})
        if data["login"]["errors"]:
            raise SystemExit(f"login failed: {data['login']['errors']}")
        self.token = data["login"]["token"]


def _check_record(payload: dict[str, Any], expected: int) -> int:
    if payload.get("errors"):
        raise RuntimeError(f"errors {payload['errors'][:1]}")
    if payload.get("rejected"):
        raise RuntimeError(f"rejected {payload['rejected'][:1]}")
    if payload["accepted"] != expected:
        raise RuntimeError(f"accepted {payload['accepted']} of {expected} (duplicates {payload['duplicates']})")
    return int(payload["accepted"])


async def phase_ingest(api: Api, batches: list[list[dict[str, Any]]], clients: int, out: Outcome, limit: float) -> None:
    bodies = [json.dumps(b).encode() for b in batches]

    async def post(body: bytes) -> int:
        response = await api.client.post("/v1/usage/events", content=body, headers=api.headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        return _check_record(response.json(), BATCH)

    await drive(clients, bodies, post, out, time.monotonic() + limit)


async def phase_graphql(
    api: Api, batches: list[list[dict[str, Any]]], clients: int, out: Outcome, limit: float
) -> None:
    bodies = [json.dumps({"query": RECORD, "variables": {"i": {"events": b}}}).encode() for b in batches]

    async def post(body: bytes) -> int:
        return _check_record((await api.gql_raw(body))["usageRecord"], BATCH)

    await drive(clients, bodies, post, out, time.monotonic() + limit)


async def phase_pairs(
    api: Api, customers: list[dict[str, Any]], pairs: int, clients: int, out: Outcome, limit: float, tag: str
) -> None:
    """`pairs` authorize + record pairs over `customers` (round robin), `clients` at a time, each client on a
    keep-alive connection of its own."""
    jobs = [customers[i % len(customers)] for i in range(pairs)]
    connections: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(clients):
        connections.put_nowait(Connection(api.base))

    async def gql(connection: Connection, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        status, body = await connection.post_json("/graphql", {"query": query, "variables": variables}, api.headers)
        if status != 200 or body.get("errors"):
            raise RuntimeError(f"HTTP {status}: {str(body)[:200]}")
        return dict(body["data"])

    async def pair(customer: dict[str, Any]) -> int:
        connection = await connections.get()
        try:
            return await one_pair(connection, customer)
        finally:
            connections.put_nowait(connection)

    async def one_pair(connection: Connection, customer: dict[str, Any]) -> int:
        authorized = (
            await gql(
                connection,
                AUTHORIZE,
                {
                    "i": {
                        "customerId": customer["gid"],
                        "unitType": "VOICE_MINUTES",
                        "estimatedQuantity": "2",
                        "idempotencyKey": uuid.uuid4().hex,
                    }
                },
            )
        )["usageAuthorize"]
        if authorized["errors"] or not authorized["hold"]:
            raise RuntimeError(f"authorize: {authorized['errors'][:1]}")
        event = {
            "idempotencyKey": uuid.uuid4().hex,
            "customerId": customer["gid"],
            "unitType": "VOICE_MINUTES",
            "quantity": "1.5",
            "occurredAt": datetime.now(UTC).isoformat(),
            "holdId": authorized["hold"]["id"],
        }
        _check_record((await gql(connection, RECORD, {"i": {"events": [event]}}))["usageRecord"], 1)
        return 1

    try:
        await drive(clients, jobs, pair, out, time.monotonic() + limit)
    finally:
        while not connections.empty():
            await connections.get_nowait().close()


# ---------------------------------------------------------------- the raw asyncpg baseline

RAW_TABLE = """
CREATE TABLE bench_raw_usage_event (
    id BIGSERIAL PRIMARY KEY,
    customer_id INT NOT NULL,
    partner_id INT NOT NULL,
    unit_type VARCHAR(24) NOT NULL,
    quantity DECIMAL(20,6) NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    case_type VARCHAR(64) NOT NULL DEFAULT '',
    idempotency_key VARCHAR(255) NOT NULL,
    hold_id BIGINT,
    unit_price DECIMAL(20,6) NOT NULL,
    cost DECIMAL(20,6) NOT NULL,
    credits DECIMAL(20,6) NOT NULL,
    funding VARCHAR(8) NOT NULL,
    paid BOOL NOT NULL,
    transfer_id BIGINT,
    metadata JSONB NOT NULL,
    UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX ON bench_raw_usage_event (customer_id, occurred_at);
CREATE TABLE bench_raw_balance (id INT PRIMARY KEY, balance DECIMAL(20,6) NOT NULL);
"""
RAW_INSERT = (
    "INSERT INTO bench_raw_usage_event (customer_id, partner_id, unit_type, quantity, occurred_at, recorded_at, "
    "case_type, idempotency_key, hold_id, unit_price, cost, credits, funding, paid, transfer_id, metadata) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::jsonb) "
    "ON CONFLICT (customer_id, idempotency_key) DO NOTHING"
)


async def phase_raw(
    url: str,
    customers: list[dict[str, Any]],
    batches: list[list[dict[str, Any]]],
    conns: int,
    out: Outcome,
    limit: float,
    every_balance: bool = False,
) -> None:
    """`every_balance`: debit the balance of every customer in a batch (what ingestion does), not only the first's."""
    import asyncpg

    dsn = url.replace("postgres://", "postgresql://", 1)
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute("DROP TABLE IF EXISTS bench_raw_usage_event, bench_raw_balance")
        await setup.execute(RAW_TABLE)
        await setup.executemany(
            "INSERT INTO bench_raw_balance VALUES ($1, $2)", [(c["id"], Decimal(10) ** 9) for c in customers]
        )
    finally:
        await setup.close()
    by_gid = {c["gid"]: c for c in customers}
    now = datetime.now(UTC)
    jobs = []
    for batch in batches:
        rows = []
        for e in batch:
            c = by_gid[e["customerId"]]
            q = Decimal(e["quantity"])
            rows.append(
                (
                    c["id"],
                    c["partner_id"],
                    e["unitType"],
                    q,
                    datetime.fromisoformat(e["occurredAt"]),
                    now,
                    e["caseType"],
                    e["idempotencyKey"],
                    None,
                    Decimal("0.01"),
                    q * Decimal("0.01"),
                    Decimal(0),
                    "WALLET",
                    True,
                    None,
                    json.dumps(e["metadata"]),
                )
            )
        if every_balance:  # each customer's total, by customer id
            totals: dict[int, Decimal] = {}
            for r in rows:
                totals[r[0]] = totals.get(r[0], Decimal(0)) + r[10]
            jobs.append((rows, sorted(totals.items())))
        else:
            jobs.append((rows, [(by_gid[batch[0]["customerId"]]["id"], sum((r[10] for r in rows), Decimal(0)))]))
    pool = await asyncpg.create_pool(dsn, min_size=conns, max_size=conns)

    async def write(job: tuple[list[tuple[Any, ...]], list[tuple[int, Decimal]]]) -> int:
        rows, debits = job
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(RAW_INSERT, rows)
            if len(debits) == 1:
                await conn.execute(
                    "UPDATE bench_raw_balance SET balance = balance - $1 WHERE id = $2", debits[0][1], debits[0][0]
                )
            else:  # the batch's customers' balances locked in id order (no deadlock between batches), then moved
                ids, amounts = [d[0] for d in debits], [d[1] for d in debits]
                await conn.execute(
                    "WITH locked AS (SELECT id FROM bench_raw_balance WHERE id = ANY($1::int[]) ORDER BY id FOR UPDATE) "
                    "UPDATE bench_raw_balance b SET balance = b.balance - d.amount "
                    "FROM unnest($1::int[], $2::numeric[]) AS d(id, amount) "
                    "WHERE b.id = d.id AND (SELECT count(*) FROM locked) >= 0",
                    ids,
                    amounts,
                )
        return len(rows)

    try:
        await write(jobs[0])  # warm-up: prepares the statements
        await drive(conns, jobs[1:], write, out, time.monotonic() + limit)
    finally:
        await pool.close()


RAW_PAIR_TABLES = """
CREATE TABLE bench_raw_idem (id BIGSERIAL PRIMARY KEY, scope_key VARCHAR(400) UNIQUE NOT NULL,
    request_hash VARCHAR(64) NOT NULL, status VARCHAR(12) NOT NULL, response JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL);
CREATE TABLE bench_raw_account (id SERIAL PRIMARY KEY, key VARCHAR(80) UNIQUE NOT NULL,
    balance NUMERIC(38, 6) NOT NULL);
CREATE TABLE bench_raw_spend (customer_id INT NOT NULL, month DATE NOT NULL, spent NUMERIC(38, 6) NOT NULL,
    PRIMARY KEY (customer_id, month));
CREATE TABLE bench_raw_hold (id BIGSERIAL PRIMARY KEY, customer_id INT NOT NULL, amount NUMERIC(38, 6) NOT NULL,
    status VARCHAR(12) NOT NULL, expires_at TIMESTAMPTZ NOT NULL, closed_at TIMESTAMPTZ);
CREATE INDEX ON bench_raw_hold (customer_id, status);
CREATE TABLE bench_raw_dedup (customer_id INT NOT NULL, key VARCHAR(255) NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, key));
CREATE TABLE bench_raw_transfer (id BIGSERIAL PRIMARY KEY, debit INT NOT NULL, credit INT NOT NULL,
    amount NUMERIC(38, 6) NOT NULL, debit_after NUMERIC(38, 6) NOT NULL, credit_after NUMERIC(38, 6) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE bench_raw_rollup (customer_id INT NOT NULL, day DATE NOT NULL, unit_type VARCHAR(24) NOT NULL,
    events INT NOT NULL, cost NUMERIC(38, 6) NOT NULL, PRIMARY KEY (customer_id, day, unit_type));
CREATE TABLE bench_raw_outbox (id BIGSERIAL PRIMARY KEY, topic VARCHAR(64) NOT NULL, customer_id INT,
    payload JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE bench_raw_audit (id BIGSERIAL PRIMARY KEY, chain VARCHAR(40) NOT NULL, action VARCHAR(64) NOT NULL,
    details JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL);
"""


async def phase_raw_pairs(
    url: str, customers: list[dict[str, Any]], pairs: int, clients: int, out: Outcome, limit: float
) -> None:
    """What an authorize + record pair must do at the least, written by hand with asyncpg: the same two
    transactions (idempotency claim, the paying account and the month's spend locked, live holds summed, the hold;
    then the event's key claimed, the wallet and revenue accounts locked and moved, the transfer, the event, its
    rollup and spend, the hold consumed, an outbox event and an audit row), with the server's own pool policy."""
    import asyncpg

    from server.settings import release_without_reset

    dsn = url.replace("postgres://", "postgresql://", 1)
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(
            "DROP TABLE IF EXISTS bench_raw_idem, bench_raw_account, bench_raw_spend, bench_raw_hold, "
            "bench_raw_dedup, bench_raw_transfer, bench_raw_rollup, bench_raw_outbox, bench_raw_audit"
        )
        await setup.execute(RAW_PAIR_TABLES)
        accounts = [(f"wallet:{c['id']}", Decimal(10) ** 9) for c in customers]
        accounts += [(f"revenue:{p}", Decimal(0)) for p in {c["partner_id"] for c in customers}]
        await setup.executemany("INSERT INTO bench_raw_account (key, balance) VALUES ($1, $2)", accounts)
        await setup.execute("DROP TABLE IF EXISTS bench_raw_usage_event, bench_raw_balance")
        await setup.execute(RAW_TABLE)
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(dsn, min_size=clients, max_size=clients, reset=release_without_reset)
    month = datetime.now(UTC).date().replace(day=1)
    price = Decimal("0.06")

    async def pair(customer: dict[str, Any]) -> int:
        cid, now = customer["id"], datetime.now(UTC)
        wallet, revenue = f"wallet:{cid}", f"revenue:{customer['partner_id']}"
        async with pool.acquire() as conn:
            async with conn.transaction():
                idem = await conn.fetchval(
                    "INSERT INTO bench_raw_idem (scope_key, request_hash, status, response, created_at, expires_at) "
                    "VALUES ($1, $2, 'PENDING', '{}', $3, $3) ON CONFLICT (scope_key) DO NOTHING RETURNING id",
                    uuid.uuid4().hex,
                    "h" * 64,
                    now,
                )
                balance = await conn.fetchval("SELECT balance FROM bench_raw_account WHERE key = $1 FOR UPDATE", wallet)
                spent = await conn.fetchval(
                    "INSERT INTO bench_raw_spend VALUES ($1, $2, 0) ON CONFLICT (customer_id, month) "
                    "DO UPDATE SET spent = bench_raw_spend.spent RETURNING spent",
                    cid,
                    month,
                )
                held = await conn.fetchval(
                    "SELECT coalesce(sum(amount), 0) FROM bench_raw_hold WHERE customer_id = $1 AND status = 'ACTIVE' "
                    "AND expires_at > $2",
                    cid,
                    now,
                )
                assert balance - held - 2 * price >= 0 and spent >= 0
                hold = await conn.fetchval(
                    "INSERT INTO bench_raw_hold (customer_id, amount, status, expires_at) "
                    "VALUES ($1, $2, 'ACTIVE', $3) RETURNING id",
                    cid,
                    2 * price,
                    now + timedelta(minutes=15),
                )
                await conn.execute(
                    "UPDATE bench_raw_idem SET status = 'SUCCEEDED', response = $1 WHERE id = $2",
                    json.dumps({"hold_id": hold}),
                    idem,
                )
            cost = Decimal("1.5") * price
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO bench_raw_dedup VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", cid, uuid.uuid4().hex, now
                )
                rows = await conn.fetch(
                    "SELECT id, key, balance FROM bench_raw_account WHERE key = ANY($1) ORDER BY id FOR UPDATE",
                    [wallet, revenue],
                )
                ids = {r["key"]: r["id"] for r in rows}
                await conn.execute(
                    "UPDATE bench_raw_account SET balance = balance + CASE WHEN id = $1 THEN -$3::numeric "
                    "ELSE $3::numeric END WHERE id IN ($1, $2)",
                    ids[wallet],
                    ids[revenue],
                    cost,
                )
                transfer = await conn.fetchval(
                    "INSERT INTO bench_raw_transfer (debit, credit, amount, debit_after, credit_after, created_at) "
                    "VALUES ($1, $2, $3, 0, 0, $4) RETURNING id",
                    ids[wallet],
                    ids[revenue],
                    cost,
                    now,
                )
                await conn.execute(
                    RAW_INSERT,
                    cid,
                    customer["partner_id"],
                    "VOICE_MINUTES",
                    Decimal("1.5"),
                    now,
                    now,
                    "",
                    uuid.uuid4().hex,
                    hold,
                    price,
                    cost,
                    Decimal(0),
                    "WALLET",
                    True,
                    transfer,
                    "{}",
                )
                await conn.execute(
                    "INSERT INTO bench_raw_rollup VALUES ($1, $2, 'VOICE_MINUTES', 1, $3) ON CONFLICT "
                    "(customer_id, day, unit_type) DO UPDATE SET events = bench_raw_rollup.events + 1, "
                    "cost = bench_raw_rollup.cost + EXCLUDED.cost",
                    cid,
                    now.date(),
                    cost,
                )
                await conn.execute(
                    "UPDATE bench_raw_spend SET spent = spent + $3 WHERE customer_id = $1 AND month = $2",
                    cid,
                    month,
                    cost,
                )
                await conn.execute(
                    "UPDATE bench_raw_hold SET status = 'CONSUMED', closed_at = $2 WHERE id = $1", hold, now
                )
                await conn.execute(
                    "INSERT INTO bench_raw_outbox (topic, customer_id, payload, created_at) "
                    "VALUES ('wallet.changed', $1, '{}', $2)",
                    cid,
                    now,
                )
                await conn.execute(
                    "INSERT INTO bench_raw_audit (chain, action, details, created_at) "
                    "VALUES ($1, 'usage.record', '{}', $2)",
                    f"partner:{customer['partner_id']}",
                    now,
                )
        return 1

    try:
        await pair(customers[0])  # warm-up: prepares the statements
        await drive(clients, [customers[i % len(customers)] for i in range(pairs)], pair, out, time.monotonic() + limit)
    finally:
        await pool.close()


# ---------------------------------------------------------------- profiling with py-spy

# A sample is charged to the innermost frame matching a layer (what code burned the CPU) and to the first matching
# activity (what the request was doing then). Samples idling in the event loop or in background threads are left out.
IDLE = ("Runner.run (asyncio/runners.py", "_CtypesTimeoutManager", "Thread._bootstrap")
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("msgspec", ("msgspec",)),
    ("stdlib json", ("json/decoder.py", "json/encoder.py", "json/__init__.py")),
    ("asyncpg", ("asyncpg/",)),
    ("graphql-core", ("graphql/",)),
    ("strawberry", ("strawberry/",)),
    ("Tortoise/pypika", ("tortoise/", "pypika")),
    ("decimal/datetime/uuid", ("_pydecimal", "uuid.py", "datetime.py")),
    ("domain/usage", ("domain/usage/",)),
    ("domain/audit", ("domain/audit/",)),
    ("domain/ledger+billing", ("domain/ledger/", "domain/billing/", "domain/features/")),
    ("domain (other)", ("domain/",)),
    ("resolvers+schema", ("resolvers/", "schema/")),
    ("server/ingest", ("server/ingest.py",)),
    ("server (other)", ("server/",)),
    ("uvicorn/starlette", ("uvicorn/", "starlette/", "httptools", "cross_web")),
    ("asyncio", ("asyncio/", "uvloop", "contextvars")),
]
ACTIVITIES: list[tuple[str, tuple[str, ...]]] = [
    ("usage batch audit", ("_audit_call (domain/usage/services.py",)),
    ("record_usage: validate", ("_validate (domain/usage/services.py",)),
    ("record_usage: claim_keys", ("claim_keys (",)),
    ("record_usage: insert_events", ("insert_events (",)),
    ("record_usage: add_rollups", ("add_rollups (",)),
    ("record_usage: spend+cap", ("add_spend (", "add_spends (", "evaluate (domain/billing/cap.py")),
    ("record_usage: pay (ledger)", ("_pay (domain/usage/services.py",)),
    ("record_usage: lookups", ("rate_book (", "toggles_of (", "preferences_of (", "restrict (", "ensure_partitions (")),
    ("record_usage: other", ("record_usage (",)),
    ("usage_authorize", ("usage_authorize (domain/usage/holds.py",)),
    ("session auth", ("viewer_from_token",)),
    (
        "event conversion (_to_event/usage_record input)",
        ("_to_event (", "resolvers/usage.py", "domain/usage/commands.py"),
    ),
    ("GraphQL parse", ("graphql/language/parser", "parse_document", "_parse_and_validate_async")),
    ("GraphQL validate", ("validate_document", "graphql/validation", "_run_rules (schema/extensions.py")),
    ("GraphQL variable coercion", ("get_variable_values", "coerce_input_value", "coerce_variable_values")),
    ("GraphQL argument conversion", ("convert_argument", "convert_arguments")),
    ("body read/decode", ("_read_body", "Decoder.decode", "parse_http_body", "parse_json")),
    ("response encode", ("encode_json", "Encoder.encode", "create_response", "process_result")),
    ("GraphQL execute (other)", ("graphql/execution", "strawberry/")),
    ("DB driver, caller not visible", ("asyncpg/", "tortoise/")),
    ("HTTP/ASGI", ("uvicorn/", "starlette/", "server/")),
]


def _first(frames: list[str], table: list[tuple[str, tuple[str, ...]]], innermost: bool) -> str:
    if innermost:
        for frame in reversed(frames):
            for name, needles in table:
                if any(n in frame for n in needles):
                    return name
        return "other"
    for name, needles in table:
        if any(n in frame for frame in frames for n in needles):
            return name
    return "other"


@dataclass
class Profile:
    samples: int = 0
    idle: int = 0
    layers: list[tuple[str, float]] = field(default_factory=list)
    activities: list[tuple[str, float]] = field(default_factory=list)


def summarize_profile(path: Path) -> Profile:
    layers: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    out = Profile()
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1].startswith(IDLE) or any(frame.startswith(IDLE[1:]) for frame in frames):
            out.idle += int(n)
            continue
        out.samples += int(n)
        layers[_first(frames, LAYERS, True)] += int(n)
        activities[_first(frames, ACTIVITIES, False)] += int(n)
    if out.samples:
        out.layers = [(k, 100 * v / out.samples) for k, v in layers.most_common()]
        out.activities = [(k, 100 * v / out.samples) for k, v in activities.most_common()]
    return out


@contextlib.contextmanager
def py_spy(pid: int, target: Path | None, rate: int = 250) -> Iterator[None]:
    if target is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "-o", str(target), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- orchestration


async def run_server_phases(
    db_url: str,
    base: str,
    server: subprocess.Popen[bytes],
    pg_pid: int | None,
    customers: list[dict[str, Any]],
    args: argparse.Namespace,
    config: str,
    profile_dir: Path | None,
) -> list[Outcome]:
    api = Api(base)
    results: list[Outcome] = []
    # the worker that answers is what py-spy samples; with --workers N only one of them is sampled
    workers = children(server.pid) or [server.pid]
    spied = workers[0] if len(workers) == 1 else None
    meter = CpuMeter(server.pid, pg_pid)
    try:
        await api.login()
        tag = f"{config}-{uuid.uuid4().hex[:6]}"
        warm = make_events(customers, 2 * BATCH, args.customers_per_batch, f"warm-{tag}")
        await phase_ingest(api, warm[:1], 1, Outcome("warm", config, "events"), 60)
        await phase_graphql(api, warm[1:], 1, Outcome("warm", config, "events"), 60)
        await phase_pairs(api, customers[:8], 16, 8, Outcome("warm", config, "pairs"), 60, f"warm-{tag}")

        plan: list[tuple[str, str, Callable[[Outcome], Awaitable[None]]]] = []
        for spread in [int(x) for x in args.ingest_spread.split(",") if x.strip()]:
            batches = make_events(customers, args.events, spread, f"ingest-{spread}-{tag}")
            plan.append(
                (
                    f"ingest-c{spread}",
                    "events",
                    lambda o, b=batches: phase_ingest(api, b, args.clients, o, args.phase_seconds),
                )
            )
        graphql_batches = make_events(customers, args.graphql_events, args.customers_per_batch, f"graphql-{tag}")
        plan.append(
            (
                f"graphql-c{args.customers_per_batch}",
                "events",
                lambda o: phase_graphql(api, graphql_batches, args.clients, o, args.phase_seconds),
            )
        )
        for name, chosen in pair_groups(customers).items():
            plan.append(
                (
                    name,
                    "pairs",
                    lambda o, c=chosen: phase_pairs(api, c, args.pairs, args.pair_clients, o, args.phase_seconds, tag),
                )
            )
        for name, unit, run in plan:
            if args.phases and not any(name.startswith(p) for p in args.phases.split(",")):
                continue
            out = Outcome(name, config, unit, meter=meter, db_url=db_url)
            target = profile_dir / f"{config}-{name}.txt" if profile_dir and spied else None
            with py_spy(spied or 0, target):
                await run(out)
            if target:
                out.profile = summarize_profile(target)
            results.append(out)
            print(f"  {config:<10} {name:<11} {out.rate:>10,.0f} {unit}/s", flush=True)
    finally:
        await api.close()
    return results


def pair_groups(customers: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The customers of each pairs phase: `pairs-1p` 4 customers of one partner, `pairs-8p` one customer of each
    of 8 partners (as many as were seeded)."""
    first_partner = customers[0]["partner_id"]
    one_partner = [c for c in customers if c["partner_id"] == first_partner][:4]
    by_partner: dict[int, dict[str, Any]] = {}
    for c in customers:
        by_partner.setdefault(c["partner_id"], c)
    return {"pairs-1p": one_partner, "pairs-8p": list(by_partner.values())[:8]}


def summary(results: list[Outcome], raws: list[Outcome]) -> list[dict[str, Any]]:
    """The headline figures of each phase, with its ratio to raw (as the table shows them), for `bench/all.py`."""
    raw_rate, like = _raw_bases(raws)
    out = []
    for r in [*results, *raws]:
        base = like.get(r.name, raw_rate if r.unit == "events" else 0.0)
        out.append(
            {
                "phase": r.name,
                "config": r.config,
                "unit": r.unit,
                "rate": r.rate,
                "p50_ms": r.pct(0.5),
                "p99_ms": r.pct(0.99),
                "vs_raw": r.rate / base if base and not r.name.startswith("raw") else None,
                "vs_single_balance_raw": r.rate / raw_rate
                if raw_rate and r.unit == "events" and not r.name.startswith("raw")
                else None,
                "failures": sum(r.failures.values()),
            }
        )
    return out


def _raw_bases(raws: list[Outcome]) -> tuple[float, dict[str, float]]:
    """The mean of the single-balance raw runs (before and after), and the like-for-like raw of each phase that has
    one (`raw-pairs-*` for the pairs, `raw-ingest-cN` for ingestion of N customers per batch)."""
    single = [r.rate for r in raws if r.name == "raw"]
    like = {r.name.removeprefix("raw-"): r.rate for r in raws if r.name.startswith("raw-")}
    return (sum(single) / len(single) if single else 0.0), like


def report(results: list[Outcome], raws: list[Outcome], cores: int) -> None:
    """The table; `vs raw` divides by the mean of the raw runs."""
    raw_rate, like = _raw_bases(raws)
    print()
    print(
        f"machine: {cores} CPU cores. CPU columns: core-microseconds per unit (event or pair) spent by the server, "
        "PostgreSQL and this client; 'ours'/'others': cores kept busy by this benchmark / by everything else."
    )
    header = (
        f"{'phase':<12}{'server':<14}{'rate':>9} {'unit':<9}{'vs raw':>6}{'p50 ms':>8}{'p99 ms':>8}{'reqs':>6}"
        f"{'fail':>5} {'srv µs':>8}{'pg µs':>7}{'cli µs':>7}{'ours':>6}{'others':>7}"
    )
    print(header)
    print("-" * len(header))
    rows = [*results, *raws]
    for r in rows:
        per = 1e6 / r.done if r.done else 0.0
        c = r.cpu
        pg = f"{c.pg * per:7.0f}" if c.pg is not None else f"{'n/a':>7}"
        ours = (c.server + (c.pg or 0) + c.client) / r.seconds if r.seconds else 0
        others = c.others / r.seconds if r.seconds else 0
        if like.get(r.name):
            ratio = f"{r.rate / like[r.name]:6.2f}"
        elif r.unit == "events" and raw_rate and r.name == "raw":
            ratio = f"{r.rate / raw_rate:6.2f}"
        elif r.unit == "events" and raw_rate and not r.name.startswith("raw"):
            ratio = f"{r.rate / raw_rate:6.2f}"
        else:
            ratio = f"{'':>6}"
        flag = " (deadline hit)" if r.timed_out else ""
        print(
            f"{r.name:<12}{r.config:<14}{r.rate:>9,.0f} {r.unit + '/s':<9}{ratio}{r.pct(0.5):8.1f}{r.pct(0.99):8.1f}"
            f"{r.requests:>6}{sum(r.failures.values()):>5} {c.server * per:8.0f}{pg}{c.client * per:7.0f}"
            f"{ours:6.2f}{others:7.2f}{flag}"
        )
    for r in results:
        if r.name.startswith("ingest-c") and r.name in like and raw_rate:
            print(f"  {r.name}/{r.config} against the single-balance raw: {r.rate / raw_rate:.2f}")
    for r in rows:
        for message, n in r.failures.most_common(3):
            print(f"  ! {r.name}/{r.config}: {n}× {message}")
    noisy = [r for r in rows if r.seconds and r.cpu.others / r.seconds > 0.25]
    if noisy:
        print(
            f"  note: other processes kept > 0.25 cores busy during {len(noisy)} of {len(rows)} phases: rates there "
            "are lower than on a quiet machine; the CPU-per-unit columns are the steadier comparison"
        )
    print("\nmean database sessions per state over each phase:")
    print("  " + ", ".join(f"{k} = {v}" for k, v in SESSION_STATES.items()))
    print(f"  {'phase':<12}{'server':<14}" + "".join(f"{k:>8}" for k in SESSION_STATES))
    for r in rows:
        if r.sessions:
            print(f"  {r.name:<12}{r.config:<14}" + "".join(f"{r.sessions[k]:8.2f}" for k in SESSION_STATES))
    print()
    print(
        "targets (issue 13): ingest-c1 >= 25,000 events/s and >= 0.6 x raw; ingest-c10 >= 0.4 x raw (raw-ingest-c10); graphql >= 8,000 "
        "events/s; pairs-1p >= 400 pairs/s with p99 <= 60 ms; pairs-8p >= 400 pairs/s ('vs raw' of a pairs phase: "
        "against raw asyncpg doing the same two transactions with the same clients)"
    )
    for r in results:
        if r.profile and r.profile.samples:
            p = r.profile
            print(f"\nserver profile, {r.name}/{r.config}: {p.samples} busy samples ({p.idle} idle left out)")
            print("  by layer:    " + ", ".join(f"{k} {v:.0f}%" for k, v in p.layers if v >= 1.0))
            print("  by activity: " + ", ".join(f"{k} {v:.0f}%" for k, v in p.activities if v >= 1.0))


def check_books(url: str) -> None:
    """After the run: every accepted event stored once and in the rollups, and the ledger balanced."""
    import asyncpg

    async def counts() -> tuple[int, int, int]:
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            events = await conn.fetchval("SELECT count(*) FROM usage_event")
            rolled = await conn.fetchval("SELECT coalesce(sum(events), 0) FROM usage_rollup")
            charged = await conn.fetchval("SELECT count(*) FROM ledger_transfer WHERE kind = 'USAGE_CHARGE'")
            return events, rolled, charged
        finally:
            await conn.close()

    events, rolled, charged = asyncio.run(counts())
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "APP_ENV": "test"}
    verify = subprocess.run(
        [sys.executable, "-m", "server.cli", "ledger", "verify"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    last = (verify.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(
        f"\nbooks: {events:,} usage events stored, {rolled:,} counted in rollups, {charged:,} usage-charge transfers; "
        f"ledger verify: {last} (exit {verify.returncode})"
    )


def _admin(url: str, sql: str) -> Any:
    import asyncpg

    async def go() -> Any:
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            return await conn.fetch(sql) if sql.lstrip().upper().startswith("SELECT") else await conn.execute(sql)
        finally:
            await conn.close()

    return asyncio.run(go())


def print_statement_stats(url: str, units: int) -> None:
    """The server phases' busiest statements (pg_stat_statements, planning tracked), per unit of work."""
    rows = _admin(
        url,
        "SELECT calls, total_plan_time, total_exec_time, query FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "ORDER BY total_plan_time + total_exec_time DESC LIMIT 25",
    )
    print(f"\nbusiest statements of the server phases, per unit ({units:,} units): plan µs, exec µs (wall), calls")
    for r in rows:
        per = max(units, 1)
        query = " ".join(r["query"].split())[:100]
        print(
            f"  {r['total_plan_time'] * 1000 / per:7.1f} {r['total_exec_time'] * 1000 / per:8.1f} "
            f"{r['calls'] / per:6.2f}  {query}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts to measure, comma-separated")
    parser.add_argument("--events", type=int, default=40_000, help="events for the ingest phase (and raw)")
    parser.add_argument("--graphql-events", type=int, default=20_000, help="events for the usageRecord phase")
    parser.add_argument("--pairs", type=int, default=1_500, help="authorize+record pairs")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pair-clients", type=int, default=8)
    parser.add_argument("--partners", type=int, default=8)
    parser.add_argument("--customers-per-partner", type=int, default=5)
    parser.add_argument(
        "--ingest-spread", default="1,10,40", help="distinct customers per 1,000-event ingest batch, one phase each"
    )
    parser.add_argument(
        "--customers-per-batch", type=int, default=10, help="distinct customers per 1,000-event batch (graphql, raw)"
    )
    parser.add_argument("--credit-every", type=int, default=3, help="every n-th customer also uses AI credits")
    parser.add_argument("--phase-seconds", type=float, default=60, help="deadline of each timed phase")
    parser.add_argument("--summary", type=Path, help="also write each phase's figures to this JSON file")
    parser.add_argument("--phases", default="", help="only these phases (prefixes: ingest,graphql,pairs)")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles here and summarise them")
    parser.add_argument(
        "--pg-stats",
        action="store_true",
        help="throwaway cluster with pg_stat_statements: print the database's busiest statements of the server phases",
    )
    parser.add_argument("--seed-only", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.seed_only:
        print(json.dumps(asyncio.run(_seed(*args.seed_only))))
        return 0

    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        server_url = os.environ.get("DATABASE_URL")
        if not server_url or args.pg_stats:
            settings = {"shared_buffers": "256MB"}
            if args.pg_stats:
                settings |= {
                    "shared_preload_libraries": "pg_stat_statements",
                    "pg_stat_statements.track_planning": "on",
                }
            server_url = stack.enter_context(throwaway_postgres(settings))
            print("started a throwaway PostgreSQL (fsync on, synchronous_commit on)", flush=True)
        url = stack.enter_context(fresh_database(server_url, prefix="partnerdesk_bench_usage"))
        port = int(url.rpartition(":")[2].partition("/")[0]) if "127.0.0.1:" in url else None
        pg_pid = postmaster_of(port) if port else None
        info = seed(url, args.partners, args.customers_per_partner, args.credit_every)
        customers = info["customers"]
        print(
            f"seeded {len(customers)} customers of {args.partners} partners "
            f"({sum(c['credits'] for c in customers)} on AI credits, the rest on funded wallets)",
            flush=True,
        )

        def raw_run(when: str) -> Outcome:
            raw = Outcome("raw", f"asyncpg/{when}", "events", meter=CpuMeter(None, pg_pid), db_url=url)
            batches = make_events(customers, args.events + BATCH, args.customers_per_batch, f"raw-{when}")
            asyncio.run(phase_raw(url, customers, batches, args.clients, raw, args.phase_seconds))
            print(f"  raw ({when:<6})        {raw.rate:>10,.0f} events/s", flush=True)
            return raw

        def raw_pairs_runs() -> list[Outcome]:
            outs = []
            for name, chosen in pair_groups(customers).items():
                if args.phases and not any(name.startswith(p) for p in args.phases.split(",")):
                    continue
                raw = Outcome(f"raw-{name}", "asyncpg", "pairs", meter=CpuMeter(None, pg_pid), db_url=url)
                asyncio.run(phase_raw_pairs(url, chosen, args.pairs, args.pair_clients, raw, args.phase_seconds))
                print(f"  raw {name:<17} {raw.rate:>10,.0f} pairs/s", flush=True)
                outs.append(raw)
            return outs

        def raw_spread_runs() -> list[Outcome]:
            """Like for like with ingest-cN (N > 1): the same spread of customers per batch, and every customer's
            balance in a batch locked (id order) and debited, as ingestion moves each customer's balance."""
            outs: list[Outcome] = []
            if args.phases and not any(p.startswith("ingest") for p in args.phases.split(",")):
                return outs
            for spread in [int(x) for x in args.ingest_spread.split(",") if x.strip()]:
                if spread <= 1:
                    continue
                raw = Outcome(f"raw-ingest-c{spread}", "asyncpg", "events", meter=CpuMeter(None, pg_pid), db_url=url)
                batches = make_events(customers, args.events + BATCH, spread, f"raw-c{spread}")
                asyncio.run(phase_raw(url, customers, batches, args.clients, raw, args.phase_seconds, True))
                print(f"  raw ingest-c{spread:<11} {raw.rate:>10,.0f} events/s", flush=True)
                outs.append(raw)
            return outs

        # the baseline before and after the server phases: on a shared machine the two can differ a lot
        raws = [raw_run("before"), *raw_spread_runs(), *raw_pairs_runs()]
        results: list[Outcome] = []
        if args.pg_stats:
            _admin(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
        for workers in worker_counts:
            config = f"{workers} worker" + ("s" if workers > 1 else "")
            with uvicorn_server(url, workers) as (base, proc):
                results += asyncio.run(
                    run_server_phases(url, base, proc, pg_pid, customers, args, config.replace(" ", "-"), args.profile)
                )
        if args.pg_stats:
            print_statement_stats(url, sum(r.done for r in results))
        raws.append(raw_run("after"))
        report(results, raws, os.cpu_count() or 1)
        if args.summary:
            args.summary.write_text(json.dumps(summary(results, raws)))
        check_books(url)
    print(f"\ndone in {time.monotonic() - started:.0f} s; servers stopped, temporary database and files removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
