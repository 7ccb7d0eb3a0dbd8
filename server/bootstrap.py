"""Process start-up shared by the web app, the worker and the CLI."""

from __future__ import annotations

import dramatiq

from jobs import mailer
from jobs.broker import configure as configure_broker
from jobs.registry import load_actors
from server.logging import configure_logging
from server.settings import Settings


def bootstrap(settings: Settings) -> dramatiq.Broker:
    configure_logging(settings.log_level, settings.log_json)
    mailer.configure(settings.smtp_url, settings.outbox_dir)
    broker = configure_broker(settings.redis_url, settings.tortoise_config(), settings.dramatiq_namespace)
    load_actors()
    return broker
