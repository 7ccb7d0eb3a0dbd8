"""Every setting the domain reads, each with its one default: `DomainConfig`, read from the environment once.

`server.settings.Settings` extends `DomainConfig` with what only the server needs (database, bind address, limits of
the transport), so a setting and its default are written once, here or there. The domain reads its part through
`config()`, which loads it on first use and never replaces it; nothing copies values across at start-up. Tests that
need other values for a while use `overridden()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-insecure-secret-key-change-me"


class DomainConfig(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    app_env: Literal["dev", "test", "prod"] = "dev"
    secret_key: str = DEV_SECRET  # signs download links, email-change tokens; required in prod (Settings)
    public_url: str = "http://127.0.0.1:8000"  # base of links in emails and embed URLs
    # switches the sign-in throttle (and the server's broker, pub/sub and API-key limits) to Redis
    redis_url: str | None = None
    # begins every Redis key and channel but the job queues' (DRAMATIQ_NAMESPACE): deployments sharing a Redis
    # database give each a prefix of its own, or they share leases, events and rate-limit counters
    redis_key_prefix: str = Field("pd", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    session_ttl_hours: int = 24 * 14
    # how long a process answers a bearer token it authenticated from memory (domain/access/token_cache.py;
    # revocations clear it at once); 0 looks every token up on every request
    auth_cache_seconds: float = Field(5.0, ge=0)
    # sign-in throttling (domain/accounts/throttle.py), in the `limits` notation: windows separated by ";"
    login_ip_attempt_limits: str = "30/minute"  # every attempt from one client IP
    login_ip_failure_limits: str = "50/hour;200/day"  # failed attempts from one client IP
    # attempts on one login from one client IP (a success clears them), and from clients without a recent session
    login_failure_limits: str = "5/minute;10/15 minutes;20/hour;50/day"
    # argon2 cost; tests lower it so fixtures stay fast (never below the library's minimums in prod)
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    exports_dir: Path = ROOT / "exports"  # built usage reports (local storage)
    export_retention_hours: int = 24 * 7  # how long a built report stays downloadable
    # exports share the workers between tenants: bounded per customer and per partner (domain/reports/queue.py)
    export_max_pending_per_customer: int = Field(10, ge=1)  # requested exports QUEUED or RUNNING at once
    export_max_running_per_customer: int = Field(2, ge=1)  # builds in flight (dispatched or running)
    export_max_running_per_partner: int = Field(4, ge=1)  # builds in flight for all its customers together
    report_max_schedules_per_customer: int = Field(10, ge=0)
    export_lease_seconds: float = Field(120, ge=10)  # a RUNNING report without a heartbeat this long is rebuilt
    # a build pushes its progress (`UsageReport.rowsDone`) at most this often, and reads this many rows a query
    export_progress_seconds: float = Field(1.0, ge=0)
    export_chunk_rows: int = Field(2000, ge=1, le=100_000)
    # where Debian's font packages put their files: PDF reports embed DejaVu Sans and script fallbacks from here
    report_fonts_dir: Path = Path("/usr/share/fonts")
    avatars_dir: Path = ROOT / "avatars"  # uploaded profile images (local storage, served at /avatars/<name>)
    # outgoing webhooks (domain/webhooks): one attempt's time limit, and how many attempts of one endpoint may be
    # in flight at once (a slow or failing endpoint takes at most that many worker slots from everyone else)
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    webhook_max_in_flight_per_endpoint: int = Field(2, ge=1, le=50)
    webhook_max_endpoints_per_owner: int = Field(20, ge=1)
    # card payments (domain/payments): unset STRIPE_API_KEY keeps the manual provider (refills recorded by staff)
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None  # another API address (tests point it at a local fake Stripe)

    @property
    def is_dev(self) -> bool:
        """dev or test: loopback and private webhook targets allowed, GraphiQL and suggestions shown."""
        return self.app_env != "prod"

    logos_dir: Path = ROOT / "logos"  # uploaded partner and customer logos (local storage, served at /logos/<name>)
    # DNS servers ("host" or "host:port") that check partners' domain TXT records; empty: the system's resolver
    dns_nameservers: list[str] = Field(default_factory=list)
    invitation_ttl_hours: int = Field(24 * 7, ge=1, le=24 * 90)  # how long an emailed invitation link works
    # browser origins (`https://app.example.com`) allowed to call the API, open its WebSocket and frame the embed
    # widget, besides partners' verified domains (domain/access/origins.py)
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("login_ip_attempt_limits", "login_ip_failure_limits", "login_failure_limits")
    @classmethod
    def _limits_notation(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"use the `limits` notation, e.g. '5/minute;50/day': {exc}") from exc
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for item in value:
            scheme, sep, rest = item.strip().partition("://")
            host = rest.rstrip("/")
            if scheme.lower() not in ("http", "https") or not sep or not host or "/" in host or "*" in host:
                raise ValueError(f"{item!r} is not an origin: write scheme://host[:port], e.g. https://app.example.com")
        return value

    @property
    def rate_limit_storage(self) -> str:
        return limits_storage_uri(self.redis_url)


def limits_storage_uri(redis_url: str | None) -> str:
    """The `limits` storage for a deployment: process memory, or the Redis every process shares."""
    if redis_url is None:
        return "async+memory://"
    # `limits` wants `async+redis://…` (or `async+redis+unix://…`); the redis-py client is already a dependency
    scheme, _, rest = redis_url.partition("://")
    return f"async+redis+unix://{rest}" if scheme == "unix" else f"async+{redis_url}"


_loaded: DomainConfig | None = None


def config() -> DomainConfig:
    """The process's domain configuration (read from the environment on first use)."""
    global _loaded
    if _loaded is None:
        _loaded = DomainConfig()
    return _loaded


@contextmanager
def overridden(**changes: object) -> Iterator[DomainConfig]:
    """For tests: other values while the block runs, then the configuration as it was."""
    global _loaded
    before = config()
    _loaded = before.model_copy(update=changes)
    try:
        yield _loaded
    finally:
        _loaded = before
