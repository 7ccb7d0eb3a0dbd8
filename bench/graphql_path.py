"""The server's cost per GraphQL request outside the domain: everything `usageAuthorize` and `usageRecord` cost
when the domain services answer at once.

    .venv/bin/python bench/graphql_path.py [--viewer session|apikey] [--pairs 4000] [--clients 8] [--profile FILE]

It serves the real app (`server.app:create_app`, every middleware, the same uvicorn options as `partnerdesk serve`)
from one uvicorn process on a throwaway SQLite file, with two things replaced: `domain.usage.holds.usage_authorize`
and `domain.usage.services.usage_record` return a hold / a result without touching the database, and the bearer
token the client sends is put in the process's token cache (AUTH_CACHE_SECONDS) as a platform admin's session or a
customer's API key (then the per-key rate limiter counts every request, in memory or in Redis with REDIS_URL).
The client sends the same `usageAuthorize` + `usageRecord(holdId)` pairs as `bench/usage.py`'s pairs phases, each
client on a keep-alive connection, and reads the server's CPU from /proc: server µs per request is the transport,
middleware, authentication, GraphQL parse/validate/execute, argument conversion, the resolvers' own work and
serialisation, i.e. what is left per call once the domain's SQL costs nothing. `--profile FILE` samples the server
with py-spy (raw format) and prints the busiest frames.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._http import Connection  # noqa: E402
from bench._pg import free_port  # noqa: E402
from bench._proc import cpu_seconds  # noqa: E402

TOKEN_ENV = "BENCH_STUB_TOKEN"
VIEWER_ENV = "BENCH_STUB_VIEWER"
CUSTOMER_GID = "Q3VzdG9tZXI6MQ=="  # Customer:1
RECORD = (
    "mutation($i: UsageRecordInput!) { usageRecord(input: $i) "
    "{ accepted duplicates rejected { index code field message } errors { code message } } }"
)
AUTHORIZE = "mutation($i: UsageAuthorizeInput!) { usageAuthorize(input: $i) { hold { id } errors { code message } } }"


# ---------------------------------------------------------------- the server side (imported by uvicorn)


def create_app() -> Any:
    """The real app with the two usage services answering from memory and the client's token cached."""
    from domain.access import token_cache
    from domain.accounts.models import Role
    from domain.usage import holds, services
    from domain.usage.models import Funding, HoldStatus, UnitType, UsageHold
    from domain.viewer import Viewer
    from server.app import create_app as real_create_app

    counter = iter(range(1, 1 << 62))

    async def usage_authorize(viewer: Viewer, command: Any) -> UsageHold:
        at = datetime.now(UTC)
        return UsageHold(
            id=next(counter),
            customer_id=1,
            unit_type=UnitType.VOICE_MINUTES,
            estimated_quantity=Decimal(2),
            amount=Decimal("0.1"),
            credits=Decimal(0),
            funding=Funding.WALLET,
            status=HoldStatus.ACTIVE,
            expires_at=at + timedelta(minutes=15),
            created_at=at,
        )

    async def usage_record(viewer: Viewer, command: Any) -> services.RecordResult:
        return services.RecordResult(accepted=len(command.events))

    holds.usage_authorize = usage_authorize  # type: ignore[assignment]
    services.usage_record = usage_record  # type: ignore[assignment]

    if os.environ.get(VIEWER_ENV) == "apikey":
        viewer = Viewer(
            role=Role.CUSTOMER_ADMIN,
            partner_id=1,
            customer_id=1,
            api_key_id=1,
            api_permissions=frozenset({"READ", "WRITE"}),
            rate_limit_per_minute=10**9,
            label="API key bench",
        )
    else:
        viewer = Viewer(user_id=1, session_id=1, role=Role.PLATFORM_ADMIN, label="bench admin")
    token_cache.tokens.put(os.environ[TOKEN_ENV], viewer, 10**7, token_cache.tokens.generation)
    return real_create_app()


# ---------------------------------------------------------------- the client side


