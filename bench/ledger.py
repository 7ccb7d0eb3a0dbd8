"""Ledger throughput on PostgreSQL: the domain service against raw asyncpg doing the same transfer.

    .venv/bin/python -m bench.ledger [--transfers 2000] [--accounts 1000] [--writers 1 8] [--rounds 1]

Cases, each a fixed number of transfers spread over N concurrent writers (asyncio tasks, one connection each):
- raw:      asyncpg, one transaction per transfer: UPDATE the debit balance, UPDATE the credit balance (in id order,
            RETURNING the balances after), INSERT the transfer row. The least a transfer must write.
- post:     `ledger.post()` inside `in_transaction()` (lock both rows FOR UPDATE, move the balances, insert the
            transfer).
- recharge: the whole `customer_credits_recharge` service (validation, idempotency record, savepoint, post,
            credit grant, counters, audit event on the partner's hash chain).
Each runs "spread" (random pairs over --accounts accounts; recharge: --accounts/2 partners with one customer each)
and "hot" (every transfer touches one account; recharge: one partner and one customer). "vs raw" compares a case
with the raw case of the same shape and writer count in the same run; with --rounds N the cases run interleaved
N times and the median is shown, so a change in machine load hits every case alike. Also reported: statements per
transfer (everything the driver sent, counted on 20 single-writer transfers: BEGIN/COMMIT/SAVEPOINT and asyncpg's
reset query on each pool release included) and this process's CPU time per transfer, which is far less noisy than
throughput on a shared machine.

Without DATABASE_URL it starts a throwaway PostgreSQL cluster (bench/_pg.py: initdb into a temp dir) with durable
settings (fsync, synchronous_commit and full_page_writes left on, as in production) and removes it afterwards.
Either way it creates a fresh database, applies the project's migrations (`python -m server.cli migrate`) and drops
it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # also runnable as `python bench/ledger.py`
    sys.path.insert(0, str(ROOT))

from bench._pg import fresh_database, throwaway_postgres  # noqa: E402

AMOUNT = Decimal("0.000001")
FUNDING = Decimal(10) ** 11
WARMUP = 50
COUNTED = 20
CASES = ("raw", "post", "recharge")
SHAPES = ("spread", "hot")

Transfer = tuple[int, int]  # indexes (debit, credit) into the account list
Worker = Callable[[Transfer], Awaitable[None]]
T = TypeVar("T")


# ---------------------------------------------------------------- measuring


class CountingConnection(asyncpg.Connection):
    """An asyncpg connection that can count the statements it sends (query loggers are attached only while
    counting, so the timed runs pay nothing)."""

    live: ClassVar[weakref.WeakSet[CountingConnection]] = weakref.WeakSet()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CountingConnection.live.add(self)


async def count_statements(work: Callable[[T], Awaitable[object]], transfers: Sequence[T]) -> float:
    """Statements per transfer (or any unit of work), over all connections of both pools, one at a time."""
    seen: list[str] = []

    def log(record: Any) -> None:
        seen.append(record.query)

    connections = list(CountingConnection.live)
    for conn in connections:
        conn.add_query_logger(log)
    try:
        for transfer in transfers:
            await work(transfer)
        await asyncio.sleep(0)  # loggers are called soon after each statement
    finally:
        for conn in connections:
            conn.remove_query_logger(log)
    return len(seen) / len(transfers)


@dataclass(frozen=True)
class Result:
    case: str
    shape: str
    writers: int
    transfers: int
    seconds: float
    cpu_seconds: float  # this process's CPU time (Python, ORM, driver), not the server's
    latencies: list[float]
    statements: float

    @property
    def rate(self) -> float:
        return self.transfers / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def plan(count: int, accounts: int, hot: bool, seed: int) -> list[Transfer]:
    """The same pseudo-random transfers for every case of one shape (account 0 is the hot one)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        if hot:
            out.append((0, rng.randrange(1, accounts)))
        else:
            a, b = rng.sample(range(accounts), 2)
            out.append((a, b))
    return out


async def drive(writers: int, transfers: list[Transfer], work: Worker) -> tuple[float, float, list[float]]:
    """Runs every transfer through `work` on `writers` concurrent tasks: elapsed and CPU seconds, latencies."""
    queue = iter(transfers)
    latencies: list[float] = []

    async def writer() -> None:
        for transfer in queue:
            started = time.perf_counter()
            await work(transfer)
            latencies.append(time.perf_counter() - started)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.perf_counter() - started, time.process_time() - cpu, latencies


