"""Test harness: a real database (Postgres when DATABASE_URL points at one, else a SQLite file) migrated with the
project's own migrations, truncated between tests; the ASGI app driven over HTTP with httpx; factories.

`make test` starts throwaway Postgres and Redis servers when none are given (scripts/testenv.sh).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Settings are read once: pin the test environment before anything imports them.
os.environ["APP_ENV"] = "test"
os.environ.setdefault("ARGON2_TIME_COST", "1")
os.environ.setdefault("ARGON2_MEMORY_COST", "1024")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Files the app writes (uploads, built reports, mails) land in this run's own throwaway folder, never in the work
# tree and never where another run (the other pass of `make test` runs alongside) writes the same names.
_RUN_DIR = Path(tempfile.mkdtemp(prefix="partnerdesk-run-"))
atexit.register(shutil.rmtree, _RUN_DIR, True)
for _name in ("LOGOS_DIR", "AVATARS_DIR", "EXPORTS_DIR", "OUTBOX_DIR"):
    os.environ.setdefault(_name, str(_RUN_DIR / _name.removesuffix("_DIR").lower()))
# Many tests expire or disable credentials straight in the database, behind the services that would clear the
# token cache; the cache's own tests (tests/test_token_cache.py) turn it on.
os.environ.setdefault("AUTH_CACHE_SECONDS", "0")
_BASE_URL = os.environ.get("DATABASE_URL", "")
IS_POSTGRES = _BASE_URL.startswith(("postgres://", "postgresql://"))
REDIS_URL = os.environ.get("REDIS_URL") or None
ROOT = Path(__file__).resolve().parent.parent


def _test_database_url() -> tuple[str, str | None]:
    if IS_POSTGRES:
        name = f"partnerdesk_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        base, _, _ = _BASE_URL.rpartition("/")
        return f"{base}/{name}", name
    path = _RUN_DIR / "test.sqlite3"
    return f"sqlite://{path}", None


TEST_DATABASE_URL, _PG_DB_NAME = _test_database_url()
os.environ["DATABASE_URL"] = TEST_DATABASE_URL
# Jobs run embedded in tests unless a test opts into Redis explicitly.
os.environ.pop("REDIS_URL", None)

import httpx  # noqa: E402
import pytest  # noqa: E402
from tortoise import Tortoise, connections  # noqa: E402

from domain.accounts.models import Membership, Role, User  # noqa: E402
from domain.accounts.services import NewUser, create_user, hash_password_async, org_key  # noqa: E402
from domain.accounts.throttle import throttle  # noqa: E402
from domain.customers.commands import CustomerCreate  # noqa: E402
from domain.customers.models import Customer  # noqa: E402
from domain.customers.services import customer_create  # noqa: E402
from domain.packages.commands import PackageAssign, PackageCreate  # noqa: E402
from domain.packages.models import FeatureKey, Package, PackageAssignment  # noqa: E402
from domain.packages.services import package_assign, package_create, snapshot  # noqa: E402
from domain.partners.commands import PartnerCreate  # noqa: E402
from domain.partners.models import Partner  # noqa: E402
from domain.partners.services import partner_create  # noqa: E402
from domain.viewer import Viewer  # noqa: E402
from server.settings import get_settings  # noqa: E402

PASSWORD = "Test-pass-1"
requires_postgres = pytest.mark.skipif(not IS_POSTGRES, reason="needs PostgreSQL (set DATABASE_URL)")
requires_redis = pytest.mark.skipif(REDIS_URL is None, reason="needs Redis (set REDIS_URL)")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"database: {'PostgreSQL' if IS_POSTGRES else 'SQLite (Postgres-only tests will be SKIPPED)'}",
        f"redis: {REDIS_URL or 'none (Redis tests will be SKIPPED)'}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("postgres") and not IS_POSTGRES:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: money and concurrency run on Postgres only"))
        if item.get_closest_marker("redis") and REDIS_URL is None:
            item.add_marker(pytest.mark.skip(reason="needs Redis (REDIS_URL)"))


async def _create_pg_database() -> None:
    import asyncpg

    admin_url = _BASE_URL.replace("postgres://", "postgresql://", 1)
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{_PG_DB_NAME}"')
    finally:
        await conn.close()


async def _drop_pg_database() -> None:
    import asyncpg

    conn = await asyncpg.connect(_BASE_URL.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{_PG_DB_NAME}" WITH (FORCE)')
    finally:
        await conn.close()


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs `partnerdesk …` in a subprocess against the test database."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[str]:
    if IS_POSTGRES:
        await _create_pg_database()
    # The real migrations, in a subprocess (Tortoise allows one global context per process).
    run_cli("migrate")
    settings = get_settings()
    from server.bootstrap import bootstrap

    bootstrap(settings)
    await Tortoise.init(config=settings.tortoise_config(), _enable_global_fallback=True)
    yield TEST_DATABASE_URL
    await Tortoise.close_connections()
    if IS_POSTGRES:
        await _drop_pg_database()


_fast_cleanup = True


async def truncate_all() -> None:
    """Empties every table and restarts every id sequence between tests.

    On PostgreSQL, `TRUNCATE` of ~55 tables costs 30–140 ms (it swaps files); deleting the few rows a test wrote with
    foreign-key triggers off (`session_replication_role`, superuser only) and resetting the sequences costs ~1 ms.
    Without superuser rights it falls back to `TRUNCATE`.
    """
    global _fast_cleanup
    conn = connections.get("default")
    tables = [model._meta.db_table for model in Tortoise.apps["models"].values()]
    deletes = "".join(f"DELETE FROM {table};" for table in tables)
    if IS_POSTGRES:
        if _fast_cleanup:
            try:
                await conn.execute_script(
                    # one simple query: PostgreSQL runs it as one implicit transaction, rolled back whole on error
                    "SET LOCAL session_replication_role = replica;"
                    f"{deletes}"
                    "SELECT setval(c.oid::regclass, 1, false) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.relkind = 'S' AND n.nspname = current_schema();"
                )
                return
            except Exception:
                _fast_cleanup = False
        await conn.execute_script(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    else:
        await conn.execute_script(
            f"PRAGMA foreign_keys = OFF;{deletes}DELETE FROM sqlite_sequence;PRAGMA foreign_keys = ON;"
        )


@pytest.fixture(autouse=True)
async def clean_db(database: str) -> AsyncIterator[None]:
    yield
    await truncate_all()
    await throttle().reset()  # every test signs in from the same client address


@pytest.fixture(scope="session")
def app(database: str) -> Any:
    from server.app import create_app

    return create_app(get_settings(), manage_db=False)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class GQL:
    """Posts GraphQL documents through the real ASGI app."""

    client: httpx.AsyncClient

    async def raw(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await self.client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)

    async def __call__(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict:
        response = await self.raw(query, variables, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def login(self, login: str, password: str = PASSWORD) -> str:
        data = await self(
            "mutation($i: LoginInput!) { login(input: $i) { token errors { code message } } }",
            {"i": {"login": login, "password": password}},
        )
        assert data["login"]["errors"] == [], data
        return data["login"]["token"]


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GQL:
    return GQL(client)


SYSTEM = Viewer.system("tests")


@dataclass
class Tenant:
    partner: Partner
    owner: User
    customers: list[Customer]
    admins: list[User]


class Factory:
    """Builds tenants straight through domain services (fast, and audited like real ones)."""

    def __init__(self) -> None:
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    async def partner(self, name: str | None = None) -> tuple[Partner, User]:
        n = self._next()
        created = await partner_create(
            SYSTEM,
            PartnerCreate(
                name=name or f"Partner {n}",
                owner_email=f"owner{n}@partner{n}.example.com",
                owner_password=PASSWORD,
                owner_name=f"Owner {n}",
            ),
        )
        return created.partner, created.owner

    async def customer(self, partner: Partner, name: str | None = None, **extra: Any) -> tuple[Customer, User]:
        n = self._next()
        staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id, label="tests")
        created = await customer_create(
            staff,
            CustomerCreate(
                username=f"cust{n}",
                first_name="Cara",
                last_name=f"Customer{n}",
                email=f"admin{n}@customer{n}.example.com",
                password=PASSWORD,
                password_confirmation=PASSWORD,
                company_name=name or f"Customer {n}",
                **extra,
            ),
        )
        return created.customer, created.user

    async def user(self, *, role: Role, partner: Partner | None = None, customer: Customer | None = None) -> User:
        n = self._next()
        user = await create_user(
            NewUser(
                username=f"user{n}", email=f"user{n}@example.com", password=PASSWORD, first_name="U", last_name=str(n)
            ),
            await hash_password_async(PASSWORD),
        )
        await Membership.create(
            user=user,
            role=role,
            partner=partner,
            customer=customer,
            org_key=org_key(partner.id if partner else None, customer.id if customer else None),
        )
        return user

    async def admin(self) -> User:
        return await self.user(role=Role.PLATFORM_ADMIN)

    async def package(
        self, partner: Partner, features: list[FeatureKey] | None = None, title: str = "Full", **extra: Any
    ) -> Package:
        """A package of the partner (every feature unless `features` says otherwise), made by its admin."""
        staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id, label="tests")
        chosen = list(FeatureKey) if features is None else features
        return await package_create(staff, PackageCreate(title=title, features=chosen, **extra))

    async def give(self, customer: Customer, package: Package) -> PackageAssignment:
        """Assigns the package the way `packageAssign` does (features, seats, storage, credits applied)."""
        staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=customer.partner_id, label="tests")
        return await package_assign(staff, PackageAssign(customer.id, package.id, uuid.uuid4().hex))

    async def entitle(self, customer: Customer, features: list[FeatureKey] | None = None) -> PackageAssignment:
        """Puts a package with these features (all by default) in force without applying it: the toggles keep
        what they have. For tests of the rules the package decides, starting from a known state."""
        package = await self.package(await Partner.get(id=customer.partner_id), features, title="Entitlement")
        await PackageAssignment.filter(current_customer_id=customer.id).update(current_customer_id=None)
        return await PackageAssignment.create(
            customer_id=customer.id,
            partner_id=customer.partner_id,
            package_id=package.id,
            current_customer_id=customer.id,
            version=package.version,
            snapshot=snapshot(package),
            assigned_at=datetime.now(UTC),
        )

    async def with_portal(self, tenant: Tenant) -> Tenant:
        """Each of the tenant's customers on a full package (portal and team members on, five seats), as a
        customer must be before it can have a portal or a team."""
        package = await self.package(tenant.partner, user_count=5)
        for customer in tenant.customers:
            await self.give(customer, package)
        return tenant

    async def tenant(self, customers: int = 2, name: str | None = None) -> Tenant:
        partner, owner = await self.partner(name)
        made = [await self.customer(partner) for _ in range(customers)]
        return Tenant(partner, owner, [c for c, _ in made], [u for _, u in made])


@pytest.fixture
def factory(database: str) -> Factory:
    return Factory()


class QueryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.queries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(("Created connection pool", "Closed connection pool")):
            self.queries.append(message)


@contextmanager
def count_queries() -> Iterator[QueryCounter]:
    """Counts SQL statements Tortoise sends while the block runs."""
    logger = logging.getLogger("tortoise.db_client")
    handler, level = QueryCounter(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def gid(type_name: str, pk: int) -> str:
    from resolvers.common import encode_global_id

    return encode_global_id(type_name, pk)


async def gather(*aws: Any) -> list[Any]:
    return await asyncio.gather(*aws)


async def eventually(check: Callable[[], Awaitable[object]], *, tries: int, pause: float) -> bool:
    """Asks `check` up to `tries` times, `pause` seconds apart, until it answers something true; whether it did."""
    for _ in range(tries):
        if await check():
            return True
        await asyncio.sleep(pause)
    return False
