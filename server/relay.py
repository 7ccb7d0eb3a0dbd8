"""The outbox relay: after commit, hands each outbox event to its jobs and to live subscribers, in id order.

One relay is active per deployment (a lease), which keeps per-customer order; the others stand by. Delivery is
at least once: a crash between dispatch and marking republishes, and every consumer is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from domain.events import services as events
from domain.events.models import OutboxEvent
from jobs.registry import actors_for
from server.locks import Leases

log = structlog.get_logger("partnerdesk.relay")
Publisher = Callable[[OutboxEvent], Awaitable[None]]


class Relay:
    def __init__(self, leases: Leases, publish: Publisher | None = None, interval: float = 0.05) -> None:
        self.leases = leases
        self.publish = publish
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def drain_once(self, limit: int = 200) -> int:
        """Dispatches the pending events (if this process holds the relay lease); returns how many."""
        if not await self.leases.acquire("relay", ttl_seconds=10):
            return 0
        batch = await events.pending(limit)
        for event in batch:
            for actor, key in actors_for(event.topic):
                actor.send(event.payload[key])
            if self.publish is not None:
                try:
                    await self.publish(event)
                except Exception:  # live views are best effort; jobs must not wait for them
                    log.exception("publish_failed", topic=event.topic)
        await events.mark_published([e.id for e in batch])
        return len(batch)

    async def _run(self) -> None:
        while True:
            try:
                while await self.drain_once() == 200:
                    pass
            except Exception:
                log.exception("relay_failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
