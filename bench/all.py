"""`make bench`: every benchmark, then one table of the issue-13 measures with their targets.

    .venv/bin/python -m bench.all [--quick]

Runs, each against its own throwaway PostgreSQL (or DATABASE_URL's server) in one sitting:
  bench/usage.py   2 uvicorn workers: ingestion (1 and 10 customers per 1,000-event batch), GraphQL usageRecord,
                   authorize + record pairs (4 customers of one partner / 8 partners), raw asyncpg baselines
  bench/ledger.py  ledger.post and customerCreditsRecharge at 8 writers over 1,000 accounts, against raw asyncpg
  bench/push.py    500 subscribers of one customer on 1 process; 2,000 over 100 customers on 2 processes + Redis
and prints each measure beside its target. Absolute rates depend on how busy the machine is: the table also
shows the ratios to raw asyncpg measured in the same run. `--quick` shortens every run (a smoke test, not a
measurement).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, summary: Path, *args: str) -> Any:
    print(f"\n=== bench/{script} {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, f"bench/{script}", *args, "--summary", str(summary)], cwd=ROOT)
    if done.returncode != 0 or not summary.exists():
        print(f"bench/{script} failed (exit {done.returncode})", flush=True)
        return None
    return json.loads(summary.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs: checks the benchmarks work, measures little")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="partnerdesk-bench-all-"))
    q = args.quick
    usage = run(
        "usage.py",
        work / "usage.json",
        "--workers",
        "2",
        "--ingest-spread",
        "1,10",
        *(["--events", "8000", "--graphql-events", "4000", "--pairs", "400"] if q else []),
    )
    ledger = run(
        "ledger.py",
        work / "ledger.json",
        "--writers",
        "8",
        "--shapes",
        "spread",
        *(["--transfers", "300"] if q else ["--rounds", "3"]),
    )
    push_one = run(
        "push.py",
        work / "push1.json",
        "--servers",
        "1",
        "--customers",
        "1",
        "--subscribers",
        "500",
        "--sessions",
        "50",
        *(["--seconds", "5", "--baseline-seconds", "0"] if q else ["--seconds", "20"]),
    )
    push_two = run(
        "push.py",
        work / "push2.json",
        *(["--subscribers", "400", "--customers", "20", "--seconds", "5", "--baseline-seconds", "0"] if q else []),
    )

    rows: list[tuple[str, str, str, bool | None]] = []

    def phase(name: str) -> dict[str, Any] | None:
        return next((p for p in usage or [] if p["phase"] == name), None)

    def add(measure: str, result: str, target: str, met: bool | None) -> None:
        rows.append((measure, result, target, met))

    for name, label in (("pairs-1p", "8 clients, 4 customers of one partner"), ("pairs-8p", "8 clients, 8 partners")):
        p = phase(name)
        if p:
            ok = p["rate"] >= 400 and (name != "pairs-1p" or p["p99_ms"] <= 60)
            result = f"{p['rate']:,.0f}/s, p99 {p['p99_ms']:.0f} ms, {p['vs_raw'] or 0:.2f} of raw"
            add(
                f"authorize + record pairs, {label}",
                result,
                "≥ 400/s" + (", p99 ≤ 60 ms" if name == "pairs-1p" else ""),
                ok,
            )
    for name, label, floor in (("ingest-c1", "1 customer", 0.6), ("ingest-c10", "10 customers", 0.4)):
        p = phase(name)
        if p:
            ok = p["vs_raw"] is not None and p["vs_raw"] >= floor and (name != "ingest-c1" or p["rate"] >= 25_000)
            target = ("≥ 25,000 events/s and " if name == "ingest-c1" else "") + f"≥ {floor} of raw"
            add(
                f"ingestion, 1,000-event batches, {label} per batch",
                f"{p['rate']:,.0f}/s, {p['vs_raw']:.2f} of raw",
                target,
                ok,
            )
    p = phase("graphql-c10")
    if p:
        add("GraphQL usageRecord, 1,000-event batches", f"{p['rate']:,.0f} events/s", "≥ 8,000/s", p["rate"] >= 8000)
    if push_one:
        add(
            "push, 500 subscribers of one customer, 1 process",
            f"p99 {push_one['p99_ms']:.0f} ms (upper bound {push_one['p99_upper_ms']:.0f} ms)",
            "p99 ≤ 150 ms from the change request",
            push_one["p99_upper_ms"] <= 150,
        )
    if push_two:
        add(
            f"push, {push_two['subscribers']:,} subscribers over {push_two['customers']} customers, 2 processes",
            f"p99 {push_two['p99_ms']:.0f} / {push_two['p99_upper_ms']:.0f} ms, {push_two['kb_per_idle_subscription']:.1f} KB",
            "not worse than 110 ms, 23 KB",
            push_two["p99_upper_ms"] <= 110 and push_two["kb_per_idle_subscription"] <= 23.5,
        )
    for case, floor in (("post", 0.6), ("recharge", 0.35)):
        r = next((x for x in ledger or [] if x["case"] == case and x["writers"] == 8), None)
        if r:
            add(
                f"ledger {case} at 8 writers",
                f"{r['rate']:,.0f}/s, {r['vs_raw']:.2f} of raw",
                f"≥ {floor} of raw",
                r["vs_raw"] >= floor,
            )

    print("\n" + ("QUICK RUN (smoke test, not a measurement)\n" if q else ""))
    widths = (max(len(r[0]) for r in rows) if rows else 10, max(len(r[1]) for r in rows) if rows else 10, 40)
    header = ("measure", "result", "target")
    print(f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:<{widths[2]}}  met")
    print("-" * (sum(widths) + 10))
    for measure, result, target, met in rows:
        print(f"{measure:<{widths[0]}}  {result:<{widths[1]}}  {target:<{widths[2]}}  {'yes' if met else 'NO'}")
    missing = [
        n for n, v in (("usage", usage), ("ledger", ledger), ("push 1", push_one), ("push 2", push_two)) if v is None
    ]
    if missing:
        print(f"\nfailed to run: {', '.join(missing)}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
