"""The per-call money path without HTTP: `usage_authorize` then `usage_record` of one event against its hold,
called straight on the domain services, so its client CPU per pair is the domain's (and the driver's) alone.

    .venv/bin/python -m bench.money_path [--pairs 2000] [--writers 8] [--customers 4] [--partners 1] [--rounds 3]

Cases: `sql` (the PostgreSQL path: domain/usage/lookup.py and store_pg.py) and `orm` (the same services through the
ORM path on PostgreSQL, `domain.common.rows.RAW_SQL = False`: what it cost before). Customers pay by wallet, every fourth
by AI credits; `--partners` spreads them over partners. Reported per pair: statements sent (BEGIN/COMMIT included,
counted on 20 pairs one at a time), this process's CPU µs (Python, Tortoise, asyncpg), latency and rate. With
`--rounds N` the cases run interleaved N times and the median round is shown. Database as bench/ledger.py: a
throwaway durable cluster unless DATABASE_URL names a server; a fresh migrated database either way, dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._pg import fresh_database, throwaway_postgres  # noqa: E402
from bench._proc import cpu_seconds  # noqa: E402
from bench.ledger import CountingConnection, count_statements  # noqa: E402

CASES = ("sql", "orm")
WARMUP = 40
COUNTED = 20


async def run(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from tortoise import Tortoise
    from tortoise.transactions import in_transaction

    from domain.accounts.models import Role
    from domain.billing.commands import BillingPreferencesUpdate
    from domain.billing.credits import grant_credits
    from domain.billing.models import BillingMode, GrantSource
    from domain.billing.preferences import billing_preferences_update
    from domain.common import rows as raw_path
    from domain.customers.models import Customer
    from domain.features.models import FeatureToggles
    from domain.ledger import services as ledger
    from domain.ledger.models import Currency, TransferKind
    from domain.partners.models import Partner
    from domain.usage import store
    from domain.usage.commands import UsageAuthorize, UsageEventIn, UsageRecord
    from domain.usage.holds import usage_authorize
    from domain.usage.models import UnitType
    from domain.usage.services import usage_record
    from domain.viewer import Viewer
    from server.settings import get_settings

    pool = args.writers + 2
    config = get_settings().tortoise_config(f"{url}?minsize={pool}&maxsize={pool}")
    config["connections"]["default"]["credentials"]["connection_class"] = CountingConnection
    if args.pg_setting:
        settings = dict(item.split("=", 1) for item in args.pg_setting)
        config["connections"]["default"]["credentials"]["server_settings"] = settings
    await Tortoise.init(config=config, _enable_global_fallback=True)
    system = Viewer.system("bench")
    try:
        await Partner.bulk_create([Partner(name=f"Bench {n}") for n in range(args.partners)])
        partners = await Partner.all().order_by("id")
        await Customer.bulk_create(
            [Customer(partner_id=partners[n % len(partners)].id, name=f"C{n}") for n in range(args.customers)]
        )
        customers = await Customer.all().order_by("id")
        for n, customer in enumerate(customers):
            if n % 4 == 3:
                await FeatureToggles.get_or_create(customer_id=customer.id)
                await FeatureToggles.filter(customer_id=customer.id).update(ai_credits_enabled=True)
                currency, account = Currency.CREDITS, ledger.customer_credits(customer.id, customer.partner_id)
            else:
                mode = BillingPreferencesUpdate(customer.id, billing_mode=BillingMode.REFILLABLE_WALLET)
                await billing_preferences_update(system, mode)
                currency, account = Currency.USD, ledger.customer_wallet(customer.id, customer.partner_id)
            async with in_transaction():
                transfer = await ledger.post(
                    ledger.external_funding(currency, customer.partner_id),
                    account,
                    Decimal(10**9),
                    TransferKind.ADJUSTMENT,
                )
                if currency == Currency.CREDITS:
                    await grant_credits(customer, Decimal(10**9), GrantSource.ADJUSTMENT, transfer)
        await store.ensure_partitions([store.month_start(datetime.now(UTC))])
        viewers = {p.id: Viewer(role=Role.PARTNER_ADMIN, partner_id=p.id, label="bench") for p in partners}

        async def pair(n: int) -> None:
            customer = customers[n % len(customers)]
            viewer = viewers[customer.partner_id]
            hold = await usage_authorize(
                viewer, UsageAuthorize(customer.id, UnitType.VOICE_MINUTES, Decimal(2), uuid.uuid4().hex)
            )
            event = UsageEventIn(
                uuid.uuid4().hex, customer.id, "VOICE_MINUTES", "1.5", datetime.now(UTC), hold_id=hold.id
            )
            result = await usage_record(viewer, UsageRecord([event], source="graphql"))
            assert result.accepted == 1, result

        from tortoise import connections

        if args.pg_stats:
            await connections.get("default").execute_script("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

        async def statement_stats(case: str, pairs: int) -> None:
            """Where the database's time went in the last round, per pair (pg_stat_statements, planning tracked)."""
            rows = await connections.get("default").execute_query_dict(
                "SELECT calls, total_plan_time, total_exec_time, query FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY total_plan_time + total_exec_time DESC LIMIT 14"
            )
            print(f"\n{case}: per pair µs  plan    exec   calls  statement")
            for r in rows:
                query = " ".join(r["query"].split())[:90]
                plan, run = r["total_plan_time"] * 1000 / pairs, r["total_exec_time"] * 1000 / pairs
                print(f"{'':18}{plan:6.0f}  {run:6.0f}  {r['calls'] / pairs:6.2f}  {query}")
            from tortoise.transactions import in_transaction as transaction

            async with transaction() as conn:  # one pooled session's prepared statements: generic or custom plans
                prepared = await conn.execute_query_dict(
                    "SELECT generic_plans, custom_plans, statement FROM pg_prepared_statements "
                    "ORDER BY custom_plans DESC LIMIT 8"
                )
            for r in prepared:
                query = " ".join(r["statement"].split())[:80]
                print(f"{'':18}generic {r['generic_plans']:5}  custom {r['custom_plans']:5}  {query}")

        backends: list[int] = []

        async def find_backends() -> None:
            """The server processes of this database's pooled sessions (after the warm-up opened them all)."""
            rows = await connections.get("default").execute_query_dict(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )
            backends[:] = [r["pid"] for r in rows]

        def pg_cpu() -> float:
            """CPU seconds of this database's server processes (0 when they are not on this machine)."""
            return cpu_seconds(backends)

        async def drive(count: int, writers: int) -> tuple[float, float, list[float], float]:
            numbers = iter(range(count))
            latencies: list[float] = []

            async def writer() -> None:
                for n in numbers:
                    started = time.perf_counter()
                    await pair(n)
                    latencies.append(time.perf_counter() - started)

            started, cpu, pg = time.perf_counter(), time.process_time(), pg_cpu()
            await asyncio.gather(*(writer() for _ in range(writers)))
            return time.perf_counter() - started, time.process_time() - cpu, latencies, pg_cpu() - pg

        statements: dict[str, float] = {}
        for case in args.cases:
            raw_path.RAW_SQL = case == "sql"
            await drive(WARMUP, args.writers)
            statements[case] = await count_statements(pair, range(COUNTED))
        await find_backends()
        rounds: dict[str, list[tuple[float, float, list[float], float]]] = {case: [] for case in args.cases}
        for _ in range(args.rounds):
            for case in args.cases:
                raw_path.RAW_SQL = case == "sql"
                if args.pg_stats:
                    await connections.get("default").execute_query("SELECT pg_stat_statements_reset()")
                rounds[case].append(await drive(args.pairs, args.writers))
                if args.pg_stats:
                    await statement_stats(case, args.pairs)
        raw_path.RAW_SQL = True
        results = []
        for case in args.cases:
            middle = sorted(rounds[case], key=lambda r: r[0])[len(rounds[case]) // 2]
            latencies = sorted(x for r in rounds[case] for x in r[2])
            results.append(
                {
                    "case": case,
                    "rate": args.pairs / middle[0],
                    "cpu_us": statistics.median(r[1] for r in rounds[case]) / args.pairs * 1e6,
                    "pg_us": statistics.median(r[3] for r in rounds[case]) / args.pairs * 1e6,
                    "p50": latencies[len(latencies) // 2] * 1000,
                    "p99": latencies[int(len(latencies) * 0.99)] * 1000,
                    "statements": statements[case],
                }
            )
        problems = (await ledger.verify())[1]
        if problems:
            raise SystemExit(f"ledger.verify() found problems: {problems[:3]}")
    finally:
        await Tortoise.close_connections()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--customers", type=int, default=4)
    parser.add_argument("--partners", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--pg-setting", action="append", default=[], help="name=value for the pool's sessions")
    parser.add_argument(
        "--pg-stats",
        action="store_true",
        help="a throwaway cluster with pg_stat_statements (planning tracked): print where the database's time went",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    @contextmanager
    def server() -> Iterator[str]:
        given = os.environ.get("DATABASE_URL", "")
        if given.startswith(("postgres://", "postgresql://")) and not args.pg_stats:
            yield "postgres://" + given.split("://", 1)[1]
        else:
            stats = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_planning": "on"}
            with throwaway_postgres(stats if args.pg_stats else None) as url:
                yield url

    with server() as server_url, fresh_database(server_url) as url:
        os.environ["DATABASE_URL"] = url
        results = asyncio.run(run(url, args))
    print(f"\n{args.writers} writers, {args.customers} customers of {args.partners} partner(s), {args.pairs} pairs")
    print(f"{'case':<6}{'pairs/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'stmts':>7}{'CPU µs':>8}{'PG µs':>8}")
    for r in results:
        print(
            f"{r['case']:<6}{r['rate']:>9.0f}{r['p50']:>8.1f}{r['p99']:>8.1f}{r['statements']:>7.1f}{r['cpu_us']:>8.0f}"
            f"{r['pg_us']:>8.0f}"
        )
    print(
        "stmts: statements per pair, BEGIN/COMMIT included; CPU µs: this process's CPU per pair (domain + driver);"
        " PG µs: the database server processes' CPU per pair"
    )
    _ = asyncpg
    return 0


if __name__ == "__main__":
    sys.exit(main())
