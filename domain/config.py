"""Knobs the domain needs, set once by the composition root (server/) at start-up; defaults suit development."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class DomainConfig:
    session_ttl_hours: int = 24 * 14
    # sign-in throttling (domain/accounts/throttle.py): `limits` notation, several windows separated by ";"
    login_ip_attempt_limits: str = "30/minute"
    login_ip_failure_limits: str = "50/hour;200/day"
    login_failure_limits: str = "5/minute;10/15 minutes;20/hour;50/day"
    # where the throttle counts: a `limits` storage URI, shared by every process when it is Redis
    rate_limit_storage: str = "async+memory://"
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = "dev-insecure-secret-key-change-me"  # signs download links
    exports_dir: str = "exports"  # where built usage reports are stored (local storage)
    export_retention_hours: int = 24 * 7  # how long a built report stays downloadable
    avatars_dir: str = "avatars"  # profile images (local storage, served at /avatars/<name>)
    # exports share the workers between tenants: bounded per customer and per partner (domain/reports/queue.py)
    export_max_pending_per_customer: int = 10  # requested exports QUEUED or RUNNING at once
    export_max_running_per_customer: int = 2  # builds in flight (dispatched or running)
    export_max_running_per_partner: int = 4  # builds in flight for all the partner's customers together
    report_max_schedules_per_customer: int = 10
    export_lease_seconds: float = 120  # a RUNNING report without a heartbeat for this long is rebuilt


_config = DomainConfig()


def configure(**values: object) -> DomainConfig:
    global _config
    _config = replace(_config, **values)  # type: ignore[arg-type]
    from domain.accounts import passwords, throttle

    passwords.reset_hasher()
    throttle.reset_throttle()
    return _config


def config() -> DomainConfig:
    return _config
