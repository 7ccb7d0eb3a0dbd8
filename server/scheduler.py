"""Periodic jobs. Every process may run a scheduler: each (job, time slot) is claimed once across processes (a Redis
key with NX), so two schedulers enqueue a slot once; the jobs are idempotent besides."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import structlog

from jobs.registry import schedule
from server.locks import Leases

log = structlog.get_logger("partnerdesk.scheduler")


class Scheduler:
    def __init__(self, leases: Leases, jobs: list[tuple[str, Any, int]] | None = None, tick: float = 1.0) -> None:
        self.leases = leases
        self.jobs = jobs if jobs is not None else schedule()
        self.tick = tick
        self._task: asyncio.Task[None] | None = None

    async def tick_once(self, now: float | None = None) -> list[str]:
        """Enqueues every job whose current slot nobody has claimed yet; returns their names."""
        moment = time.time() if now is None else now
        sent = []
        for name, actor, every in self.jobs:
            slot = int(moment // every)
            if await self.leases.claim_once(f"{name}:{slot}", ttl_seconds=every * 2):
                actor.send()
                sent.append(name)
        await self.leases.set_value("scheduler:last_tick", datetime.fromtimestamp(moment, UTC).isoformat())
        return sent

    async def _run(self) -> None:
        while True:
            try:
                await self.tick_once()
            except Exception:
                log.exception("scheduler_tick_failed")
            await asyncio.sleep(self.tick)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
