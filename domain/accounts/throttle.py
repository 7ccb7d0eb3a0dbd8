"""Sign-in throttling: how often a client and a login may try credentials, decided before any password hashing.

Counters are windows of the `limits` library, in process memory in the embedded default and in Redis when REDIS_URL
is set (`rate_limit_storage`), so every process counts together:

- every attempt from a client IP (an IPv6 client by its /64) (`login_ip_attempt_limits`): a flood from one source
  is refused before it costs a query or a hash, so it cannot queue everyone else's sign-ins behind argon2;
- failures from a client IP (`login_ip_failure_limits`): one source trying many logins;
- attempts on a login from one client IP (`login_failure_limits`), cleared by a success: that client's failures
  since it last got in;
- attempts on a login from clients it has no recent session from (`login_failure_limits` again): guessing spread
  over many addresses. A client the user signed in from lately skips this one, so failures elsewhere never shut
  the user out of the places they use: nothing locks the account itself.

A counter has several windows ("5/minute;10/15 minutes;20/hour;50/day"), each starting with the first attempt it
counts (fixed windows: a few integers per key, and clearing one is safe in the memory storage, unlike a moving
window's): a source that keeps failing fills them in turn and waits up to a minute, then up to 15 minutes, an hour,
a day. Logins are counted as typed (lower-cased),
never by account, so a login that exists and one that does not get the same answers. Personal settings (current
password, TOTP code) count per user with `login_failure_limits`.

Attempts are counted before the check they guard ("reserved"), so concurrent requests cannot all slip through
an almost full window; only failures per IP are counted after the fact, bounded by the attempts per IP.
A storage outage lets attempts through, logged: the limiter must not take sign-in down with it.
"""

from __future__ import annotations

import enum
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from domain.config import DomainConfig, config
from domain.errors import DomainError, ErrorCode, FieldError

log = structlog.get_logger("partnerdesk.throttle")

KEY_PREFIX = "pd:login"
# at most one audited refusal per refused source and minute: a flood must not become a flood of audit writes
_AUDIT_REFUSALS = RateLimitItemPerMinute(1)


class Scope(enum.StrEnum):
    CLIENT = "client"  # every attempt from a client IP
    CLIENT_FAILURES = "client-failures"  # failed attempts from a client IP
    LOGIN_FROM_CLIENT = "login-client"  # attempts on a login from one client IP, since its last success
    LOGIN = "login"  # attempts on a login from clients without a recent session of it
    USER = "user"  # credential checks of a signed-in user (personal settings)


@dataclass(frozen=True, slots=True)
class Wait:
    """A refused attempt: the full counter and how many seconds until it lets one through."""

    scope: Scope
    ids: tuple[str, ...]
    seconds: int


class Throttled(DomainError):
    """RATE_LIMITED: nothing was checked; `retry_after` seconds until the next attempt is looked at."""

    def __init__(self, wait: Wait, what: str) -> None:
        super().__init__(
            FieldError(None, f"Too many {what}. Try again in {wait.seconds} seconds.", ErrorCode.RATE_LIMITED)
        )
        self.retry_after = wait.seconds


def _digest(value: str) -> str:
    # keeps logins out of storage keys and gives every identifier one shape
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _client(ip: str) -> str:
    """Whom an address counts for: itself, or for IPv6 its /64, which one subscriber usually holds whole."""
    try:
        address = ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/64", strict=False).network_address)
    return str(address)


