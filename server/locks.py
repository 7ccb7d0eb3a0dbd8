"""Leases shared by processes.

- With REDIS_URL: Redis `SET NX PX`, renewed by its holder.
- Without Redis, on PostgreSQL: session advisory locks on one connection of this process's own, so processes
  sharing a database (`partnerdesk serve --workers N`) still elect one relay, one audit sequencer and one scheduler.
  A lock lives as long as its connection: a process that dies or loses the connection frees it at once.
- Otherwise (embedded SQLite: one process) in-process.

Answers are remembered for a moment (`recheck_seconds`, and never longer than a third of the lease), so a relay that
drains on every commit does not pay a round trip per drain for its lease; a holder renews before its lease can lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
import structlog

from server.settings import asyncpg_connect_kwargs

log = structlog.get_logger("partnerdesk.leases")

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


_KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}
_PG_TIMEOUT = 3.0  # seconds a lease connection may take to connect or answer
_IDLE_SESSION_TIMEOUT = "10s"  # as long as a Redis lease's TTL


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a lease name (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class Leases:
    def __init__(
        self,
        redis_url: str | None,
        prefix: str = "pd",
        database_url: str | None = None,
        recheck_seconds: float = 1.0,
    ) -> None:
        """`database_url`: a PostgreSQL URL for advisory-lock leases when there is no Redis (ignored with Redis)."""
        self.redis = aioredis.from_url(redis_url) if redis_url else None
        self.prefix = prefix
        self.token = uuid.uuid4().hex
        self.recheck_seconds = recheck_seconds
        self._local: dict[str, tuple[str, float]] = {}
        self._answers: dict[str, tuple[bool, float]] = {}  # lease key -> (held, trusted until, monotonic)
        self._connect: dict[str, Any] | None = None  # asyncpg.connect's arguments, with PostgreSQL and no Redis
        if (
            self.redis is None
            and database_url
            and database_url.startswith(("postgres://", "postgresql://", "asyncpg://"))
        ):
            # the pool's host, credentials and TLS settings; keepalives so that the server notices a holder that
            # vanished without closing its connection (a crashed host, a partition) in ~11 s, not the OS's 2 hours,
            # and frees its locks
            self._connect = asyncpg_connect_kwargs(database_url)
            self._connect["server_settings"] = {**self._connect.get("server_settings", {}), **_KEEPALIVES}
            self._connect["timeout"] = _PG_TIMEOUT
        self._pg: Any = None  # asyncpg connection holding this process's advisory locks
        self._pg_held: set[str] = set()
        self._pg_lock = asyncio.Lock()

    @property
    def shared(self) -> bool:
        """Whether leases are decided across processes (Redis or PostgreSQL), not within this one."""
        return self.redis is not None or self._connect is not None

    async def acquire(self, name: str, ttl_seconds: float) -> bool:
        """True if this process now holds (or still holds, renewed) the lease."""
        key = f"{self.prefix}:lease:{name}"
        moment = time.monotonic()
        remembered = self._answers.get(key)
        if remembered is not None and remembered[1] > moment:
            return remembered[0]
        if self.redis is not None:
            held = await self._acquire_redis(key, ttl_seconds)
        elif self._connect is not None:
            held = await self._acquire_pg(key)
        else:
            return self._acquire_local(key, ttl_seconds)
        self._answers[key] = (held, time.monotonic() + min(self.recheck_seconds, ttl_seconds / 3))
        return held

    def _acquire_local(self, key: str, ttl_seconds: float) -> bool:
        holder, until = self._local.get(key, ("", 0.0))
        if holder in ("", self.token) or until < time.monotonic():
            self._local[key] = (self.token, time.monotonic() + ttl_seconds)
            return True
        return False

    async def _acquire_redis(self, key: str, ttl_seconds: float) -> bool:
        assert self.redis is not None
        ttl_ms = int(ttl_seconds * 1000)
        if await self.redis.set(key, self.token, nx=True, px=ttl_ms):
            return True
        return bool(await self.redis.eval(_RENEW, 1, key, self.token, ttl_ms))

    async def _acquire_pg(self, key: str) -> bool:
        import asyncpg

        async with self._pg_lock:
            try:
                if self._pg is None or self._pg.is_closed():
                    self._pg_held.clear()  # the old connection's locks went with it
                    assert self._connect is not None  # the PostgreSQL path is taken only with it
                    self._pg = await asyncpg.connect(**self._connect)
                    try:  # PostgreSQL ≥ 14: a holder silent for this long (hung, or cut off behind a proxy that
                        # keeps the TCP connection up) loses its session and so its locks, like a lapsed TTL; a
                        # live holder confirms its leases every second or two
                        await self._pg.execute(f"SET idle_session_timeout = '{_IDLE_SESSION_TIMEOUT}'")
                    except asyncpg.PostgresError:
                        log.info("lease_idle_session_timeout_unsupported")
                if key in self._pg_held:
                    # still connected, so still held; a connection that cannot answer in time is given up (a
                    # holder that cannot confirm its lease stops acting on it)
                    await self._pg.execute("SELECT 1", timeout=_PG_TIMEOUT)
                    return True
                if await self._pg.fetchval("SELECT pg_try_advisory_lock($1)", advisory_key(key), timeout=_PG_TIMEOUT):
                    self._pg_held.add(key)
                    return True
                return False
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("lease_connection_failed", exc_info=True)
                await self._drop_pg(graceful=False)
                return False

    async def _drop_pg(self, graceful: bool = True) -> None:
        """Forgets the lease connection and what it held; a failed one is cut at once (a graceful close would wait
        on a peer that does not answer)."""
        connection, self._pg = self._pg, None
        self._pg_held.clear()
        self._answers.clear()
        if connection is None:
            return
        if not graceful:
            connection.terminate()
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 5)

    async def claim_once(self, name: str, ttl_seconds: float) -> bool:
        """True for one caller per name (within ttl), across processes. With Redis exactly one (a key with NX).
        Without Redis the process holding the "once" lease claims and remembers its claims in memory, so when that
        lease moves (a restart, a lost connection) the new holder may claim the current slots once more: every
        scheduled job is idempotent (keyed by customer and day, number and month, …), and Redis is the
        multi-process production setup."""
        key = f"{self.prefix}:once:{name}"
        if self.redis is not None:
            return bool(await self.redis.set(key, self.token, nx=True, px=int(ttl_seconds * 1000)))
        # without Redis the process holding the "once" lease is the only one that claims (PostgreSQL: across
        # processes; embedded: the only process), and it remembers its claims
        if self._connect is not None and not await self.acquire("once", ttl_seconds=10):
            return False
        moment = time.monotonic()
        if key in self._local and self._local[key][1] > moment:
            return False
        # every slot claims a new name: forget expired claims, or a long-running process keeps them all
        once = f"{self.prefix}:once:"
        for stale in [k for k, (_, until) in self._local.items() if k.startswith(once) and until <= moment]:
            del self._local[stale]
        self._local[key] = (self.token, moment + ttl_seconds)
        return True

    async def release(self, name: str) -> None:
        key = f"{self.prefix}:lease:{name}"
        self._answers.pop(key, None)
        if self.redis is not None:
            await self.redis.eval(_RELEASE, 1, key, self.token)
        elif self._connect is not None:
            async with self._pg_lock:
                if key in self._pg_held and self._pg is not None:
                    self._pg_held.discard(key)
                    with contextlib.suppress(Exception):
                        await self._pg.execute("SELECT pg_advisory_unlock($1)", advisory_key(key))
        else:
            self._local.pop(key, None)

    async def set_value(self, name: str, value: str) -> None:
        if self.redis is not None:
            await self.redis.set(f"{self.prefix}:{name}", value)
        else:
            self._local[f"{self.prefix}:{name}"] = (value, float("inf"))

    async def get_value(self, name: str) -> str | None:
        if self.redis is not None:
            raw = await self.redis.get(f"{self.prefix}:{name}")
            return raw.decode() if isinstance(raw, bytes) else raw
        entry = self._local.get(f"{self.prefix}:{name}")
        return entry[0] if entry else None

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        await self._drop_pg()
