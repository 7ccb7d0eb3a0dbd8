"""All configuration, read once from the environment (pydantic-settings).

The embedded default needs nothing: SQLite file, no Redis, no SMTP. Production sets DATABASE_URL, REDIS_URL,
SECRET_KEY and APP_ENV=prod.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from tortoise.backends.base.config_generator import expand_db_url

from domain.config import DEV_SECRET, ROOT, DomainConfig

MODEL_MODULES = [
    "domain.accounts.models",
    "domain.partners.models",
    "domain.customers.models",
    "domain.audit.models",
    "domain.ledger.models",
    "domain.billing.models",
    "domain.features.models",
    "domain.campaigns.models",
    "domain.usage.models",
    "domain.events.models",
    "domain.alerts.models",
    "domain.access.models",
    "domain.reports.models",
    "domain.packages.models",
    "domain.webhooks.models",
    "domain.payments.models",
    "domain.invoices.models",
    "domain.portal.models",
    "domain.team.models",
    "domain.demo.models",
    "domain.storage.models",
]


class Settings(DomainConfig):
    """The domain's settings (`DomainConfig`, defaults written there) and the server's own."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = f"sqlite://{ROOT / 'data' / 'partnerdesk.sqlite3'}"
    dramatiq_namespace: str = "dramatiq"
    smtp_url: str | None = None
    outbox_dir: Path = ROOT / "outbox"
    ws_recheck_seconds: float = 15.0  # how often live sockets' tokens and watched customers are re-checked
    ws_init_timeout_seconds: float = 10.0  # connection_init must arrive within this after the handshake
    background_tasks: bool = True  # outbox relay and scheduler inside `serve` (all processes may run them)
    host: str = "127.0.0.1"
    port: int = 8000

    db_pool_size: int = 20
    # proxies (IPs or CIDRs) whose X-Forwarded-For names the client; empty: the peer address is the client
    trusted_proxies: list[str] = Field(default_factory=list)

    max_body_bytes: int = 1_000_000  # HTTP request bodies and WebSocket messages alike
    # queries and subscription pushes running longer are stopped with code TIMEOUT (mutations run to completion:
    # cutting one off after its commit would report a failure for a change that happened)
    execution_timeout_seconds: float = 10.0
    # anonymous introspection (`__schema`, `__type`); None: allowed outside prod, refused in prod
    public_introspection: bool | None = None
    # `Authorization: Bearer <token>` for /metrics; without one /metrics is open outside prod and off in prod
    metrics_token: str | None = None
    # trusted documents: run only the operations in PERSISTED_DOCUMENTS (and the embed widget's); server/persisted.py
    persisted_only: bool = False
    persisted_documents: Path | None = None  # the clients' persisted documents (JSON), built with their code
    log_json: bool = False
    log_level: str = "INFO"

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            ip_network(item, strict=False)  # a ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _allowlist_for_persisted_only(self) -> Settings:
        if self.persisted_only and self.persisted_documents is None:
            raise ValueError("PERSISTED_ONLY=true needs PERSISTED_DOCUMENTS: the clients' persisted documents file")
        if self.persisted_documents is not None and not self.persisted_documents.is_file():
            raise ValueError(f"PERSISTED_DOCUMENTS: no file at {self.persisted_documents}")
        return self

    @model_validator(mode="after")
    def _secret_required_outside_dev(self) -> Settings:
        if self.app_env == "prod" and (not self.secret_key or self.secret_key == DEV_SECRET):
            raise ValueError("SECRET_KEY must be set to a private value when APP_ENV=prod")
        return self

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://", "asyncpg://"))

    @property
    def introspection_for_anonymous(self) -> bool:
        return self.is_dev if self.public_introspection is None else self.public_introspection

    def tortoise_config(self, database_url: str | None = None) -> dict[str, Any]:
        url = database_url or self.database_url
        if url.startswith("postgresql://"):
            url = "postgres://" + url.removeprefix("postgresql://")
        if url.startswith("postgres://") and "maxsize=" not in url:
            url += ("&" if "?" in url else "?") + f"minsize=1&maxsize={self.db_pool_size}"
        connection: str | dict[str, Any] = url
        if url.startswith("postgres://"):
            connection = expand_db_url(url)
            connection["credentials"]["reset"] = release_without_reset
        return {
            "connections": {"default": connection},
            "apps": {
                "models": {
                    "models": MODEL_MODULES,
                    "default_connection": "default",
                    "migrations": "migrations",
                }
            },
            "use_tz": True,
            "timezone": "UTC",
        }


# what `asyncpg.connect` takes of a DATABASE_URL's credentials (the rest are pool settings of Tortoise's)
_CONNECT_KEYS = frozenset(
    {"host", "port", "user", "password", "database", "ssl", "timeout", "command_timeout", "statement_cache_size"}
)


def asyncpg_connect_kwargs(database_url: str) -> dict[str, Any]:
    """`asyncpg.connect` arguments for a connection of its own (the relay's LISTEN, the leases' advisory locks) to
    the database of a PostgreSQL DATABASE_URL, read as Tortoise reads it for its pool: the same host, credentials,
    `ssl`, `application_name` and `schema`, without the pool's sizes."""
    url = "postgres://" + database_url.split("://", 1)[1]
    credentials = expand_db_url(url)["credentials"]
    kwargs = {key: value for key, value in credentials.items() if key in _CONNECT_KEYS}
    server_settings: dict[str, str] = {}
    if credentials.get("application_name"):
        server_settings["application_name"] = str(credentials["application_name"])
    if credentials.get("schema"):
        server_settings["search_path"] = str(credentials["schema"])
    if server_settings:
        kwargs["server_settings"] = server_settings
    if "port" in kwargs:
        kwargs["port"] = int(kwargs["port"])
    return kwargs


async def release_without_reset(connection: Any) -> None:
    """What a pooled PostgreSQL connection runs when it goes back to the pool (asyncpg's `reset=`).

    asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release:
    a round trip per statement outside a transaction, and per transaction. No pooled connection here keeps session
    state for it to undo (the relay LISTENs on a connection of its own, advisory locks are transaction-level, there
    are no session-level SETs and no cursors outside transactions), so only a connection given back in the middle
    of a transaction (a cancelled request) is rolled back.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _tortoise_orm() -> dict[str, Any]:
    settings = get_settings()
    if settings.database_url.startswith("sqlite://"):
        Path(settings.database_url.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)
    return settings.tortoise_config()


TORTOISE_ORM = _tortoise_orm()
