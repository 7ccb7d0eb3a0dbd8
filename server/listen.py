"""A PostgreSQL LISTEN kept open on a connection of its own, for the outbox relay's wake-ups and the live fan-out
without Redis: reconnects after failures, and notices a dead connection by a periodic round trip."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog

from server.settings import asyncpg_connect_kwargs

log = structlog.get_logger("partnerdesk.listen")


async def listen_forever(
    database_url: str,
    channel: str,
    received: Callable[[str], None],
    *,
    up: Callable[[], None] = lambda: None,
    down: Callable[[], None] = lambda: None,
    check_every: float = 15.0,
) -> None:
    """Calls `received(payload)` for each notification on `channel`, `up()` each time it is listening again and
    `down()` each time it stopped; runs until cancelled."""
    import asyncpg

    connect = asyncpg_connect_kwargs(database_url)  # the pool's host, credentials and TLS settings

    def on_notification(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        received(payload)

    while True:
        connection = None
        try:
            connection = await asyncpg.connect(**connect, timeout=10)
            await connection.add_listener(channel, on_notification)
            up()
            while True:
                await asyncio.sleep(check_every)
                await connection.execute("SELECT 1", timeout=10)  # notices a dead connection
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("listen_failed", channel=channel, exc_info=True)
        finally:
            down()
            if connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 5)
        await asyncio.sleep(1)
