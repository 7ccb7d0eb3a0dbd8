"""Broker set-up: Redis in production, a StubBroker drained on the app's own event loop when embedded.

Tortoise allows one global context per process, and Dramatiq runs async actors on a loop thread of its own, so:
- `partnerdesk worker` (Redis) initialises Tortoise on Dramatiq's loop thread (`TortoiseMiddleware`);
- the embedded server never starts Dramatiq's worker threads: `EmbeddedConsumer` awaits the actors' coroutines
  on the web server's loop, where Tortoise is already initialised.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import dramatiq
import structlog
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, Middleware

log = structlog.get_logger("partnerdesk.jobs")
_configured: dict[str, Any] = {}


class TortoiseMiddleware(Middleware):
    """Opens Tortoise on Dramatiq's event-loop thread when a worker boots; closes it on shutdown."""

    def __init__(self, tortoise_config: dict[str, Any]) -> None:
        self.tortoise_config = tortoise_config

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from tortoise import Tortoise

        loop_thread = get_event_loop_thread()
        assert loop_thread is not None, "add AsyncIO before TortoiseMiddleware"
        loop_thread.run_coroutine(Tortoise.init(config=self.tortoise_config, _enable_global_fallback=True))

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from tortoise import Tortoise

        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(Tortoise.close_connections())


def configure(
    redis_url: str | None, tortoise_config: dict[str, Any] | None = None, namespace: str = "dramatiq"
) -> dramatiq.Broker:
    """Sets the global broker once per process (later calls return the same one)."""
    if "broker" in _configured:
        return _configured["broker"]
    broker: dramatiq.Broker
    if redis_url:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=redis_url, namespace=namespace)
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(AsyncIO())
    if redis_url and tortoise_config is not None:
        broker.add_middleware(TortoiseMiddleware(tortoise_config))
    dramatiq.set_broker(broker)
    _configured["broker"] = broker
    return broker


def is_embedded() -> bool:
    return isinstance(_configured.get("broker"), StubBroker)


class EmbeddedConsumer:
    """Drains a StubBroker on the current event loop, with Dramatiq-like retries (exponential backoff)."""

    def __init__(self, broker: StubBroker, *, poll_interval: float = 0.05, max_retries: int = 5) -> None:
        self.broker = broker
        self.poll_interval = poll_interval
        self.max_retries = max_retries
        self._task: asyncio.Task[None] | None = None
        self.dead_letters: list[dramatiq.Message[Any]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="embedded-dramatiq")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def drain(self) -> int:
        """Runs every message queued right now (and delayed ones that are due); returns how many ran."""
        ran = 0
        for queue_name in list(self.broker.queues):
            queue = self.broker.queues[queue_name]
            while not queue.empty():
                data = queue.get_nowait()
                message = dramatiq.Message.decode(data)
                await self._process(message)
                queue.task_done()
                ran += 1
        return ran

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:  # the loop must survive a broken message
                log.exception("embedded_consumer_failed")
            await asyncio.sleep(self.poll_interval)

    async def _process(self, message: dramatiq.Message[Any]) -> None:
        actor = self.broker.get_actor(message.actor_name)
        fn = getattr(actor.fn, "__wrapped__", actor.fn)
        try:
            result = fn(*message.args, **message.kwargs)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            retries = message.options.get("retries", 0) + 1
            log.exception("job_failed", actor=message.actor_name, message_id=message.message_id, retries=retries)
            if retries > self.max_retries:
                self.dead_letters.append(message)
                return
            retry = message.copy(options={**message.options, "retries": retries})
            delay_ms = min(100 * 2**retries, 30_000)
            asyncio.get_running_loop().call_later(
                delay_ms / 1000, lambda: self.broker.queues[message.queue_name].put_nowait(retry.encode())
            )