class LoginThrottle:
    def __init__(self, storage: Storage, *, client_attempts: str, client_failures: str, failures: str) -> None:
        self.storage = storage
        self.limiter = FixedWindowRateLimiter(storage)
        self.limits: dict[Scope, list[RateLimitItem]] = {
            Scope.CLIENT: parse_many(client_attempts),
            Scope.CLIENT_FAILURES: parse_many(client_failures),
            Scope.LOGIN_FROM_CLIENT: parse_many(failures),
            Scope.LOGIN: parse_many(failures),
            Scope.USER: parse_many(failures),
        }

    async def admit_client(self, ip: str) -> Wait | None:
        """Counts a sign-in attempt from the client; a Wait when it made too many."""
        return await self._admit(reserve=[(Scope.CLIENT, (_client(ip),))])

    async def admit_login(self, login: str, ip: str, *, recognised: bool) -> Wait | None:
        """Counts an attempt on the login (from this client, and from anywhere unless the client is recognised);
        a Wait when the client failed too often or the login was tried too often."""
        key, client = _digest(login), _client(ip)
        reserve: list[tuple[Scope, tuple[str, ...]]] = [(Scope.LOGIN_FROM_CLIENT, (key, client))]
        if not recognised:
            reserve.append((Scope.LOGIN, (key,)))
        return await self._admit(check=[(Scope.CLIENT_FAILURES, (client,))], reserve=reserve)

    async def login_failed(self, ip: str) -> None:
        await self._hit(Scope.CLIENT_FAILURES, (_client(ip),))

    async def login_succeeded(self, login: str, ip: str) -> None:
        await self._clear(Scope.LOGIN_FROM_CLIENT, (_digest(login), _client(ip)))

    async def admit_user(self, user_id: int) -> Wait | None:
        """Counts a credential check of a signed-in user; a Wait when they failed too often."""
        return await self._admit(reserve=[(Scope.USER, (str(user_id),))])

    async def user_succeeded(self, user_id: int) -> None:
        await self._clear(Scope.USER, (str(user_id),))

    async def first_refusal(self, wait: Wait) -> bool:
        """True for the first refusal by a full counter within a minute (only those are audited)."""
        try:
            return await self.limiter.hit(_AUDIT_REFUSALS, "refused", wait.scope, *wait.ids)
        except StorageError:
            return True

    async def reset(self) -> None:
        """Forgets every count (tests start from nothing)."""
        await self.storage.reset()

    async def _admit(
        self,
        *,
        check: Sequence[tuple[Scope, tuple[str, ...]]] = (),
        reserve: Sequence[tuple[Scope, tuple[str, ...]]] = (),
    ) -> Wait | None:
        try:
            # all counters are read before any is counted, so a refusal takes no slot elsewhere
            for scope, ids in (*check, *reserve):
                wait = await self._wait(scope, ids)
                if wait is not None:
                    return wait
            for scope, ids in reserve:
                for item in self.limits[scope]:
                    # a concurrent attempt took the last slot between the read and now
                    if not await self.limiter.hit(item, scope, *ids):
                        return await self._wait(scope, ids) or Wait(scope, ids, 1)
        except StorageError:
            log.warning("login_throttle_unavailable", exc_info=True)
        return None

    async def _wait(self, scope: Scope, ids: tuple[str, ...]) -> Wait | None:
        resets = []
        for item in self.limits[scope]:
            if not await self.limiter.test(item, scope, *ids):
                resets.append((await self.limiter.get_window_stats(item, scope, *ids)).reset_time)
        if not resets:
            return None
        return Wait(scope, ids, max(1, math.ceil(max(resets) - time.time())))

    async def _hit(self, scope: Scope, ids: tuple[str, ...]) -> None:
        try:
            for item in self.limits[scope]:
                await self.limiter.hit(item, scope, *ids)
        except StorageError:
            log.warning("login_throttle_unavailable", exc_info=True)

    async def _clear(self, scope: Scope, ids: tuple[str, ...]) -> None:
        try:
            for item in self.limits[scope]:
                await self.limiter.clear(item, scope, *ids)
        except StorageError:
            log.warning("login_throttle_unavailable", exc_info=True)


def build_throttle(storage_uri: str, key_prefix: str = KEY_PREFIX) -> LoginThrottle:
    """A throttle on the storage behind a `limits` URI (`async+memory://`, `async+redis://…`) with the configured
    limits."""
    cfg = config()
    storage = storage_from_string(storage_uri, implementation="redispy", key_prefix=key_prefix, wrap_exceptions=True)
    return LoginThrottle(
        storage,  # type: ignore[arg-type]
        client_attempts=cfg.login_ip_attempt_limits,
        client_failures=cfg.login_ip_failure_limits,
        failures=cfg.login_failure_limits,
    )


_throttle: tuple[DomainConfig, LoginThrottle] | None = None


def throttle() -> LoginThrottle:
    """The process's throttle, built on first use (inside the running event loop, where the memory storage
    schedules its expiry task) for the configuration in force."""
    global _throttle
    cfg = config()
    if _throttle is None or _throttle[0] is not cfg:
        _throttle = (cfg, build_throttle(cfg.rate_limit_storage, f"{cfg.redis_key_prefix}:login"))
    return _throttle[1]
