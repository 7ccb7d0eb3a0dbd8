"""Per-API-key request limits (DESIGN.md §3: STANDARD 100/min, PREMIUM 500/min, ENTERPRISE the key's own).

A sliding one-minute window from the `limits` library (its sliding-window counter: two counters per key, so an
ENTERPRISE limit of any size costs the same; a moving window would keep one entry per request): in process memory
in the embedded default, in Redis when REDIS_URL is set (so every server process counts against the same window).
Every response to an API key says where it stands (`RateLimit-Policy` and `RateLimit`, draft-ietf-httpapi-ratelimit-
headers: `"api-key";q=100;w=60` and `"api-key";r=42;t=18`), not only the 429, so clients can slow down before they
are refused. People's sessions and embed tokens are not limited here; sign-in is throttled by domain/accounts/throttle.py, on the
storage `domain.config.limits_storage_uri` names. If Redis is unreachable the request is let through and the failure logged: an outage
of the limiter must not take the API down with it.

In Redis, `limits` needs two round trips per request (count it, then read where the key stands), ~100 µs of the
server's CPU each at call rate; `ONE_TRIP` does both in one script: the same keys, the same acquisition (the
library's `acquire_sliding_window.lua`) and the same window read (its `sliding_window.lua`), so processes counting
either way share one window.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from domain.config import limits_storage_uri
from domain.viewer import Viewer

log = structlog.get_logger("partnerdesk.ratelimit")


WINDOW_SECONDS = 60
POLICY = "api-key"
STATE_KEY = "rate_limit"  # where the endpoints leave the state in the ASGI scope for `RateLimitHeaders`


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int  # requests per window
    remaining: int
    reset: int  # seconds until the window has room again

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f'"{POLICY}";q={self.limit};w={WINDOW_SECONDS}',
            "RateLimit": f'"{POLICY}";r={self.remaining};t={self.reset}',
        }


class RateLimited(Exception):
    """Over the key's limit; retry after `retry_after` seconds (HTTP 429 with `Retry-After`)."""

    def __init__(self, retry_after: int, state: RateLimitState | None = None) -> None:
        super().__init__(f"Too many requests for this API key. Retry in {retry_after} s.")
        self.retry_after = retry_after
        self.state = state


def _storage(redis_url: str | None, key_prefix: str) -> Storage:
    if redis_url is None:
        return MemoryStorage()
    return RedisStorage(
        limits_storage_uri(redis_url), implementation="redispy", key_prefix=key_prefix, wrap_exceptions=True
    )


# `limits`' acquire_sliding_window.lua and sliding_window.lua in one script (times in milliseconds): the current
# window shifted to the previous one when it has expired, one hit counted if the weighted count leaves room, then
# {acquired, previous count, previous TTL, current count, current TTL}.
ONE_TRIP = """
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local amount = tonumber(ARGV[3])
local acquired = 0
local current_ttl = tonumber(redis.call('pttl', KEYS[2]))
if current_ttl > 0 and current_ttl < expiry then
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PX', current_ttl + expiry)
end
if amount <= limit then
    local previous_count = tonumber(redis.call('get', KEYS[1])) or 0
    local previous_ttl = tonumber(redis.call('pttl', KEYS[1])) or 0
    local current_count = tonumber(redis.call('get', KEYS[2])) or 0
    current_ttl = tonumber(redis.call('pttl', KEYS[2])) or 0
    if previous_ttl <= 0 then
        previous_ttl = 0
    end
    if current_ttl <= 0 then
        current_ttl = 0
    end
    if math.floor(previous_count * previous_ttl / expiry) + current_count + amount <= limit then
        if redis.call('exists', KEYS[2]) == 1 then
            redis.call('incrby', KEYS[2], amount)
        else
            redis.call('set', KEYS[2], amount, 'PX', expiry * 2)
        end
        acquired = 1
    end
end
return {acquired, redis.call('get', KEYS[1]), redis.call('pttl', KEYS[1]), redis.call('get', KEYS[2]),
        redis.call('pttl', KEYS[2])}
"""


