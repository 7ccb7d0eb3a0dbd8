"""Per-API-key request limits (DESIGN.md §3: STANDARD 100/min, PREMIUM 500/min, ENTERPRISE the key's own).

A sliding one-minute window from the `limits` library (its sliding-window counter: two counters per key, so an
ENTERPRISE limit of any size costs the same; a moving window would keep one entry per request): in process memory
in the embedded default, in Redis when REDIS_URL is set (so every server process counts against the same window).
People's sessions and embed tokens are not limited here; sign-in is throttled by domain/accounts/throttle.py, on the
storage `domain.config.limits_storage_uri` names. If Redis is unreachable the request is let through and the failure logged: an outage
of the limiter must not take the API down with it.
"""

from __future__ import annotations

import math
import time

import structlog
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from domain.config import limits_storage_uri
from domain.viewer import Viewer

log = structlog.get_logger("partnerdesk.ratelimit")


class RateLimited(Exception):
    """Over the key's limit; retry after `retry_after` seconds (HTTP 429 with `Retry-After`)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many requests for this API key. Retry in {retry_after} s.")
        self.retry_after = retry_after


def _storage(redis_url: str | None, key_prefix: str) -> Storage:
    if redis_url is None:
        return MemoryStorage()
    return RedisStorage(
        limits_storage_uri(redis_url), implementation="redispy", key_prefix=key_prefix, wrap_exceptions=True
    )


class ApiRateLimiter:
    def __init__(self, redis_url: str | None, key_prefix: str = "pd:limits") -> None:
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self._limiter: SlidingWindowCounterRateLimiter | None = None

    @property
    def limiter(self) -> SlidingWindowCounterRateLimiter:
        # Built on first use, inside the server's event loop: the memory storage schedules its expiry task there.
        if self._limiter is None:
            self._limiter = SlidingWindowCounterRateLimiter(_storage(self.redis_url, self.key_prefix))
        return self._limiter

    async def check(self, viewer: Viewer) -> None:
        """Counts one request of the viewer's API key; raises RateLimited when the key is over its limit."""
        if viewer.api_key_id is None or viewer.rate_limit_per_minute is None:
            return
        item = RateLimitItemPerMinute(viewer.rate_limit_per_minute)
        identity = ("api-key", str(viewer.api_key_id))
        try:
            if await self.limiter.hit(item, *identity):
                return
            stats = await self.limiter.get_window_stats(item, *identity)
        except Exception:
            log.warning("rate_limiter_unavailable", api_key_id=viewer.api_key_id, exc_info=True)
            return
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))
