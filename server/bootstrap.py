"""Process start-up shared by the web app, the worker and the CLI."""

from __future__ import annotations

import dramatiq

from domain.config import configure as configure_domain
from jobs import mailer
from jobs.broker import configure as configure_broker
from jobs.registry import load_actors
from server.logging import configure_logging
from server.ratelimit import storage_uri
from server.settings import Settings


def bootstrap(settings: Settings) -> dramatiq.Broker:
    configure_logging(settings.log_level, settings.log_json)
    configure_domain(
        session_ttl_hours=settings.session_ttl_hours,
        login_ip_attempt_limits=settings.login_ip_attempt_limits,
        login_ip_failure_limits=settings.login_ip_failure_limits,
        login_failure_limits=settings.login_failure_limits,
        rate_limit_storage=storage_uri(settings.redis_url),
        argon2_time_cost=settings.argon2_time_cost,
        argon2_memory_cost=settings.argon2_memory_cost,
        public_url=settings.public_url,
        secret_key=settings.secret_key,
        exports_dir=str(settings.exports_dir),
        export_retention_hours=settings.export_retention_hours,
        export_max_pending_per_customer=settings.export_max_pending_per_customer,
        export_max_running_per_customer=settings.export_max_running_per_customer,
        export_max_running_per_partner=settings.export_max_running_per_partner,
        report_max_schedules_per_customer=settings.report_max_schedules_per_customer,
        export_lease_seconds=settings.export_lease_seconds,
        avatars_dir=str(settings.avatars_dir),
    )
    mailer.configure(settings.smtp_url, settings.outbox_dir)
    broker = configure_broker(settings.redis_url, settings.tortoise_config(), settings.dramatiq_namespace)
    load_actors()
    return broker
