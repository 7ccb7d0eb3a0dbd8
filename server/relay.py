"""The outbox relay: after commit, hands each outbox event to its jobs and to live subscribers, in id order.

One relay is active per deployment (a lease), which keeps per-customer order; the others stand by. Delivery is
at least once: a crash between dispatch and marking republishes, and every consumer is idempotent. On PostgreSQL
the relay LISTENs for the NOTIFY that each transaction writing events sends at commit, and drains at once; it
still polls (every 50 ms without a listener, every second with one) so nothing waits on a lost notification.
Under load it coalesces: after a drain that found events it lets `coalesce` seconds of commits gather before the
next, so a busy database sees one read and one mark per batch instead of one per call, while the first event after a
quiet spell still goes out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from domain.events import services as events
from domain.events.models import OutboxEvent
from jobs.registry import actors_for
from server.listen import listen_forever
from server.locks import Leases

log = structlog.get_logger("partnerdesk.relay")
Publisher = Callable[[OutboxEvent], Awaitable[None]]


class Relay:
    def __init__(
        self,
        leases: Leases,
        publish: Publisher | None = None,
        interval: float = 0.05,
        wake_dsn: str | None = None,
        listening_interval: float = 1.0,
        coalesce: float = 0.01,
    ) -> None:
        """`wake_dsn`: a PostgreSQL URL to LISTEN on for commits that wrote events; while listening the relay
        drains on each notification and polls only every `listening_interval`, otherwise every `interval`."""
        self.leases = leases
        self.publish = publish
        self.interval = interval
        self.listening_interval = listening_interval
        self.coalesce = coalesce
        self.wake_dsn = wake_dsn
        self._wake = asyncio.Event()
        self._listening = False
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    async def drain_once(self, limit: int = 200) -> int:
        """Dispatches the pending events (if this process holds the relay lease); returns how many."""
        if not await self.leases.acquire("relay", ttl_seconds=10):
            return 0
        batch = await events.pending(limit)
        for event in batch:
            for actor, key in actors_for(event.topic):
                actor.send(event.payload[key] if key is not None else events.envelope(event))
            if self.publish is not None:
                try:
                    await self.publish(event)
                except Exception:  # live views are best effort; jobs must not wait for them
                    log.exception("publish_failed", topic=event.topic)
        await events.mark_published([e.id for e in batch])
        return len(batch)

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before draining: a commit notified during the drain wakes the next round
            drained = 0
            try:
                while (drained := await self.drain_once()) == 200:
                    pass
            except Exception:
                log.exception("relay_failed")
            if drained:  # busy: let the next commits gather (they set the wake meanwhile)
                await asyncio.sleep(self.coalesce)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.listening_interval if self._listening else self.interval):
                    await self._wake.wait()

    async def _listen(self) -> None:
        """Keeps a LISTEN connection open (reconnecting after failures, polling fast meanwhile)."""

        def up() -> None:
            self._listening = True
            self._wake.set()  # whatever committed while nobody listened

        def down() -> None:
            self._listening = False

        await listen_forever(
            str(self.wake_dsn), events.WAKE_CHANNEL, lambda _: self._wake.set(), up=up, down=down, check_every=30
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")
        if self.wake_dsn:
            self._listener = asyncio.create_task(self._listen(), name="outbox-relay-listen")

    async def stop(self) -> None:
        for task in (self._listener, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
