"""`partnerdesk` command line: serve, worker, migrate, seed-demo, admin create, audit verify | sequence, ledger verify."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
from tortoise import Tortoise

from server.bootstrap import bootstrap
from server.settings import Settings, get_settings


async def _with_db(settings: Settings, fn: Callable[[], Awaitable[Any]]) -> Any:
    await Tortoise.init(config=settings.tortoise_config(), _enable_global_fallback=True)
    try:
        return await fn()
    finally:
        await Tortoise.close_connections()


async def migrate(settings: Settings) -> None:
    from tortoise.migrations.api import migrate as run_migrations

    try:
        await run_migrations(config=settings.tortoise_config())
    finally:
        await Tortoise.close_connections()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(migrate(settings))
    print("migrations applied")
    return 0


def cmd_seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    from domain.demo.seed import seed_demo

    logins = asyncio.run(_with_db(settings, seed_demo))
    print(f"Demo logins (password for all: {logins[0].password}):")
    for entry in logins:
        note = f"  [{entry.repaired}]" if entry.repaired else ""
        print(f"  {entry.role:<16} {entry.login:<34} {entry.organization}{note}")
    return 0


def cmd_admin_create(settings: Settings, args: argparse.Namespace) -> int:
    from domain.accounts.commands import AdminCreate
    from domain.accounts.services import admin_create
    from domain.errors import DomainError
    from domain.viewer import Viewer

    command = AdminCreate(args.email, args.password)
    try:
        result = asyncio.run(_with_db(settings, lambda: admin_create(Viewer.system("cli"), command)))
    except DomainError as exc:
        for error in exc.errors:
            print(f"error: {error.field}: {error.message}", file=sys.stderr)
        return 2
    print(f"{'created' if result.created else 'exists'}: platform admin {result.user.email}")
    return 0


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from domain.audit.services import Backlog, ChainProblem, backlog, verify

    async def run() -> tuple[int, list[ChainProblem], Backlog]:
        checked, problems = await verify()
        return checked, problems, await backlog()

    checked, problems, pending = asyncio.run(_with_db(settings, run))
    for p in problems:
        print(f"TAMPERED chain={p.chain} seq={p.seq}: {p.message}")
    stalled = False
    if pending.events:
        age = pending.oldest.total_seconds() if pending.oldest is not None else 0.0
        stalled = age > args.max_backlog_seconds
        print(
            f"{'STALLED' if stalled else 'BACKLOG'}: {pending.events} event(s) not sequenced yet, the oldest "
            f"{age:.1f} s ago" + (" (is the sequencer running?)" if stalled else "")
        )
    print(f"{checked} audit events checked, {len(problems)} problem(s)")
    return 1 if problems or stalled else 0


def cmd_audit_sequence(settings: Settings, args: argparse.Namespace) -> int:
    from domain.audit.sequencer import sequence_pending

    linked = asyncio.run(_with_db(settings, sequence_pending))
    print(f"{linked} audit event(s) sequenced")
    return 0


def cmd_ledger_verify(settings: Settings, args: argparse.Namespace) -> int:
    from domain.ledger.services import verify

    checked, problems = asyncio.run(_with_db(settings, verify))
    for p in problems:
        print(f"MISMATCH {p.account_key or '(all accounts)'}: {p.message}")
    print(f"{checked} transfers checked, {len(problems)} problem(s)")
    return 1 if problems else 0


async def jobs_status(settings: Settings) -> dict[str, object]:
    import redis.asyncio as aioredis

    from domain.events.models import OutboxEvent
    from server.locks import Leases

    leases = Leases(settings.redis_url, settings.redis_key_prefix)
    status: dict[str, object] = {
        "broker": "redis" if settings.redis_url else "embedded (jobs run inside `partnerdesk serve`)",
        "outbox_pending": await OutboxEvent.filter(published_at=None).count(),
        "last_scheduler_tick": await leases.get_value("scheduler:last_tick") if settings.redis_url else "n/a",
    }
    if settings.redis_url:
        client = aioredis.from_url(settings.redis_url)
        ns = settings.dramatiq_namespace
        queues: dict[str, dict[str, int]] = {}
        for queue in sorted(q for q in dramatiq.get_broker().get_declared_queues() if not q.endswith((".DQ", ".XQ"))):
            queues[queue] = {
                "ready": await client.llen(f"{ns}:{queue}"),
                "delayed": await client.llen(f"{ns}:{queue}.DQ"),
                "dead_letters": await client.zcard(f"{ns}:{queue}.XQ"),
            }
        status["queues"] = queues
        await client.aclose()
    await leases.close()
    return status


def cmd_jobs_status(settings: Settings, args: argparse.Namespace) -> int:
    import json

    print(json.dumps(asyncio.run(_with_db(settings, lambda: jobs_status(settings))), indent=2))
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        # pushes are ~150 bytes: compression saves nothing and costs ~45 KB of zlib state per socket
        ws_per_message_deflate=False,
        # the least memory per idle socket (bench/push.py) and pings that drop dead peers (20 s, 20 s to answer)
        ws="wsproto",
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        # a frame over the cap is refused while it arrives (the live endpoint checks the same cap on every server)
        ws_max_size=settings.max_body_bytes,
        # the app reads X-Forwarded-For itself, from TRUSTED_PROXIES only (server/app.py)
        proxy_headers=False,
    )
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.redis_url:
        print("error: the standalone worker needs REDIS_URL; the embedded server runs jobs itself", file=sys.stderr)
        return 2
    command = [
        sys.executable,
        "-m",
        "dramatiq",
        "server.worker",
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
    ]
    # becomes the dramatiq master (no parent in between), so a SIGTERM to this process stops the workers gracefully
    os.execv(sys.executable, command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="partnerdesk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server (uvicorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(fn=cmd_serve)
    worker = sub.add_parser("worker", help="run Dramatiq workers (needs REDIS_URL)")
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=4)
    worker.set_defaults(fn=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    sub.add_parser("seed-demo", help="create demo data and print its logins").set_defaults(fn=cmd_seed_demo)
    admin = sub.add_parser("admin", help="platform administrators")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_sub.add_parser("create", help="create a platform admin (idempotent by email)")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.set_defaults(fn=cmd_admin_create)
    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="re-hash every audit chain; exit 1 on tampering or a backlog the sequencer left behind"
    )
    verify.add_argument(
        "--max-backlog-seconds",
        type=float,
        default=60.0,
        help="unsequenced events older than this mean the sequencer is not running (exit 1)",
    )
    verify.set_defaults(fn=cmd_audit_verify)
    audit_sub.add_parser(
        "sequence", help="link the events not sequenced yet into their chains (what the API processes do)"
    ).set_defaults(fn=cmd_audit_sequence)
    jobs = sub.add_parser("jobs", help="background jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_sub.add_parser("status", help="queue depths, dead letters, outbox backlog, last scheduler tick").set_defaults(
        fn=cmd_jobs_status
    )
    ledger = sub.add_parser("ledger", help="ledger tools")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_sub.add_parser("verify", help="recompute every balance from transfers; exit 1 on mismatch").set_defaults(
        fn=cmd_ledger_verify
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if args.command not in ("serve", "worker"):
        bootstrap(settings)
    return args.fn(settings, args)


if __name__ == "__main__":
    raise SystemExit(main())