@contextlib.contextmanager
def serve(viewer: str, token: str, database: Path) -> Any:
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "test",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite://{database}",
        "BACKGROUND_TASKS": "false",
        "AUTH_CACHE_SECONDS": "3600",
        TOKEN_ENV: token,
        VIEWER_ENV: viewer,
    }
    code = (
        "import uvicorn; uvicorn.run('bench.graphql_path:create_app', factory=True, host='127.0.0.1', "
        f"port={port}, log_level='warning', ws='wsproto', ws_per_message_deflate=False, proxy_headers=False)"
    )
    log = tempfile.NamedTemporaryFile(prefix="partnerdesk-bench-path-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"uvicorn exited:\n{Path(log.name).read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                asyncio.run(asyncio.open_connection("127.0.0.1", port))
                break
            if time.monotonic() > deadline:
                raise SystemExit("uvicorn did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        tail = Path(log.name).read_text(errors="replace")[-3000:]
        if tail.strip():
            print(f"--- server log tail ---\n{tail}\n---", flush=True)
        Path(log.name).unlink(missing_ok=True)


async def run_pairs(base: str, token: str, pairs: int, clients: int) -> None:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    todo = iter(range(pairs))

    async def client() -> None:
        connection = Connection(base)
        try:
            for _ in todo:
                variables = {
                    "i": {
                        "customerId": CUSTOMER_GID,
                        "unitType": "VOICE_MINUTES",
                        "estimatedQuantity": "2",
                        "idempotencyKey": uuid.uuid4().hex,
                    }
                }
                status, body = await connection.post_json(
                    "/graphql", {"query": AUTHORIZE, "variables": variables}, headers
                )
                if status != 200 or body.get("errors"):
                    raise RuntimeError(f"authorize: HTTP {status} {str(body)[:300]}")
                event = {
                    "idempotencyKey": uuid.uuid4().hex,
                    "customerId": CUSTOMER_GID,
                    "unitType": "VOICE_MINUTES",
                    "quantity": "1.5",
                    "occurredAt": datetime.now(UTC).isoformat(),
                    "holdId": body["data"]["usageAuthorize"]["hold"]["id"],
                }
                status, body = await connection.post_json(
                    "/graphql", {"query": RECORD, "variables": {"i": {"events": [event]}}}, headers
                )
                if status != 200 or body.get("errors") or body["data"]["usageRecord"]["accepted"] != 1:
                    raise RuntimeError(f"record: HTTP {status} {str(body)[:300]}")
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))


def top_frames(path: Path, count: int = 40) -> None:
    inclusive: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1].startswith("Runner.run (asyncio/runners.py"):
            continue  # idle in the event loop
        total += int(n)
        innermost[frames[-1].rpartition(":")[0]] += int(n)
        for frame in set(frames):
            inclusive[frame] += int(n)
    print(f"py-spy: {total} busy samples\n  innermost (function, file):")
    for frame, n in innermost.most_common(count):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("  inclusive:")
    for frame, n in inclusive.most_common(count + 30):
        print(f"  {100 * n / total:5.1f}%  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewer", choices=("session", "apikey"), default="session")
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (the median is reported)")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the server, written here")
    args = parser.parse_args()

    token = "pds_bench_" + uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="partnerdesk-bench-path-") as tmp:
        with serve(args.viewer, token, Path(tmp) / "db.sqlite3") as (base, proc):
            asyncio.run(run_pairs(base, token, 200, args.clients))  # warm-up
            spy = None
            if args.profile:
                exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                spy = subprocess.Popen(
                    [
                        exe,
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--format",
                        "raw",
                        "--rate",
                        "500",
                        "-o",
                        str(args.profile),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1)
            per_request, rates = [], []
            for _ in range(args.rounds):
                cpu, started = cpu_seconds([proc.pid]), time.monotonic()
                asyncio.run(run_pairs(base, token, args.pairs, args.clients))
                elapsed, used = time.monotonic() - started, cpu_seconds([proc.pid]) - cpu
                per_request.append(1e6 * used / (2 * args.pairs))
                rates.append(args.pairs / elapsed)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
    print(
        json.dumps(
            {
                "viewer": args.viewer,
                "server_us_per_request": round(statistics.median(per_request)),
                "rounds_us": [round(x) for x in per_request],
                "pairs_per_s": round(statistics.median(rates)),
            }
        )
    )
    if args.profile:
        top_frames(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
