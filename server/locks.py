"""Leases shared by processes: Redis `SET NX PX` when REDIS_URL is set, else in-process (embedded: one process)."""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


class Leases:
    def __init__(self, redis_url: str | None, prefix: str = "pd") -> None:
        self.redis = aioredis.from_url(redis_url) if redis_url else None
        self.prefix = prefix
        self.token = uuid.uuid4().hex
        self._local: dict[str, tuple[str, float]] = {}

    async def acquire(self, name: str, ttl_seconds: float) -> bool:
        """True if this process now holds (or still holds, renewed) the lease."""
        key = f"{self.prefix}:lease:{name}"
        ttl_ms = int(ttl_seconds * 1000)
        if self.redis is None:
            holder, until = self._local.get(key, ("", 0.0))
            if holder in ("", self.token) or until < time.monotonic():
                self._local[key] = (self.token, time.monotonic() + ttl_seconds)
                return True
            return False
        if await self.redis.set(key, self.token, nx=True, px=ttl_ms):
            return True
        return bool(await self.redis.eval(_RENEW, 1, key, self.token, ttl_ms))

    async def claim_once(self, name: str, ttl_seconds: float) -> bool:
        """True for exactly one caller per name (within ttl), across processes."""
        key = f"{self.prefix}:once:{name}"
        if self.redis is None:
            moment = time.monotonic()
            if key in self._local and self._local[key][1] > moment:
                return False
            # every slot claims a new name: forget expired claims, or a long-running process keeps them all
            once = f"{self.prefix}:once:"
            for stale in [k for k, (_, until) in self._local.items() if k.startswith(once) and until <= moment]:
                del self._local[stale]
            self._local[key] = (self.token, moment + ttl_seconds)
            return True
        return bool(await self.redis.set(key, self.token, nx=True, px=int(ttl_seconds * 1000)))

    async def release(self, name: str) -> None:
        key = f"{self.prefix}:lease:{name}"
        if self.redis is None:
            self._local.pop(key, None)
        else:
            await self.redis.eval(_RELEASE, 1, key, self.token)

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
