"""Runs the audit sequencer (domain/audit/sequencer.py) in the background of an API process.

It polls the backlog every `interval` (an index-only read when there is none) and links what it finds, so a
committed event is part of its chain within about that long. Any number of processes may run it: each chain is
sequenced by whoever holds its head row (`SKIP LOCKED`), the others skip it. A deployment lease keeps the polling
to one process when they share Redis.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from domain.audit.sequencer import sequence_pending
from server.locks import Leases

log = structlog.get_logger("partnerdesk.sequencer")


class AuditSequencer:
    def __init__(self, leases: Leases, interval: float = 0.2) -> None:
        self.leases = leases
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        if not await self.leases.acquire("audit-sequencer", ttl_seconds=10):
            return 0
        return await sequence_pending()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("audit_sequencer_failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-sequencer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
