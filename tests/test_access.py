"""API keys and embed tokens: issuing (secret shown once, stored hashed), who may manage them, bearer auth over
HTTP GraphQL and ingestion, permissions per operation kind, rate limits per tier, embed sections, revocation,
expiry, and the audit trail."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage

from domain.access import services as access
from domain.access.models import ApiKey, EmbedToken
from domain.accounts.models import Role
from domain.audit.models import AuditEvent
from domain.customers.models import Customer, CustomerStatus
from domain.features.models import FeatureToggles
from domain.viewer import Viewer
from server.graphql import GraphQLView
from server.ratelimit import ApiRateLimiter, RateLimited, window_stats
from server.settings import get_settings
from tests.conftest import GQL, REDIS_URL, Factory, count_queries, gid

KEY_CREATE = """mutation($i: ApiKeyCreateInput!) { apiKeyCreate(input: $i) {
  apiKey { id name prefix permissions tier rateLimitPerMinute requestsPerMinute createdAt lastUsedAt revokedAt }
  secret errors { field code message } } }"""
KEY_REVOKE = """mutation($i: ApiKeyRevokeInput!) { apiKeyRevoke(input: $i) {
  apiKey { id revokedAt } errors { field code } } }"""
KEYS = """query($c: ID!) { apiKeys(customerId: $c) { totalCount edges { node {
  id name prefix permissions tier lastUsedAt revokedAt } } } }"""
EMBED_CREATE = """mutation($i: EmbedTokenCreateInput!) { embedTokenCreate(input: $i) {
  embedToken { id sections expiresAt createdAt revokedAt } token url errors { field code message } } }"""
EMBED_REVOKE = """mutation($i: EmbedTokenRevokeInput!) { embedTokenRevoke(input: $i) {
  embedToken { id revokedAt } errors { field code } } }"""
EMBEDS = """query($c: ID!) { embedTokens(customerId: $c) { totalCount edges { node { id sections revokedAt } } } }"""
RECORD = """mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted duplicates
  rejected { index code message } errors { code message } } }"""
CUSTOMER_NAME = "query($id: ID!) { customer(id: $id) { id name } }"


async def enable(customer: Customer, **toggles: bool) -> None:
    """Sets toggles straight in the database, on top of a customer with its portal on."""
    await FeatureToggles.bulk_create(
        [FeatureToggles(customer_id=customer.id, portal_enabled=True)], ignore_conflicts=True
    )
    await FeatureToggles.filter(customer_id=customer.id).update(**toggles)


def sms(customer: Customer) -> dict[str, Any]:
    return {
        "idempotencyKey": uuid.uuid4().hex,
        "customerId": gid("Customer", customer.id),
        "unitType": "SMS_SEGMENTS",
        "quantity": "1",
        "occurredAt": datetime.now(UTC).isoformat(),
    }


async def issue_key(
    gql: GQL,
    token: str,
    customer: Customer,
    permissions: list[str],
    tier: str = "STANDARD",
    limit: int | None = None,
    name: str = "pipeline",
) -> dict[str, Any]:
    data = await gql(
        KEY_CREATE,
        {
            "i": {
                "customerId": gid("Customer", customer.id),
                "name": name,
                "permissions": permissions,
                "tier": tier,
                "rateLimitPerMinute": limit,
            }
        },
        token,
    )
    return data["apiKeyCreate"]


async def new_key(gql: GQL, token: str, customer: Customer, permissions: list[str], **kw: Any) -> str:
    payload = await issue_key(gql, token, customer, permissions, **kw)
    assert payload["errors"] == [], payload
    return payload["secret"]


def code(body: dict[str, Any]) -> str:
    return body["errors"][0]["extensions"]["code"]


@pytest.fixture
async def setup(gql: GQL, factory: Factory) -> tuple[Any, str]:
    """A partner with two customers; the first has API access and embeds on. Returns (tenant, its admin's token)."""
    tenant = await factory.tenant(customers=2)
    await enable(tenant.customers[0], api_access=True, embed_urls_enabled=True)
    return tenant, await gql.login(tenant.admins[0].email)


# --- API keys: issuing, listing, revoking ---------------------------------------------------------------------------


async def test_key_is_shown_once_and_stored_hashed(gql: GQL, setup: tuple[Any, str]) -> None:
    # given
    tenant, token = setup
    customer = tenant.customers[0]
    # when
    payload = await issue_key(gql, token, customer, ["READ", "WRITE"], name="  Metering  ")
    # then
    assert payload["errors"] == []
    key = payload["apiKey"]
    row = await ApiKey.get(customer_id=customer.id)
    secret = payload["secret"]
    assert secret.startswith(f"pd_live_{row.id}_") and len(secret) > 40
    assert key["prefix"] == row.prefix and secret.startswith(key["prefix"]) and len(key["prefix"]) < len(secret) - 30
    assert key["name"] == "Metering" and key["permissions"] == ["READ", "WRITE"] and key["tier"] == "STANDARD"
    assert key["requestsPerMinute"] == 100 and key["rateLimitPerMinute"] is None
    assert key["lastUsedAt"] is None and key["revokedAt"] is None
    raw_secret = secret.removeprefix(f"pd_live_{row.id}_")[:-6]  # the last 6 characters are its checksum
    assert row.secret_hash == hashlib.sha256(raw_secret.encode()).hexdigest()
    stored = " ".join(str(v) for v in (await ApiKey.filter(id=row.id).values())[0].values())
    assert raw_secret not in stored
    # the listing never shows the secret again (the type has no such field), and shows the key
    listed = (await gql(KEYS, {"c": gid("Customer", customer.id)}, token))["apiKeys"]
    assert listed["totalCount"] == 1 and listed["edges"][0]["node"]["prefix"] == key["prefix"]
    assert raw_secret not in str(listed)
    # the audit trail records the creation, without the secret
    event = await AuditEvent.get(action="api_key.create")
    assert event.object_id == str(row.id) and event.customer_id == customer.id
    assert raw_secret not in str(event.details) and event.details["permissions"] == ["READ", "WRITE"]


async def test_keys_end_in_a_checksum_and_typos_are_refused_without_a_lookup(gql: GQL, setup: tuple[Any, str]) -> None:
    # given a new key
    tenant, token = setup
    customer = tenant.customers[0]
    key = await new_key(gql, token, customer, ["READ"])
    variables = {"id": gid("Customer", customer.id)}
    # then it matches the pattern secret scanners look for, and its last 6 characters are the CRC32 of the rest
    assert re.fullmatch(r"pd_live_[0-9]+_[0-9A-Za-z]{46}", key), key
    assert key[-6:] == access.checksum(key[:-6])
    assert (await gql.raw(CUSTOMER_NAME, variables, key)).status_code == 200
    # when a character is mistyped (or dropped)
    typo = key[:-10] + ("A" if key[-10] != "A" else "B") + key[-9:]
    with count_queries() as queries:
        refused = [await access.authenticate_token(t, Viewer.anonymous()) for t in (typo, key[:-1], key + "0")]
    # then it is refused before any query
    assert refused == [None, None, None]
    assert queries.queries == []
    assert (await gql.raw(CUSTOMER_NAME, variables, typo)).status_code == 401


async def test_keys_from_before_the_checksum_keep_working(gql: GQL, setup: tuple[Any, str]) -> None:
    # given a key issued in the old format (43 characters of token_urlsafe, no checksum)
    tenant, token = setup
    customer = tenant.customers[0]
    await new_key(gql, token, customer, ["READ"])
    row = await ApiKey.get(customer_id=customer.id)
    legacy_secret = "abc-DEF_" + "x" * 35
    await ApiKey.filter(id=row.id).update(secret_hash=hashlib.sha256(legacy_secret.encode()).hexdigest())
    # when
    answer = await gql.raw(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, f"pd_live_{row.id}_{legacy_secret}")
    # then
    assert answer.status_code == 200, answer.text


async def test_revoked_key_answers_401_everywhere(gql: GQL, setup: tuple[Any, str], client: httpx.AsyncClient) -> None:
    # given
    tenant, token = setup
    customer = tenant.customers[0]
    payload = await issue_key(gql, token, customer, ["READ", "WRITE"])
    secret, key_id = payload["secret"], payload["apiKey"]["id"]
    assert (await gql(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret))["customer"]["name"]
    # when
    revoked = (await gql(KEY_REVOKE, {"i": {"apiKeyId": key_id}}, token))["apiKeyRevoke"]
    again = (await gql(KEY_REVOKE, {"i": {"apiKeyId": key_id}}, token))["apiKeyRevoke"]
    # then
    assert revoked["errors"] == [] and revoked["apiKey"]["revokedAt"] is not None
    assert again["errors"] == [] and again["apiKey"]["revokedAt"] == revoked["apiKey"]["revokedAt"]
    response = await gql.raw(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    ingest = await client.post("/v1/usage/events", json=[sms(customer)], headers={"authorization": f"Bearer {secret}"})
    assert ingest.status_code == 401
    assert await AuditEvent.filter(action="api_key.revoke").count() == 1  # revoking twice is one event
    listed = (await gql(KEYS, {"c": gid("Customer", customer.id)}, token))["apiKeys"]
    assert listed["edges"][0]["node"]["revokedAt"] is not None


async def test_key_needs_the_api_access_feature(gql: GQL, setup: tuple[Any, str]) -> None:
    # given: the second customer has API access off
    tenant, _ = setup
    partner_admin = await gql.login(tenant.owner.email)
    # when
    refused = await issue_key(gql, partner_admin, tenant.customers[1], ["READ"])
    # then
    assert refused["apiKey"] is None and refused["secret"] is None
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [("REQUIRES_FEATURE", "customerId")]
    assert await ApiKey.all().count() == 0


async def test_switching_api_access_off_stops_existing_keys(gql: GQL, setup: tuple[Any, str]) -> None:
    tenant, token = setup
    customer = tenant.customers[0]
    secret = await new_key(gql, token, customer, ["READ"])
    assert (await gql.raw(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret)).status_code == 200
    await enable(customer, api_access=False)
    assert (await gql.raw(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret)).status_code == 401


async def test_who_may_manage_keys(gql: GQL, factory: Factory, setup: tuple[Any, str]) -> None:
    # given
    tenant, customer_admin = setup
    customer = tenant.customers[0]
    other = await factory.tenant(customers=1)
    await enable(other.customers[0], api_access=True)
    partner_admin = await gql.login(tenant.owner.email)
    member = await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)
    colleague = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    platform = await factory.admin()
    # then: the customer's admin, its partner's admin and platform admins may
    for token in (customer_admin, partner_admin, await gql.login(platform.email)):
        assert (await issue_key(gql, token, customer, ["READ"]))["errors"] == []
    # partner members and customer members may not; another partner's customer does not exist for them
    for user in (member, colleague):
        refused = await issue_key(gql, await gql.login(user.email), customer, ["READ"])
        assert [e["code"] for e in refused["errors"]] == ["FORBIDDEN"]
    for token in (customer_admin, partner_admin):
        hidden = await issue_key(gql, token, other.customers[0], ["READ"])
        assert [(e["code"], e["field"]) for e in hidden["errors"]] == [("NOT_FOUND", "customerId")]
    other_admin = await gql.login(other.owner.email)
    response = await gql.raw(KEYS, {"c": gid("Customer", customer.id)}, other_admin)
    assert code(response.json()) == "NOT_FOUND"
    key_id = (await gql(KEYS, {"c": gid("Customer", customer.id)}, customer_admin))["apiKeys"]["edges"][0]["node"]["id"]
    foreign = (await gql(KEY_REVOKE, {"i": {"apiKeyId": key_id}}, other_admin))["apiKeyRevoke"]
    assert (await gql("query($id: ID!) { node(id: $id) { id } }", {"id": key_id}, other_admin))["node"] is None
    assert [e["code"] for e in foreign["errors"]] == ["NOT_FOUND"]
    assert await ApiKey.filter(revoked_at__isnull=False).count() == 0


async def test_key_input_validation(gql: GQL, setup: tuple[Any, str]) -> None:
    tenant, token = setup
    customer = tenant.customers[0]
    no_perms = await issue_key(gql, token, customer, [])
    assert [(e["field"], e["code"]) for e in no_perms["errors"]] == [("permissions", "REQUIRED")]
    no_limit = await issue_key(gql, token, customer, ["READ"], tier="ENTERPRISE")
    assert [(e["field"], e["code"]) for e in no_limit["errors"]] == [("rateLimitPerMinute", "INVALID")]
    stray_limit = await issue_key(gql, token, customer, ["READ"], tier="PREMIUM", limit=10)
    assert [(e["field"], e["code"]) for e in stray_limit["errors"]] == [("rateLimitPerMinute", "INVALID")]
    blank = await issue_key(gql, token, customer, ["READ"], name="  ")
    assert [(e["field"], e["code"]) for e in blank["errors"]] == [("name", "REQUIRED")]
    enterprise = await issue_key(gql, token, customer, ["ADMIN", "READ", "READ"], tier="ENTERPRISE", limit=7)
    assert enterprise["errors"] == []
    assert enterprise["apiKey"]["permissions"] == ["READ", "ADMIN"]
    assert enterprise["apiKey"]["requestsPerMinute"] == 7
    premium = await issue_key(gql, token, customer, ["READ"], tier="PREMIUM")
    assert premium["apiKey"]["requestsPerMinute"] == 500


# --- API keys: authentication and permissions ----------------------------------------------------------------------


async def test_key_authenticates_and_acts_as_its_customer(gql: GQL, setup: tuple[Any, str]) -> None:
    # given
    tenant, token = setup
    mine, theirs = tenant.customers
    secret = await new_key(gql, token, mine, ["READ"])
    # when
    data = await gql("{ customers { totalCount edges { node { id } } } }", token=secret)
    other = await gql(CUSTOMER_NAME, {"id": gid("Customer", theirs.id)}, secret)
    # then: it sees its own customer only
    assert data["customers"]["totalCount"] == 1
    assert data["customers"]["edges"][0]["node"]["id"] == gid("Customer", mine.id)
    assert other["customer"] is None


async def test_last_used_at_is_written_at_most_once_a_minute(gql: GQL, setup: tuple[Any, str]) -> None:
    tenant, token = setup
    customer = tenant.customers[0]
    secret = await new_key(gql, token, customer, ["READ"])
    await gql(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret)
    first = (await ApiKey.get(customer_id=customer.id)).last_used_at
    assert first is not None and datetime.now(UTC) - first < timedelta(seconds=30)
    await gql(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret)
    assert (await ApiKey.get(customer_id=customer.id)).last_used_at == first
    # a minute later the next request moves it on
    await ApiKey.filter(customer_id=customer.id).update(last_used_at=first - timedelta(minutes=2))
    await gql(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, secret)
    assert (await ApiKey.get(customer_id=customer.id)).last_used_at > first - timedelta(seconds=1)
    listed = (await gql(KEYS, {"c": gid("Customer", customer.id)}, token))["apiKeys"]["edges"][0]["node"]
    assert listed["lastUsedAt"] is not None


async def test_read_key_cannot_mutate_and_write_key_can(gql: GQL, setup: tuple[Any, str]) -> None:
    # given
    tenant, token = setup
    customer = tenant.customers[0]
    reader = await new_key(gql, token, customer, ["READ"])
    writer = await new_key(gql, token, customer, ["WRITE"])
    batch = {"i": {"events": [sms(customer)]}}
    # when
    refused = await gql.raw(RECORD, batch, reader)
    accepted = await gql(RECORD, batch, writer)
    # then: the refused operation ran nothing and says why
    body = refused.json()
    assert refused.status_code == 200 and code(body) == "FORBIDDEN" and "WRITE" in body["errors"][0]["message"]
    assert body.get("data") is None
    assert accepted["usageRecord"]["accepted"] == 1 and accepted["usageRecord"]["errors"] == []
    # the write is attributed to the key in the audit trail
    key_id = (await ApiKey.get(customer_id=customer.id, permissions=["WRITE"])).id
    events = await AuditEvent.filter(actor_api_key_id=key_id)
    assert events and all(e.actor_label and "API key" in e.actor_label for e in events)
    trail = await gql(
        "query($c: ID) { auditEvents(filter: {customerId: $c}) { nodes { type actorApiKey { id prefix } } } }",
        {"c": gid("Customer", customer.id)},
        token,
    )
    by_key = [n for n in trail["auditEvents"]["nodes"] if n["actorApiKey"]]
    assert by_key and all(n["actorApiKey"]["id"] == gid("ApiKey", key_id) for n in by_key)
    # a write-only key may not read
    assert code((await gql.raw(CUSTOMER_NAME, {"id": gid("Customer", customer.id)}, writer)).json()) == "FORBIDDEN"


async def test_delete_and_admin_permissions(gql: GQL, setup: tuple[Any, str]) -> None:
    tenant, token = setup
    customer = tenant.customers[0]
    writer = await new_key(gql, token, customer, ["READ", "WRITE", "DELETE"])
    admin = await new_key(gql, token, customer, ["ADMIN"])
    victim = (await issue_key(gql, token, customer, ["READ"]))["apiKey"]["id"]
    # keys manage keys only with ADMIN: neither listing nor issuing nor revoking without it
    assert code((await gql.raw(KEYS, {"c": gid("Customer", customer.id)}, writer)).json()) == "FORBIDDEN"
    issue = await gql.raw(
        KEY_CREATE, {"i": {"customerId": gid("Customer", customer.id), "name": "x", "permissions": ["ADMIN"]}}, writer
    )
    assert code(issue.json()) == "FORBIDDEN"
    assert code((await gql.raw(KEY_REVOKE, {"i": {"apiKeyId": victim}}, writer)).json()) == "FORBIDDEN"
    node = await gql("query($id: ID!) { node(id: $id) { id } }", {"id": victim}, writer)
    assert node["node"] is None  # not through `node` either
    # an ADMIN key may do all of it
    made = await issue_key(gql, admin, customer, ["READ"], name="made by a key")
    assert made["errors"] == []
    assert (await gql(KEY_REVOKE, {"i": {"apiKeyId": victim}}, admin))["apiKeyRevoke"]["errors"] == []
    assert (await gql(KEYS, {"c": gid("Customer", customer.id)}, admin))["apiKeys"]["totalCount"] == 4
    event = await AuditEvent.get(action="api_key.create", object_id=str((await ApiKey.get(name="made by a key")).id))
    assert event.actor_api_key_id is not None and event.actor_user_id is None
    # but nobody's personal account through a key, not even with ADMIN
    assert code((await gql.raw("mutation { logout { errors { code } } }", token=admin)).json()) == "FORBIDDEN"


async def test_ingestion_with_keys(gql: GQL, setup: tuple[Any, str], client: httpx.AsyncClient) -> None:
    tenant, token = setup
    customer, other = tenant.customers
    writer = await new_key(gql, token, customer, ["WRITE"])
    reader = await new_key(gql, token, customer, ["READ"])
    ok = await client.post(
        "/v1/usage/events", json=[sms(customer), sms(other)], headers={"authorization": f"Bearer {writer}"}
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    # its own customer's usage only: the other customer is not visible to the key
    assert body["accepted"] == 1 and [r["code"] for r in body["rejected"]] == ["NOT_FOUND"]
    refused = await client.post("/v1/usage/events", json=[sms(customer)], headers={"authorization": f"Bearer {reader}"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"
    bogus = await client.post(
        "/v1/usage/events", json=[sms(customer)], headers={"authorization": f"Bearer {writer[:-2]}xx"}
    )
    assert bogus.status_code == 401


async def test_authenticate_token_dispatch_and_rechecks(gql: GQL, setup: tuple[Any, str]) -> None:
    tenant, token = setup
    customer = tenant.customers[0]
    secret = await new_key(gql, token, customer, ["READ"])
    base = Viewer.anonymous(ip="198.51.100.1", request_id="r1")
    # sessions, keys, and nothing else
    person = await access.authenticate_token(token, base)
    assert person is not None and person.user_id == tenant.admins[0].id and person.api_key_id is None
    machine = await access.authenticate_token(secret, base)
    assert machine is not None and machine.customer_id == customer.id and machine.partner_id == tenant.partner.id
    assert machine.api_key_id is not None and machine.api_permissions == frozenset({"READ"})
    assert machine.ip == "198.51.100.1" and machine.request_id == "r1" and machine.rate_limit_per_minute == 100
    key_id = machine.api_key_id
    for bad in (
        "",
        "Bearer x",
        "pd_live_",
        f"pd_live_{key_id}",
        f"pd_live_{key_id}_",
        f"pd_live_{key_id}_wrong",
        f"pd_live_x{key_id}_{secret.rpartition('_')[2]}",
        f"pd_live_{key_id + 1}_{secret.removeprefix(f'pd_live_{key_id}_')}",
        f"pd_embed_{key_id}_{secret.removeprefix(f'pd_live_{key_id}_')}",
        "pd_live_99999999999999999999999_abc",
        secret + "x" * 300,
    ):
        assert await access.authenticate_token(bad, base) is None, bad
    # a live connection re-checking its token loses it once the customer is disabled
    await Customer.filter(id=customer.id).update(status=CustomerStatus.DISABLED)
    assert await access.authenticate_token(secret, base) is None


# --- rate limits -------------------------------------------------------------------------------------------------------


async def test_rate_limit_per_key(gql: GQL, setup: tuple[Any, str], client: httpx.AsyncClient) -> None:
    # given: an ENTERPRISE key allowed 3 requests a minute
    tenant, token = setup
    customer = tenant.customers[0]
    secret = await new_key(gql, token, customer, ["READ", "WRITE"], tier="ENTERPRISE", limit=3)
    other = await new_key(gql, token, customer, ["READ"], tier="ENTERPRISE", limit=3)
    variables = {"id": gid("Customer", customer.id)}
    # when
    answers = [await gql.raw(CUSTOMER_NAME, variables, secret) for _ in range(3)]
    limited = await gql.raw(CUSTOMER_NAME, variables, secret)
    # then every answer says where the key stands (RateLimit headers, draft-ietf-httpapi-ratelimit-headers)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert {a.headers["ratelimit-policy"] for a in answers} == {'"api-key";q=3;w=60'}
    remaining = [int(a.headers["ratelimit"].split(";r=")[1].split(";")[0]) for a in answers]
    assert remaining == [2, 1, 0]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert code(limited.json()) == "RATE_LIMITED"
    assert limited.headers["ratelimit"].startswith('"api-key";r=0;t=')
    # ingestion counts against the same window
    ingest = await client.post("/v1/usage/events", json=[sms(customer)], headers={"authorization": f"Bearer {secret}"})
    assert ingest.status_code == 429 and ingest.json()["error"]["code"] == "RATE_LIMITED"
    assert int(ingest.headers["retry-after"]) >= 1
    assert ingest.headers["ratelimit-policy"] == '"api-key";q=3;w=60'
    # other keys and people are not affected (and people get no RateLimit headers: they are not limited so)
    assert (await gql.raw(CUSTOMER_NAME, variables, other)).status_code == 200
    for _ in range(5):
        person = await gql.raw(CUSTOMER_NAME, variables, token)
        assert person.status_code == 200 and "ratelimit" not in person.headers


async def _limited_after(limiter_a: ApiRateLimiter, limiter_b: ApiRateLimiter, viewer: Viewer) -> int:
    """Alternates requests between two limiters until one refuses; returns how many were allowed."""
    allowed = 0
    for i in range(10):
        try:
            await (limiter_a if i % 2 == 0 else limiter_b).check(viewer)
        except RateLimited as exc:
            assert 1 <= exc.retry_after <= 60
            return allowed
        allowed += 1
    return allowed


async def test_memory_limiter_counts_per_process() -> None:
    viewer = Viewer(role=Role.CUSTOMER_ADMIN, customer_id=1, api_key_id=1, rate_limit_per_minute=4)
    limiter = ApiRateLimiter(None)
    assert await _limited_after(limiter, limiter, viewer) == 4
    # sessions are never limited
    person = Viewer(role=Role.CUSTOMER_ADMIN, customer_id=1, user_id=1)
    for _ in range(10):
        await limiter.check(person)


@pytest.mark.redis
async def test_redis_limiter_shares_the_window_between_processes() -> None:
    # two limiters on one Redis stand for two server processes
    prefix = f"partnerdesk-test-{uuid.uuid4().hex[:8]}"
    first, second = ApiRateLimiter(REDIS_URL, key_prefix=prefix), ApiRateLimiter(REDIS_URL, key_prefix=prefix)
    viewer = Viewer(role=Role.CUSTOMER_ADMIN, customer_id=1, api_key_id=7, rate_limit_per_minute=4)
    assert await _limited_after(first, second, viewer) == 4
    fresh = Viewer(role=Role.CUSTOMER_ADMIN, customer_id=1, api_key_id=8, rate_limit_per_minute=4)
    await second.check(fresh)
    # and the server counts in Redis whenever REDIS_URL is set
    view = GraphQLView(get_settings().model_copy(update={"redis_url": REDIS_URL}))
    assert isinstance(view.rate_limiter.limiter.storage, RedisStorage)
    assert isinstance(GraphQLView(get_settings()).rate_limiter.limiter.storage, MemoryStorage)


# --- embed tokens ------------------------------------------------------------------------------------------------------


async def issue_embed(gql: GQL, token: str, customer: Customer, sections: list[str], seconds: int = 3600) -> dict:
    data = await gql(
        EMBED_CREATE,
        {"i": {"customerId": gid("Customer", customer.id), "sections": sections, "expiresInSeconds": seconds}},
        token,
    )
    return data["embedTokenCreate"]


async def test_embed_token_reads_its_sections_only(gql: GQL, setup: tuple[Any, str]) -> None:
    # given
    tenant, token = setup
    customer, other = tenant.customers
    payload = await issue_embed(gql, token, customer, ["WALLET", "SPENDING_CAP"])
    assert payload["errors"] == []
    embed = payload["token"]
    row = await EmbedToken.get(customer_id=customer.id)
    assert embed.startswith(f"pd_embed_{row.id}_") and payload["url"].endswith(f"/embed?token={embed}")
    assert payload["url"].startswith("http")
    assert payload["embedToken"]["sections"] == ["WALLET", "SPENDING_CAP"]
    raw = embed.removeprefix(f"pd_embed_{row.id}_")
    assert row.secret_hash == hashlib.sha256(raw.encode()).hexdigest()
    cid = {"id": gid("Customer", customer.id)}
    # when / then: its sections
    data = await gql(
        "query($id: ID!) { customer(id: $id) { name wallet { balance { amount } } spendingCap { status } } }",
        cid,
        embed,
    )
    assert data["customer"]["name"] and data["customer"]["wallet"]["balance"]["amount"]
    assert data["customer"]["spendingCap"]["status"]
    # nothing else: other sections, other fields, other root fields, fragments, mutations
    for query in (
        "query($id: ID!) { customer(id: $id) { credits { available } } }",
        "query($id: ID!) { customer(id: $id) { partner { name } } }",
        "query($id: ID!) { customer(id: $id) { billing { billingMode } } }",
        "query($id: ID!) { customer(id: $id) { ...F } } fragment F on Customer { teamMembers { totalCount } }",
        "query($id: ID!) { usageEvents(customerId: $id) { totalCount } }",
        "query($id: ID!) { node(id: $id) { id } }",
        "query($id: ID!) { customer(id: $id) { id } me { id } }",
    ):
        response = await gql.raw(query, cid, embed)
        assert response.status_code == 200 and code(response.json()) == "FORBIDDEN", query
    mutation = await gql.raw(RECORD, {"i": {"events": [sms(customer)]}}, embed)
    assert code(mutation.json()) == "FORBIDDEN"
    keys = await gql.raw(KEYS, {"c": gid("Customer", customer.id)}, embed)
    assert code(keys.json()) == "FORBIDDEN"
    # and one customer only
    assert (await gql(CUSTOMER_NAME, {"id": gid("Customer", other.id)}, embed))["customer"] is None


async def test_embed_usage_dashboard_section(gql: GQL, setup: tuple[Any, str], client: httpx.AsyncClient) -> None:
    tenant, token = setup
    customer = tenant.customers[0]
    embed = (await issue_embed(gql, token, customer, ["USAGE_DASHBOARD"]))["token"]
    data = await gql(
        "query($id: ID!) { usageEvents(customerId: $id) { totalCount } }", {"id": gid("Customer", customer.id)}, embed
    )
    assert data["usageEvents"]["totalCount"] == 0
    wallet = await gql.raw(
        "query($id: ID!) { customer(id: $id) { wallet { id } } }", {"id": gid("Customer", customer.id)}, embed
    )
    assert code(wallet.json()) == "FORBIDDEN"
    ingest = await client.post("/v1/usage/events", json=[sms(customer)], headers={"authorization": f"Bearer {embed}"})
    assert ingest.status_code == 403


async def test_embed_token_expiry_revocation_and_features(gql: GQL, setup: tuple[Any, str]) -> None:
    tenant, token = setup
    customer = tenant.customers[0]
    cid = {"id": gid("Customer", customer.id)}
    # bounded expiry
    for seconds in (59, 30 * 24 * 3600 + 1):
        bad = await issue_embed(gql, token, customer, ["WALLET"], seconds)
        assert [(e["field"], e["code"]) for e in bad["errors"]] == [("expiresInSeconds", "INVALID")]
    assert [e["code"] for e in (await issue_embed(gql, token, customer, []))["errors"]] == ["REQUIRED"]
    # expired → 401
    expiring = await issue_embed(gql, token, customer, ["WALLET"], 60)
    assert (await gql.raw(CUSTOMER_NAME, cid, expiring["token"])).status_code == 200
    await EmbedToken.filter(customer_id=customer.id).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await gql.raw(CUSTOMER_NAME, cid, expiring["token"])).status_code == 401
    # revoked → 401
    live = await issue_embed(gql, token, customer, ["WALLET"])
    assert (await gql.raw(CUSTOMER_NAME, cid, live["token"])).status_code == 200
    revoked = (await gql(EMBED_REVOKE, {"i": {"embedTokenId": live["embedToken"]["id"]}}, token))["embedTokenRevoke"]
    assert revoked["errors"] == [] and revoked["embedToken"]["revokedAt"]
    assert (await gql.raw(CUSTOMER_NAME, cid, live["token"])).status_code == 401
    listed = (await gql(EMBEDS, {"c": gid("Customer", customer.id)}, token))["embedTokens"]
    assert listed["totalCount"] == 2
    assert await AuditEvent.filter(action__in=["embed_token.create", "embed_token.revoke"]).count() == 3
    # switching embeds (or the portal they live in) off refuses new tokens and stops existing ones
    current = await issue_embed(gql, token, customer, ["WALLET"])
    await enable(customer, portal_enabled=False)
    assert (await gql.raw(CUSTOMER_NAME, cid, current["token"])).status_code == 401
    refused = await issue_embed(gql, token, customer, ["WALLET"])
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("customerId", "REQUIRES_FEATURE")]
    off = await issue_embed(gql, await gql.login(tenant.owner.email), tenant.customers[1], ["WALLET"])
    assert [e["code"] for e in off["errors"]] == ["REQUIRES_FEATURE"]


def test_guard_reads_the_whole_document() -> None:
    """Root fields behind fragments, subscriptions and nested selections are all checked before anything runs."""
    from graphql import parse

    from schema import schema
    from schema.access_guard import refusal

    graphql_schema = schema._schema
    reader = Viewer(role=Role.CUSTOMER_ADMIN, customer_id=1, api_key_id=1, api_permissions=frozenset({"READ"}))
    writer = Viewer(role=Role.CUSTOMER_ADMIN, customer_id=1, api_key_id=2, api_permissions=frozenset({"WRITE"}))
    wallet_embed = Viewer(
        role=Role.CUSTOMER_MEMBER, customer_id=1, embed_token_id=1, embed_sections=frozenset({"WALLET"})
    )

    def check(viewer: Viewer, document: str, operation: str | None = None) -> str | None:
        return refusal(viewer, graphql_schema, parse(document), operation)

    hidden_mutation = "mutation { ...M } fragment M on Mutation { usageRecord(input: {events: []}) { accepted } }"
    assert check(reader, hidden_mutation) is not None
    assert check(writer, hidden_mutation) is None
    two = "query Q { me { id } } mutation M { usageRecord(input: {events: []}) { accepted } }"
    assert check(reader, two, "Q") is None and check(reader, two, "M") is not None
    assert check(writer, two, "Q") is not None
    wallet = 'subscription { walletUpdated(customerId: "x") { id } }'
    credits = 'subscription { creditsUpdated(customerId: "x") { id } }'
    assert check(reader, wallet) is None and check(writer, wallet) is not None
    assert check(wallet_embed, wallet) is None and check(wallet_embed, credits) is not None
    nested = 'query { customer(id: "x") { ... on Customer { wallet { id } credits { available } } } }'
    assert check(wallet_embed, nested) is not None
    assert check(wallet_embed, 'query { customer(id: "x") { __typename id wallet { balance { amount } } } }') is None
    # people are never checked here
    person = Viewer(role=Role.CUSTOMER_MEMBER, customer_id=1, user_id=1)
    assert check(person, hidden_mutation) is None


# --- disabling the customer ----------------------------------------------------------------------------------------

STATUS = """mutation($d: CustomerDisableInput!, $e: CustomerEnableInput!) {
  customerDisable(input: $d) { errors { code } } customerEnable(input: $e) { errors { code } } }"""


async def test_enabling_a_customer_again_brings_back_no_key_or_embed_token(gql: GQL, setup: tuple[Any, str]) -> None:
    # given a key and an embed token in use before the partner disables the customer
    tenant, token = setup
    customer = tenant.customers[0]
    cid = {"id": gid("Customer", customer.id)}
    key = await new_key(gql, token, customer, ["READ"])
    embed = (await issue_embed(gql, token, customer, ["WALLET"]))["token"]
    assert [(await gql.raw(CUSTOMER_NAME, cid, t)).status_code for t in (key, embed)] == [200, 200]
    staff = await gql.login(tenant.owner.email)
    # when it is disabled, then enabled again
    switched = await gql(STATUS, {"d": {"customerId": cid["id"]}, "e": {"customerId": cid["id"]}}, staff)
    # then both stay dead, listed as revoked, and the customer's admin issues new ones
    assert switched == {"customerDisable": {"errors": []}, "customerEnable": {"errors": []}}
    assert [(await gql.raw(CUSTOMER_NAME, cid, t)).status_code for t in (key, embed)] == [401, 401]
    admin = await gql.login(tenant.admins[0].email)
    keys = (await gql(KEYS, {"c": cid["id"]}, admin))["apiKeys"]["edges"]
    embeds = (await gql(EMBEDS, {"c": cid["id"]}, admin))["embedTokens"]["edges"]
    assert [e["node"]["revokedAt"] is not None for e in keys + embeds] == [True, True]
    disabled = await AuditEvent.get(action="customer.disable")
    assert (disabled.details["api_keys_revoked"], disabled.details["embeds_revoked"]) == (1, 1)
    fresh = await new_key(gql, admin, customer, ["READ"])
    assert (await gql.raw(CUSTOMER_NAME, cid, fresh)).status_code == 200


@pytest.mark.redis
async def test_redis_limiter_counts_in_one_trip_on_the_librarys_window() -> None:
    # one limiter counting in one round trip, the library's own two calls on the same keys: one shared window
    prefix = f"partnerdesk-test-{uuid.uuid4().hex[:8]}"
    limiter = ApiRateLimiter(REDIS_URL, key_prefix=prefix)
    viewer = Viewer(role=Role.CUSTOMER_ADMIN, customer_id=1, api_key_id=9, rate_limit_per_minute=5)
    item, identity = RateLimitItemPerMinute(5), ("api-key", "9")
    try:
        # when
        states = [await limiter.check(viewer) for _ in range(3)]
        assert await limiter.limiter.hit(item, *identity)  # the library's hit, on the same keys
        library = await limiter.limiter.get_window_stats(item, *identity)
        last = await limiter.check(viewer)
        with pytest.raises(RateLimited) as refused:
            await limiter.check(viewer)
        # then
        assert [s.remaining for s in states if s] == [4, 3, 2]
        assert library.remaining == 1
        assert last is not None and last.remaining == 0
        assert refused.value.state is not None and refused.value.state.remaining == 0
        assert 1 <= refused.value.retry_after <= 60
        after = await limiter.limiter.get_window_stats(item, *identity)
        assert after.remaining == 0 and abs(after.reset_time - (time.time() + refused.value.retry_after)) <= 1.5
    finally:
        await limiter.close()


class _FixedWindow(MemoryStorage):
    """A storage whose sliding window reads as given (the library's conversion of the script's values)."""

    window: list[Any]

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        _, previous, previous_ttl, current, current_ttl = self.window
        return (
            int(previous or 0),
            max(0, float(previous_ttl)) / 1000,
            int(current or 0),
            max(0, float(current_ttl)) / 1000,
        )


async def test_one_trip_window_reads_as_the_library_reads_it() -> None:
    # the conversion of the script's answer follows limits' get_window_stats, for windows of every shape
    from limits.aio.strategies import SlidingWindowCounterRateLimiter

    item = RateLimitItemPerMinute(10)
    storage = _FixedWindow()
    for window in [
        [1, None, -2, None, -2],
        [1, None, -2, 3, 90_000],
        [1, 4, 30_000, 2, 90_000],
        [0, 7, 1_500, 0, 118_500],
        [0, 12, 59_000, 1, 61_000],
    ]:
        storage.window = window
        now = time.time()
        expected = await SlidingWindowCounterRateLimiter(storage).get_window_stats(item, "k")
        reset_time, remaining = window_stats(item, window, now)
        assert remaining == expected.remaining
        assert abs(reset_time - expected.reset_time) < 0.05
