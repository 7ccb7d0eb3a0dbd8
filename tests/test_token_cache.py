"""The token cache: a process answers a bearer token it authenticated a moment ago from memory, and every
revocation clears it at once, in the process that commits it and, through Redis, in every other API process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.access import token_cache
from domain.accounts.models import Session
from domain.config import overridden
from tests.conftest import GQL, REDIS_URL, Factory, count_queries, gid
from tests.servers import create_admin, fresh_database, live_server
from tests.test_access import CUSTOMER_NAME, KEY_REVOKE, KEYS, enable, new_key

ME = "{ me { id email } }"
LOGOUT = "mutation { logout { ok errors { code } } }"
DISABLE = "mutation($i: CustomerDisableInput!) { customerDisable(input: $i) { errors { code } } }"


@pytest.fixture(autouse=True)
def cache_on() -> Iterator[None]:
    token_cache.tokens.clear()
    with overridden(auth_cache_seconds=300):
        yield
    token_cache.tokens.clear()


async def test_a_repeated_token_is_answered_from_memory(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    await gql(ME, token=token)
    # when
    with count_queries() as counter:
        data = await gql(ME, token=token)
    # then no session lookup: only the query's own read of the user
    assert data["me"]["email"] == owner.email
    assert not any('FROM "session"' in q for q in counter.queries), counter.queries


async def test_signing_out_ends_the_cached_session_at_once(gql: GQL, factory: Factory) -> None:
    # given a session this process has cached
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    assert (await gql.raw(ME, token=token)).status_code == 200
    # when
    assert (await gql(LOGOUT, token=token))["logout"]["ok"] is True
    # then
    assert (await gql.raw(ME, token=token)).status_code == 401


async def test_revoking_a_cached_api_key_stops_it_at_once(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    token = await gql.login(tenant.owner.email)
    await enable(customer, api_access=True, api_keys_menu=True)
    secret = await new_key(gql, token, customer, ["READ"])
    assert (await gql.raw(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret)).status_code == 200
    keys = await gql(KEYS, {"c": gid("Customer", customer.id)}, token)
    key_id = keys["apiKeys"]["edges"][0]["node"]["id"]
    # when
    revoked = await gql(KEY_REVOKE, {"i": {"apiKeyId": key_id}}, token)
    # then
    assert revoked["apiKeyRevoke"]["errors"] == []
    assert (await gql.raw(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret)).status_code == 401


async def test_disabling_a_customer_ends_its_cached_sessions_at_once(gql: GQL, factory: Factory) -> None:
    # given a customer admin whose session is cached
    tenant = await factory.tenant(customers=1)
    member_token = await gql.login(tenant.admins[0].email)
    assert (await gql.raw(ME, token=member_token)).status_code == 200
    staff = await gql.login(tenant.owner.email)
    # when
    data = await gql(DISABLE, {"i": {"customerId": gid("Customer", tenant.customers[0].id)}}, staff)
    # then
    assert data["customerDisable"]["errors"] == []
    assert (await gql.raw(ME, token=member_token)).status_code == 401


async def test_a_cached_session_never_outlives_its_expiry(gql: GQL, factory: Factory) -> None:
    # given a session that expires in a moment
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    await Session.filter(user_id=owner.id).update(expires_at=datetime.now(UTC) + timedelta(seconds=1))
    assert (await gql.raw(ME, token=token)).status_code == 200
    # when it has expired
    await asyncio.sleep(1.2)
    # then the cache does not vouch for it
    assert (await gql.raw(ME, token=token)).status_code == 401


# --- two API processes ---------------------------------------------------------------------------------------------


async def call(base: str, query: str, token: str, variables: dict[str, Any] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{base}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {token}"},
        )


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_revocation_clears_the_cache_of_a_second_process_at_once(tmp_path: Path) -> None:
    # given two API processes on one database and one Redis, caching tokens for 5 minutes
    with fresh_database(tmp_path) as url:
        email, password = create_admin(url)
        shared = {
            "REDIS_URL": REDIS_URL or "",
            "DRAMATIQ_NAMESPACE": f"pd-cache-{uuid.uuid4().hex[:6]}",
            "REDIS_KEY_PREFIX": f"pd-cache-{uuid.uuid4().hex[:6]}",
            "AUTH_CACHE_SECONDS": "300",
        }
        with live_server(url, tmp_path, **shared) as base_a, live_server(url, tmp_path, **shared) as base_b:
            async with httpx.AsyncClient(timeout=30) as client:
                login = await client.post(
                    f"{base_a}/graphql",
                    json={
                        "query": "mutation($i: LoginInput!) { login(input: $i) { token } }",
                        "variables": {"i": {"login": email, "password": password}},
                    },
                )
            token = login.json()["data"]["login"]["token"]
            assert (await call(base_b, ME, token)).status_code == 200  # B has it cached now
            # when the session is signed out through A
            assert (await call(base_a, LOGOUT, token)).json()["data"]["logout"]["ok"] is True
            # then B refuses it as soon as the revocation reaches it (milliseconds; the cache would keep it 5 min)
            statuses = []
            for _ in range(50):
                statuses.append((await call(base_b, ME, token)).status_code)
                if statuses[-1] == 401:
                    break
                await asyncio.sleep(0.1)
            assert statuses[-1] == 401, statuses