def window_stats(item: RateLimitItem, window: list[Any], now: float) -> tuple[float, int]:
    """(reset time, remaining) of a window read as `ONE_TRIP` returns it: `limits`' `get_window_stats`, step by
    step, on `get_sliding_window`'s conversion of the same values."""
    previous_count, current_count = int(window[1] or 0), int(window[3] or 0)
    previous_expires_in, current_expires_in = max(0, float(window[2] or 0)) / 1000, max(0, float(window[4] or 0)) / 1000
    expiry = item.get_expiry()
    weighted = previous_count * previous_expires_in / expiry + current_count
    remaining = max(0, item.amount - math.floor(weighted))
    if not (previous_count or current_count):
        return now, remaining
    previous_reset_in, current_reset_in = math.inf, math.inf
    if previous_count:
        previous_reset_in = previous_expires_in % (expiry / previous_count)
    if current_count:
        current_reset_in = current_expires_in % expiry
    return now + min(previous_reset_in, current_reset_in), remaining


class ApiRateLimiter:
    def __init__(self, redis_url: str | None, key_prefix: str = "pd:limits") -> None:
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self._limiter: SlidingWindowCounterRateLimiter | None = None
        self._one_trip: Any = None  # the script on a redis-py client, with REDIS_URL

    @property
    def limiter(self) -> SlidingWindowCounterRateLimiter:
        # Built on first use, inside the server's event loop: the memory storage schedules its expiry task there.
        if self._limiter is None:
            self._limiter = SlidingWindowCounterRateLimiter(_storage(self.redis_url, self.key_prefix))
        return self._limiter

    async def check(self, viewer: Viewer) -> RateLimitState | None:
        """Counts one request of the viewer's API key and says where the key stands (None for other viewers, or
        when the limiter is unavailable); raises RateLimited when the key is over its limit."""
        if viewer.api_key_id is None or viewer.rate_limit_per_minute is None:
            return None
        limit = viewer.rate_limit_per_minute
        item = RateLimitItemPerMinute(limit)
        identity = ("api-key", str(viewer.api_key_id))
        try:
            if self.redis_url is None:
                allowed = await self.limiter.hit(item, *identity)
                reset_time, remaining = await self.limiter.get_window_stats(item, *identity)
            else:
                allowed, reset_time, remaining = await self._hit_in_redis(item, identity)
        except Exception:
            log.warning("rate_limiter_unavailable", api_key_id=viewer.api_key_id, exc_info=True)
            return None
        reset = max(0, math.ceil(reset_time - time.time()))
        state = RateLimitState(limit, max(0, remaining), min(reset, WINDOW_SECONDS))
        if allowed:
            return state
        raise RateLimited(max(1, reset), state)

    async def close(self) -> None:
        if self._one_trip is not None:
            await self._one_trip.registered_client.aclose()
            self._one_trip = None

    async def _hit_in_redis(self, item: RateLimitItem, identity: tuple[str, ...]) -> tuple[bool, float, int]:
        """`limits`' hit and get_window_stats on its Redis keys, in one round trip."""
        if self._one_trip is None:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(self.redis_url)  # type: ignore[arg-type]
            self._one_trip = client.register_script(ONE_TRIP)
        current = f"{{{item.key_for(*identity)}}}"  # the library's keys: `{key}` and `{key}/-1`, prefixed
        keys = [f"{self.key_prefix}:{current}/-1", f"{self.key_prefix}:{current}"]
        window = await self._one_trip(keys=keys, args=[item.amount, item.get_expiry(), 1])
        reset_time, remaining = window_stats(item, window, time.time())
        return bool(window[0]), reset_time, remaining


def limit_headers(scope: Any) -> list[tuple[bytes, bytes]]:
    """The `RateLimit-Policy` and `RateLimit` headers of the key that made this request (none for other callers)."""
    state = scope.get("state", {}).get(STATE_KEY)
    if state is None:
        return []
    return [(k.lower().encode(), v.encode()) for k, v in state.headers().items()]


def remember(scope: Any, state: RateLimitState | None) -> None:
    """Leaves the key's state for `RateLimitHeaders` to put on whichever response the endpoint sends."""
    if state is not None:
        scope.setdefault("state", {})[STATE_KEY] = state


class RateLimitHeaders:
    """Adds `RateLimit-Policy` and `RateLimit` to every HTTP response of a request an API key made."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_limits(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = limit_headers(scope)
                if extra:
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_limits)
