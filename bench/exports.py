"""Exports end to end, and usage summaries at two sizes, in one run (issue 16).

    .venv/bin/python bench/exports.py [--events 100000] [--summary-events 10000000] [--summary-calls 20]

Without DATABASE_URL it starts a throwaway PostgreSQL cluster (bench/_pg.py); REDIS_URL (default
redis://127.0.0.1:6399/0) carries the job queue under a namespace of its own. The database is migrated and seeded:
a partner with three customers; customer A gets `--events` usage events (60% voice calls with their details, 40%
SMS) over the last 20 days, B 10,000 events over a year and C `--summary-events` over a year, written with
PostgreSQL's generate_series and added up into the rollups as the ingestion path does. Then it starts the API
(uvicorn) and one `dramatiq` worker process (one thread) on Redis, signs in over HTTP and measures:

  VOICE_CSV / PDF  usageExportCreate for A's whole period → READY, through the relay, the broker and the worker,
                   polled over GraphQL every 50 ms; the worker's peak RSS (VmHWM) after each
  usageSummary     a year of B (10k events) and of C (10M) grouped by day, median of `--summary-calls` requests

Everything it starts is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._pg import free_port, fresh_database, throwaway_postgres  # noqa: E402
from bench._proc import tree  # noqa: E402

PASSWORD = "Bench-pass-1"
OWNER = "owner@exports.bench.example.com"


async def _seed() -> dict[str, int]:
    from tortoise import Tortoise

    from domain.accounts.models import Role
    from domain.customers.commands import CustomerCreate
    from domain.customers.services import customer_create
    from domain.partners.commands import PartnerCreate
    from domain.partners.services import partner_create
    from domain.viewer import Viewer
    from server.settings import get_settings

    await Tortoise.init(config=get_settings().tortoise_config(), _enable_global_fallback=True)
    try:
        partner = (
            await partner_create(
                Viewer.system("bench"), PartnerCreate("Bench 東京ボイス", OWNER, PASSWORD, "Bench Owner")
            )
        ).partner
        staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id, label="bench")
        ids = {}
        for name in ("a", "b", "c"):
            command = CustomerCreate(
                username=f"bench{name}",
                first_name="Bench",
                last_name=name,
                email=f"{name}@bench-customer.example.com",
                password=PASSWORD,
                password_confirmation=PASSWORD,
                company_name=f"Customer {name.upper()}",
            )
            ids[name] = (await customer_create(staff, command)).customer.id
        return {"partner": partner.id, **ids}
    finally:
        await Tortoise.close_connections()


_EVENTS_SQL = """
INSERT INTO usage_event (customer_id, partner_id, unit_type, quantity, occurred_at, recorded_at, case_type,
  idempotency_key, unit_price, cost, credits, funding, paid, metadata, direction, from_number, to_number,
  duration_seconds, segments, call_id)
SELECT {customer}, {partner},
  CASE WHEN g % 5 < 3 THEN 'VOICE_MINUTES' ELSE 'SMS_SEGMENTS' END,
  CASE WHEN g % 5 < 3 THEN 2.5 ELSE 1 END,
  now() - interval '{span_seconds} seconds' * (g::float / {count}), now(),
  (ARRAY['Intake','Follow-up','相談','استشارة'])[g % 4 + 1],
  'bench-{customer}-' || g,
  CASE WHEN g % 5 < 3 THEN 0.06 ELSE 0.01 END,
  CASE WHEN g % 5 < 3 THEN 0.15 ELSE 0.01 END,
  0, 'INVOICE', false, '{{}}',
  CASE WHEN g % 2 = 0 THEN 'OUTBOUND' ELSE 'INBOUND' END,
  '+4144555' || lpad((g % 10000)::text, 4, '0'), '+1555' || lpad((g % 10000000)::text, 7, '0'),
  CASE WHEN g % 5 < 3 THEN 150 END, CASE WHEN g % 5 >= 3 THEN 1 END,
  CASE WHEN g % 5 < 3 THEN 'call-' || g END
FROM generate_series(1, {count}) AS g
"""
_ROLLUPS_SQL = """
INSERT INTO usage_rollup (customer_id, day, unit_type, events, quantity, cost, credits, unpaid_cost)
SELECT customer_id, (occurred_at AT TIME ZONE 'UTC')::date, unit_type, count(*), sum(quantity), sum(cost), 0, sum(cost)
FROM usage_event WHERE customer_id = {customer} GROUP BY 1, 2, 3;
INSERT INTO usage_rollup_detail (customer_id, day, unit_type, case_type, campaign_id, events, quantity, cost, credits,
  unpaid_cost)
SELECT customer_id, (occurred_at AT TIME ZONE 'UTC')::date, unit_type, case_type, 0, count(*), sum(quantity), sum(cost),
  0, sum(cost)
