"""Dramatiq wiring: actors reach Tortoise both embedded (StubBroker drained on the app loop) and in a real
`dramatiq` worker process fed through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest

from domain.accounts.models import Session
from jobs.broker import EmbeddedConsumer
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
        for _ in range(200):
            if not await Session.filter(id=expired.id).exists():
                break
            await asyncio.sleep(0.1)
        assert not await Session.filter(id=expired.id).exists(), "the worker did not run the job"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
