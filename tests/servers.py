"""Real server processes for end-to-end tests: a freshly migrated database and uvicorn on loopback ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import _BASE_URL, IS_POSTGRES, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blocking(coroutine: Any) -> Any:
    """Runs a coroutine to completion from sync code, even when called inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({"APP_ENV": "test", "LOG_LEVEL": "WARNING", "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "1024"})
    env.update(extra)
    return env


@contextmanager
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """A new, migrated database of the kind the suite runs on (its own PostgreSQL database, or a SQLite file)."""
    if IS_POSTGRES:
        import asyncpg

        name = f"partnerdesk_e2e_{uuid.uuid4().hex[:8]}"
        admin = _BASE_URL.replace("postgres://", "postgresql://", 1)

        async def run(sql: str) -> None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        blocking(run(f'CREATE DATABASE "{name}"'))
        url = f"{_BASE_URL.rpartition('/')[0]}/{name}"
    else:
        url = f"sqlite://{tmp_path / 'e2e.sqlite3'}"
    subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"],
        cwd=ROOT,
        env=base_env(DATABASE_URL=url),
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield url
    finally:
        if IS_POSTGRES:
            blocking(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def live_server(database_url: str, log_dir: Path, **env: str) -> Iterator[str]:
    """uvicorn on a free loopback port; yields its base URL and stops it afterwards."""
    port = free_port()
    log_path = log_dir / f"uvicorn-{port}.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
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
                "--ws",
                "wsproto",  # as `partnerdesk serve` runs
                "--ws-per-message-deflate",
                "false",
                "--no-proxy-headers",  # as `partnerdesk serve` runs: the app applies TRUSTED_PROXIES itself
            ],
            cwd=ROOT,
            env=base_env(DATABASE_URL=database_url, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None, f"uvicorn exited:\n{log_path.read_text()}"
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"uvicorn did not start:\n{log_path.read_text()}"
                time.sleep(0.1)
            yield base
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def create_admin(database_url: str, email: str = "ops@example.com", password: str = "Ops-pass-1") -> tuple[str, str]:
    subprocess.run(
        [sys.executable, "-m", "server.cli", "admin", "create", "--email", email, "--password", password],
        cwd=ROOT,
        env=base_env(DATABASE_URL=database_url),
        check=True,
        capture_output=True,
        timeout=60,
    )
    return email, password


_SET_FEATURES = """
import asyncio, json, sys
from tortoise import Tortoise
from domain.features.models import FeatureToggles
from server.settings import get_settings

async def main(url, customer_id, toggles):
    await Tortoise.init(config=get_settings().tortoise_config(url))
    try:
        await FeatureToggles.bulk_create([FeatureToggles(customer_id=customer_id)], ignore_conflicts=True)
        await FeatureToggles.filter(customer_id=customer_id).update(**toggles)
    finally:
        await Tortoise.close_connections()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])))
"""


def set_features(database_url: str, customer_pk: int, **toggles: bool) -> None:
    """Switches a customer's feature toggles in a live server's database (no mutation does that yet)."""
    subprocess.run(
        [sys.executable, "-c", _SET_FEATURES, database_url, str(customer_pk), json.dumps(toggles)],
        cwd=ROOT,
        env=base_env(DATABASE_URL=database_url),
        check=True,
        capture_output=True,
    )