FROM usage_event WHERE customer_id = {customer} GROUP BY 1, 2, 3, 4;
"""


async def _fill(url: str, ids: dict[str, int], events: int, summary_events: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        now = datetime.now(UTC)
        month = datetime(now.year - 1, now.month, 1, tzinfo=UTC)
        while month <= now + timedelta(days=31):  # the monthly partitions of the year
            nxt = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS usage_event_{month:%Y_%m} PARTITION OF usage_event "
                f"FOR VALUES FROM ('{month:%Y-%m-%d}') TO ('{nxt:%Y-%m-%d}')"
            )
            month = nxt
        year = 360 * 86400
        for name, count, span in (("a", events, 20 * 86400), ("b", 10_000, year), ("c", summary_events, year)):
            started = time.perf_counter()
            sql = _EVENTS_SQL.format(customer=ids[name], partner=ids["partner"], count=count, span_seconds=span)
            await conn.execute(sql)
            await conn.execute(_ROLLUPS_SQL.format(customer=ids[name]))
            print(f"  seeded customer {name.upper()}: {count:,} events in {time.perf_counter() - started:.1f} s")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


@contextmanager
def _process(cmd: list[str], env: dict[str, str], name: str) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.NamedTemporaryFile(prefix=f"partnerdesk-bench-{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        Path(log.name).unlink(missing_ok=True)


def _peak_rss_mb(pid: int) -> float:
    """The largest VmHWM (peak resident set) among the process tree."""
    peaks = []
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


async def _measure(base: str, ids: dict[str, int], worker: subprocess.Popen[bytes], calls: int) -> list[str]:
    import httpx

    from domain.common.ids import encode

    async with httpx.AsyncClient(base_url=base, timeout=120) as http:

        async def gql(query: str, variables: dict[str, Any], token: str | None = None) -> dict[str, Any]:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            body = (await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)).json()
            assert "errors" not in body, body
            return body["data"]

        login = await gql(
            "mutation($i: LoginInput!) { login(input: $i) { token } }", {"i": {"login": OWNER, "password": PASSWORD}}
        )
        token = login["login"]["token"]
        today = datetime.now(UTC).date()
        lines = []
        for fmt in ("VOICE_CSV", "PDF"):
            started = time.perf_counter()
            created = await gql(
                "mutation($i: UsageExportCreateInput!) { usageExportCreate(input: $i) { usageReport { id } } }",
                {
                    "i": {
                        "customerId": encode("Customer", ids["a"]),
                        "format": fmt,
                        "from": (today - timedelta(days=21)).isoformat(),
                        "to": today.isoformat(),
                    }
                },
                token,
            )
            report_id = created["usageExportCreate"]["usageReport"]["id"]
            while True:
                node = (
                    await gql(
                        "query($id: ID!) { node(id: $id) { ... on UsageReport { status rowCount byteSize } } }",
                        {"id": report_id},
                        token,
                    )
                )["node"]
                if node["status"] in ("READY", "FAILED"):
                    break
                await asyncio.sleep(0.05)
            took = time.perf_counter() - started
            lines.append(
                f"| {fmt} | {node['status']} | {node['rowCount']:,} rows | {node['byteSize']:,} bytes | {took:.2f} s | "
                f"{_peak_rss_mb(worker.pid):.0f} MB |"
            )
        summary = """query($id: ID!, $from: Date!, $to: Date!) {
          usageSummary(customerId: $id, from: $from, to: $to, groupBy: DAY) { period unitType quantity } }"""
        year = {"from": (today - timedelta(days=365)).isoformat(), "to": today.isoformat()}
        timings = {}
        for name in ("b", "c"):
            variables = {"id": encode("Customer", ids[name]), **year}
            await gql(summary, variables, token)  # warm-up
            samples = []
            for _ in range(calls):
                t = time.perf_counter()
                rows = (await gql(summary, variables, token))["usageSummary"]
                samples.append(time.perf_counter() - t)
            timings[name] = statistics.median(samples)
            lines.append(
                f"| usageSummary, customer {name.upper()} | {len(rows)} rows | median {timings[name] * 1000:.1f} ms |"
            )
        lines.append(f"| usageSummary 10M ÷ 10k | {timings['c'] / timings['b']:.2f}× |")
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--summary-events", type=int, default=10_000_000)
    parser.add_argument("--summary-calls", type=int, default=20)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6399/0")
    server = os.environ.get("DATABASE_URL")
    with contextmanager(lambda: (yield server))() if server else throwaway_postgres() as server_url:
        with fresh_database(server_url, prefix="partnerdesk_exports") as url:
            exports = tempfile.mkdtemp(prefix="partnerdesk-bench-exports-")
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "REDIS_URL": redis_url,
                "DRAMATIQ_NAMESPACE": f"bench-exports-{uuid.uuid4().hex[:6]}",
                "REDIS_KEY_PREFIX": f"bench{uuid.uuid4().hex[:6]}",
                "EXPORTS_DIR": exports,
                "LOG_LEVEL": "WARNING",
            }
            os.environ.update({"DATABASE_URL": url})
            ids = asyncio.run(_seed())
            asyncio.run(_fill(url, ids, args.events, args.summary_events))
            port = free_port()
            api_cmd = [sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory", "--port", str(port)]
            worker_cmd = [sys.executable, "-m", "dramatiq", "server.worker", "--processes", "1", "--threads", "1"]
            with _process(api_cmd, env, "api"), _process(worker_cmd, env, "worker") as worker:
                import httpx

                base = f"http://127.0.0.1:{port}"
                for _ in range(300):
                    try:
                        if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                time.sleep(2)  # the worker boots
                lines = asyncio.run(_measure(base, ids, worker, args.summary_calls))
            print(
                f"\nexports of {args.events:,} events; summaries of a year at 10,000 and {args.summary_events:,} events"
            )
            print("| case | status / rows | size / latency | end to end | worker peak RSS |")
            print("|---|---|---|---|---|")
            print("\n".join(lines))


if __name__ == "__main__":
    main()
