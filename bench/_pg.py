"""A throwaway PostgreSQL cluster and fresh databases for benchmarks (shared by the bench scripts).

`throwaway_postgres()` runs initdb into a temp dir (as user postgres when we are root: initdb refuses root), starts
the server on a free loopback port with durable settings (fsync and synchronous_commit stay on) and removes
everything afterwards. `fresh_database()` creates a database on a server, runs the project's migrations and drops it.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if candidates:
        return candidates[-1]
    found = shutil.which("initdb")
    if found is None:
        raise SystemExit("PostgreSQL not found: install it or set DATABASE_URL")
    return Path(found).parent


def as_postgres(*cmd: str) -> None:
    """Runs a server binary as user postgres when we are root."""
    if os.getuid() == 0:
        args = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(shlex.quote(c) for c in cmd)]
    else:
        args = list(cmd)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


@contextmanager
def throwaway_postgres(settings: dict[str, str] | None = None) -> Iterator[str]:
    """A fresh cluster on a free loopback port with production durability; yields its server URL
    (`postgres://postgres@127.0.0.1:PORT/postgres`). `settings` adds `-c name=value` options."""
    binaries = pg_bin()
    work = Path(tempfile.mkdtemp(prefix="partnerdesk-pg-"))
    work.chmod(0o755)
    data = work / "pg"
    data.mkdir()
    if os.getuid() == 0:
        shutil.chown(data, "postgres")
    port = free_port()
    options = {"listen_addresses": "127.0.0.1", "max_connections": "200", **(settings or {})}
    flags = f"-p {port} -k {data} " + " ".join(f"-c {k}={v}" for k, v in options.items())
    try:
        as_postgres(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        as_postgres(
            str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "server.log"), "-o", flags, "start"
        )
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            try:
                as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
            except subprocess.CalledProcessError:
                as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(work, ignore_errors=True)


def _admin_sql(server_url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(server_url.replace("postgres://", "postgresql://", 1))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def fresh_database(server_url: str, prefix: str = "partnerdesk_bench", migrate: bool = True) -> Iterator[str]:
    """A new database on the server (migrated with the project's migrations unless told not to); dropped after."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin_sql(server_url, f'CREATE DATABASE "{name}"')
    url = f"{server_url.rpartition('/')[0]}/{name}"
    try:
        if migrate:
            env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
            subprocess.run(
                [sys.executable, "-m", "server.cli", "migrate"],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        yield url
    finally:
        _admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