def median_result(rounds: list[Result]) -> Result:
    """The round with the median rate (all rounds' latencies pooled)."""
    middle = sorted(rounds, key=lambda r: r.rate)[len(rounds) // 2]
    pooled = [latency for r in rounds for latency in r.latencies]
    return Result(
        middle.case,
        middle.shape,
        middle.writers,
        middle.transfers,
        middle.seconds,
        statistics.median(r.cpu_seconds for r in rounds),
        pooled,
        middle.statements,
    )


# ---------------------------------------------------------------- the cases


async def run(url: str, args: argparse.Namespace) -> list[Result]:
    from tortoise import Tortoise
    from tortoise.transactions import in_transaction

    from domain.billing.commands import CustomerCreditsRecharge
    from domain.billing.credits import customer_credits_recharge
    from domain.customers.models import Customer
    from domain.ledger import services as ledger
    from domain.ledger.models import AccountKind, Currency, LedgerAccount, TransferKind
    from domain.partners.models import Partner
    from domain.viewer import Viewer
    from server.settings import get_settings, release_without_reset

    pool_size = max(args.writers) + 2
    config = get_settings().tortoise_config(f"{url}?minsize={pool_size}&maxsize={pool_size}")
    config["connections"]["default"]["credentials"]["connection_class"] = CountingConnection
    await Tortoise.init(config=config, _enable_global_fallback=True)
    raw_pool = await asyncpg.create_pool(
        url.replace("postgres://", "postgresql://", 1),
        min_size=pool_size,
        max_size=pool_size,
        connection_class=CountingConnection,
        reset=release_without_reset,  # the server's own pool policy (server/settings.py), so both send the same
    )
    system = Viewer.system("bench")
    accounts: int = args.accounts
    results: list[Result] = []
    try:
        # accounts for post and raw: kinds that may go negative, so no transfer is ever refused
        refs = [ledger.AccountRef(AccountKind.REVENUE, Currency.CREDITS, partner_id=n) for n in range(1, accounts + 1)]
        await ledger.ensure_accounts(*refs)
        ids = {row.key: row.id for row in await LedgerAccount.filter(key__in=[r.key for r in refs])}
        account_ids = [ids[r.key] for r in refs]

        # partners with one customer each for recharge, their pools funded once
        await Partner.bulk_create([Partner(name=f"Bench {n}") for n in range(accounts // 2)])
        partners = await Partner.all().order_by("id")
        await Customer.bulk_create([Customer(partner_id=p.id, name=f"Bench customer {p.id}") for p in partners])
        customers = await Customer.all().order_by("id")
        async with in_transaction():
            for p in partners:
                await ledger.post(
                    ledger.external_funding(Currency.CREDITS, p.id),
                    ledger.partner_pool(p.id),
                    FUNDING,
                    TransferKind.ADJUSTMENT,
                )

        async def raw(transfer: Transfer) -> None:
            debit, credit = account_ids[transfer[0]], account_ids[transfer[1]]
            async with raw_pool.acquire() as conn, conn.transaction():
                after = {}
                for account in sorted((debit, credit)):
                    after[account] = await conn.fetchval(
                        "UPDATE ledger_account SET balance = balance + $2 WHERE id = $1 RETURNING balance",
                        account,
                        -AMOUNT if account == debit else AMOUNT,
                    )
                await conn.execute(
                    "INSERT INTO ledger_transfer (debit_account_id, credit_account_id, amount, currency, kind,"
                    " debit_balance_after, credit_balance_after, idempotency_key, metadata, created_at)"
                    " VALUES ($1, $2, $3, 'CREDITS', 'ADJUSTMENT', $4, $5, NULL, '{}', now())",
                    debit,
                    credit,
                    AMOUNT,
                    after[debit],
                    after[credit],
                )

        async def post(transfer: Transfer) -> None:
            async with in_transaction():
                await ledger.post(refs[transfer[0]], refs[transfer[1]], AMOUNT, TransferKind.ADJUSTMENT)

        def recharge_of(hot: bool) -> Worker:
            async def recharge(transfer: Transfer) -> None:
                customer = customers[0 if hot else transfer[1] % len(customers)]
                await customer_credits_recharge(system, CustomerCreditsRecharge(customer.id, AMOUNT, uuid.uuid4().hex))

            return recharge

        for shape in args.shapes:
            hot = shape == "hot"
            for writers in args.writers:
                transfers = plan(WARMUP + args.transfers, accounts, hot, seed=writers)
                cases: dict[str, Worker] = {"raw": raw, "post": post, "recharge": recharge_of(hot)}
                chosen = [c for c in CASES if c in args.cases]
                statements = {}
                for case in chosen:
                    await drive(writers, transfers[:WARMUP], cases[case])
                    statements[case] = await count_statements(cases[case], transfers[:COUNTED])
                rounds: dict[str, list[Result]] = {case: [] for case in chosen}
                for _ in range(args.rounds):  # interleaved, so a change in machine load hits every case alike
                    for case in chosen:
                        seconds, cpu, latencies = await drive(writers, transfers[WARMUP:], cases[case])
                        rounds[case].append(
                            Result(case, shape, writers, args.transfers, seconds, cpu, latencies, statements[case])
                        )
                for case in chosen:
                    result = median_result(rounds[case])
                    results.append(result)
                    print(f"  {case:<8} {shape:<6} {writers} writer(s): {result.rate:8.0f} transfers/s", flush=True)
        checked, problems = await ledger.verify()
        if problems:
            raise SystemExit(f"ledger.verify() found {len(problems)} problems after the run: {problems[:3]}")
        print(f"ledger.verify(): {checked} transfers, every balance matches, each currency sums to 0", flush=True)
    finally:
        await raw_pool.close()
        await Tortoise.close_connections()
    return results


def report(results: list[Result], accounts: int) -> None:
    raw = {(r.shape, r.writers): r.rate for r in results if r.case == "raw"}
    header = ("case", "shape", "accounts", "writers", "transfers/s", "p50 ms", "p99 ms", "stmts", "CPU µs", "vs raw")
    widths = (-10, -8, 9, 8, 12, 8, 8, 7, 8, 8)
    rows = [
        (
            r.case,
            r.shape,
            1 if r.shape == "hot" else accounts,
            r.writers,
            f"{r.rate:.0f}",
            f"{r.percentile(0.5):.2f}",
            f"{r.percentile(0.99):.2f}",
            f"{r.statements:.1f}",
            f"{r.cpu_seconds / r.transfers * 1e6:.0f}",
            f"{r.rate / raw[(r.shape, r.writers)]:.0%}" if (r.shape, r.writers) in raw else "-",
        )
        for r in results
    ]
    print()
    for row in (header, *rows):
        print("".join(f"{cell!s:<{-w}}" if w < 0 else f"{cell!s:>{w}}" for cell, w in zip(row, widths, strict=True)))
    print(
        "\nstmts = statements sent per transfer (BEGIN/COMMIT/SAVEPOINT included); CPU µs = this process's CPU time"
        " per transfer (benchmark, ORM and driver; not the server's)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--transfers", type=int, default=2000, help="measured transfers per case (default 2000)")
    parser.add_argument("--summary", type=Path, help="also write each case's figures to this JSON file")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts in the spread shape (default 1000)")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8], help="concurrent writers (default 1 8)")
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds per case; the median is shown (default 1)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES, help="cases to run (default all)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES, help="shapes (default both)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    @contextmanager
    def server() -> Iterator[str]:
        given = os.environ.get("DATABASE_URL", "")
        if given.startswith(("postgres://", "postgresql://")):
            yield "postgres://" + given.split("://", 1)[1]
        else:
            with throwaway_postgres() as url:
                print("started a throwaway PostgreSQL (fsync on, synchronous_commit on)", flush=True)
                yield url

    with server() as server_url, fresh_database(server_url) as url:
        os.environ["DATABASE_URL"] = url
        results = asyncio.run(run(url, args))
    report(results, args.accounts)
    if args.summary:
        raw = {(r.shape, r.writers): r.rate for r in results if r.case == "raw"}
        args.summary.write_text(
            json.dumps(
                [
                    {
                        "case": r.case,
                        "shape": r.shape,
                        "writers": r.writers,
                        "rate": r.rate,
                        "vs_raw": r.rate / raw[(r.shape, r.writers)] if (r.shape, r.writers) in raw else None,
                    }
                    for r in results
                ]
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
