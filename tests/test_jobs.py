"""Dramatiq wiring: actors reach Tortoise both embedded (StubBroker drained on the app loop) and in a real
`dramatiq` worker process fed through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dramatiq
import pytest

from domain.accounts.models import Session
from jobs.broker import EmbeddedConsumer
from server.relay import Relay
from tests.conftest import REDIS_URL, ROOT, TEST_DATABASE_URL, Factory


async def _expired_session(factory: Factory) -> Session:
    _, owner = await factory.partner()
    return await Session.create(
        token_hash=os.urandom(16).hex(), user=owner, expires_at=datetime.now(UTC) - timedelta(days=3)
    )


async def test_embedded_consumer_runs_async_actor_against_the_database(app, factory: Factory) -> None:
    # given
    from jobs.maintenance import purge_expired_sessions

    expired = await _expired_session(factory)
    broker = app.state.broker
    consumer = EmbeddedConsumer(broker)
    # when
    purge_expired_sessions.send()
    ran = await consumer.drain()
    # then
    assert ran == 1
    assert not await Session.filter(id=expired.id).exists()


async def test_embedded_consumer_retries_a_failing_actor_then_dead_letters(app) -> None:
    # given
    calls: list[int] = []

    @dramatiq.actor(queue_name="test-failures", actor_name="always_fails_for_test")
    async def always_fails() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    consumer = EmbeddedConsumer(app.state.broker, max_retries=2)
    # when
    always_fails.send()
    for _ in range(40):
        await consumer.drain()
        if consumer.dead_letters:
            break
        await asyncio.sleep(0.05)
    # then
    assert len(calls) == 3
    assert [m.actor_name for m in consumer.dead_letters] == ["always_fails_for_test"]


@pytest.mark.redis
async def test_redis_worker_process_runs_actor_against_the_database(factory: Factory) -> None:
    # given a real `dramatiq` worker process on Redis and the test database
    from dramatiq.brokers.redis import RedisBroker

    expired = await _expired_session(factory)
    namespace = f"pd-test-{os.getpid()}"
    env = {
        **os.environ,
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": REDIS_URL or "",
        "APP_ENV": "test",
        "DRAMATIQ_NAMESPACE": namespace,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "server.worker", "--processes", "1", "--threads", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        broker = RedisBroker(url=REDIS_URL, namespace=namespace)
        # when
        broker.enqueue(
            dramatiq.Message(
                queue_name="maintenance",
                actor_name="purge_expired_sessions",
                args=(),
                kwargs={},
                options={},
            )
        )
        # then
        for _ in range(600):  # a worker starting on a busy 2-core CI machine can take a while
            if not await Session.filter(id=expired.id).exists():
                break
            await asyncio.sleep(0.1)
        done = not await Session.filter(id=expired.id).exists()
    finally:
        # the master relays SIGTERM to its worker processes; signalling the whole group too gives each worker a
        # second one, on which dramatiq exits without stopping its consumer threads (and hangs until SIGKILL)
        os.kill(worker.pid, signal.SIGTERM)
        try:
            output = worker.communicate(timeout=15)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            output = worker.communicate()[0].decode(errors="replace")
    assert done, f"the worker did not run the job:\n{output[-3000:]}"


@pytest.mark.redis
def test_one_sigterm_to_partnerdesk_worker_stops_all_of_its_processes(tmp_path: Path) -> None:
    # given `partnerdesk worker` running on Redis, its worker process up
    env = {
        **os.environ,
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": REDIS_URL or "",
        "APP_ENV": "test",
        "DRAMATIQ_NAMESPACE": f"pd-stop-{os.getpid()}",
    }
    log = (tmp_path / "worker.log").open("w+")
    worker = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "worker", "--processes", "1", "--threads", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "ready for action" not in (tmp_path / "worker.log").read_text():
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        # when the process we started (what a supervisor knows) gets one SIGTERM
        os.kill(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        # then no process of its group is left behind
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):
            os.killpg(worker.pid, 0)
    finally:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


async def _listening(relay: Relay) -> None:
    """Until the relay LISTENs (its first drain happened when the listener came up) and has settled."""
    for _ in range(100):
        if relay._listening:
            break
        await asyncio.sleep(0.05)
    assert relay._listening
    await asyncio.sleep(0.2)


@pytest.mark.postgres
async def test_the_relay_wakes_on_commit_instead_of_polling(database: str) -> None:
    from tortoise.transactions import in_transaction

    from domain.events import services as events
    from server.locks import Leases
    from server.relay import Relay

    published: list[str] = []
    arrived = asyncio.Event()

    async def publish(event: object) -> None:
        published.append(event.topic)  # type: ignore[attr-defined]
        arrived.set()

    # given a relay that would poll only every minute, listening for commits
    relay = Relay(Leases(None), publish=publish, interval=60, listening_interval=60, wake_dsn=TEST_DATABASE_URL)
    relay.start()
    try:
        await _listening(relay)
        published.clear()
        arrived.clear()
        # a rolled-back transaction wakes nobody and publishes nothing
        with pytest.raises(RuntimeError):
            async with in_transaction():
                await events.emit(events.ACCESS_REVOKED, customer_id=None)
                raise RuntimeError("rolled back")
        await asyncio.sleep(0.5)
        assert published == []
        # when a transaction writing an event commits
        async with in_transaction():
            await events.emit(events.ACCESS_REVOKED, customer_id=None)
        # then the relay hands it on within a moment, not a minute
        await asyncio.wait_for(arrived.wait(), 5)
        assert published == [events.ACCESS_REVOKED]
    finally:
        await relay.stop()


@pytest.mark.postgres
async def test_a_busy_relay_reads_and_marks_commits_in_batches_and_an_idle_one_at_once(database: str) -> None:
    from tortoise.transactions import in_transaction

    from domain.events import services as events
    from server.locks import Leases
    from server.relay import Relay

    drains: list[int] = []
    arrived: list[float] = []

    class Counting(Relay):
        async def drain_once(self, limit: int = 200) -> int:
            n = await super().drain_once(limit)
            if n:
                drains.append(n)
            return n

    async def publish(event: object) -> None:
        arrived.append(asyncio.get_running_loop().time())

    # given a listening relay that lets 400 ms of commits gather after a drain that found events (long, so that
    # a loaded machine's latency cannot pass for it)
    relay = Counting(
        Leases(None), publish=publish, interval=60, listening_interval=60, wake_dsn=TEST_DATABASE_URL, coalesce=0.4
    )
    relay.start()
    try:
        await _listening(relay)
        await asyncio.sleep(0.5)  # past the window of whatever its first drain found
        drains.clear()
        # when one event commits after a quiet spell, it goes out at once, not after the window
        started = asyncio.get_running_loop().time()
        async with in_transaction():
            await events.emit(events.ACCESS_REVOKED, customer_id=None)
        for _ in range(100):
            if arrived:
                break
            await asyncio.sleep(0.005)
        assert arrived and arrived[0] - started < 0.3
        # when 40 transactions commit one after another right after it
        for _ in range(40):
            async with in_transaction():
                await events.emit(events.ACCESS_REVOKED, customer_id=None)
        for _ in range(300):
            if sum(drains) == 41:
                break
            await asyncio.sleep(0.01)
        # then all 41 went out, read in far fewer drains than commits
        assert sum(drains) == 41
        assert len(drains) <= 10, drains
    finally:
        await relay.stop()
