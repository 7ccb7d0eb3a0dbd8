"""Sign-in, its throttling, sessions, disabled customers and organizations, through the GraphQL HTTP API."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
from argon2 import PasswordHasher

from domain import config as domain_config
from domain.accounts.commands import AdminCreate
from domain.accounts.models import Membership, Role, Session, User
from domain.accounts.services import admin_create, org_key
from domain.accounts.throttle import Scope, build_throttle
from domain.audit.models import AuditEvent, AuditEventType
from domain.config import limits_storage_uri as storage_uri
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.viewer import Viewer
from tests.conftest import GQL, PASSWORD, REDIS_URL, Factory, gather, gid, run_cli

LOGIN = """
mutation($i: LoginInput!) {
  login(input: $i) { token expiresAt retryAfter user { id email } errors { field code message } }
}
"""
OFFICE = "198.51.100.23"  # another client address than the test client's
LOGOUT = "mutation { logout { ok errors { code } } }"
ME = "{ me { id email } }"
ME_ORGS = "{ me { id organizations { id name kind role current active } } }"
CUSTOMERS = "{ customers { totalCount nodes { id name } } }"
SWITCH = """
mutation($i: OrganizationSwitchInput!) {
  organizationSwitch(input: $i) {
    organization { id kind role current }
    user { id }
    errors { field code }
  }
}
"""
CREATE_ORG = """
mutation($i: OrganizationCreateInput!) {
  organizationCreate(input: $i) { organization { id name kind role current active } errors { field code } }
}
"""
DISABLE = "mutation($i: CustomerDisableInput!) { customerDisable(input: $i) { customer { status } errors { code } } }"
ENABLE = "mutation($i: CustomerEnableInput!) { customerEnable(input: $i) { customer { status } errors { code } } }"


async def attempt_login(
    gql: GQL, login: str, password: str = PASSWORD, totp_code: str | None = None, **headers: str
) -> dict[str, Any]:
    response = await gql.client.post(
        "/graphql",
        json={"query": LOGIN, "variables": {"i": {"login": login, "password": password, "totpCode": totp_code}}},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["login"]


def codes(payload: dict[str, Any]) -> list[str]:
    return [e["code"] for e in payload["errors"]]


async def fail_logins(gql: GQL, login: str, times: int) -> None:
    for _ in range(times):
        assert codes(await attempt_login(gql, login, "Wrong-pass-1")) == ["INVALID_CREDENTIALS"]


# --- sign-in ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "login_of",
    [
        lambda u: u.email,
        lambda u: u.email.upper(),
        lambda u: u.username,
        lambda u: u.username.upper(),
        lambda u: f"  {u.email.title()}  ",
    ],
    ids=["email", "EMAIL", "username", "USERNAME", "padded-Mixed-email"],
)
async def test_login_accepts_email_or_username_in_any_case(gql: GQL, factory: Factory, login_of: Any) -> None:
    # given
    _, owner = await factory.partner()
    # when
    payload = await attempt_login(gql, login_of(owner))
    # then
    assert payload["errors"] == []
    assert payload["user"] == {"id": gid("User", owner.id), "email": owner.email}
    me = await gql(ME, token=payload["token"])
    assert me["me"]["id"] == gid("User", owner.id)


async def test_wrong_password_and_unknown_login_are_refused_alike(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    # when
    wrong_password = await attempt_login(gql, owner.email, "Wrong-pass-1")
    unknown_login = await attempt_login(gql, "nobody@example.com", PASSWORD)
    # then
    assert wrong_password["token"] is None and wrong_password["user"] is None
    assert unknown_login["token"] is None and unknown_login["user"] is None
    assert wrong_password["errors"] == unknown_login["errors"]
    assert codes(wrong_password) == ["INVALID_CREDENTIALS"]


async def test_login_with_blank_fields_is_a_validation_error_and_writes_nothing(gql: GQL, factory: Factory) -> None:
    # given
    await factory.partner()
    events_before = await AuditEvent.all().count()
    # when
    payload = await attempt_login(gql, "   ", "")
    # then
    assert {(e["field"], e["code"]) for e in payload["errors"]} == {("login", "REQUIRED"), ("password", "REQUIRED")}
    assert payload["token"] is None
    assert await AuditEvent.all().count() == events_before
    assert await Session.all().count() == 0


async def test_passwords_are_stored_as_argon2id_hashes(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    # when
    stored = await User.get(id=owner.id)
    # then
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


async def test_session_token_is_opaque_and_stored_only_as_a_hash_with_expiry(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    # when
    payload = await attempt_login(gql, owner.email)
    # then
    token = payload["token"]
    session = await Session.get(user_id=owner.id)
    assert session.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not await Session.filter(token_hash=token).exists()
    expected_expiry = datetime.now(UTC) + timedelta(hours=24 * 14)
    assert abs(session.expires_at - expected_expiry) < timedelta(minutes=1)
    assert datetime.fromisoformat(payload["expiresAt"]) == session.expires_at
    assert session.revoked_at is None


async def test_totp_user_needs_the_current_code(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    secret = pyotp.random_base32()
    await User.filter(id=owner.id).update(totp_secret=secret, totp_enabled=True)
    # when
    without_code = await attempt_login(gql, owner.email)
    wrong_code = await attempt_login(
        gql, owner.email, totp_code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    )
    with_code = await attempt_login(gql, owner.email, totp_code=pyotp.TOTP(secret).now())
    # then
    assert codes(without_code) == ["INVALID_TOTP"] and without_code["token"] is None
    assert codes(wrong_code) == ["INVALID_TOTP"] and wrong_code["token"] is None
    assert with_code["errors"] == [] and with_code["token"]


# --- throttling: before any hashing, per client and per login, progressive, no account lock --------------------


@dataclass
class Clock:
    """What the throttle's windows see as now (`limits` reads time.time): tests move it instead of sleeping."""

    offset: float = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved, real = Clock(), time.time
    monkeypatch.setattr(time, "time", lambda: real() + moved.offset)
    return moved


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every argon2 verification (sign-in's expensive step)."""
    seen: list[str] = []
    verify = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: str) -> bool:
        seen.append(hash)
        return verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return seen


@asynccontextmanager
async def client_at(app: Any, ip: str) -> AsyncIterator[GQL]:
    """A client signing in from another address."""
    transport = httpx.ASGITransport(app=app, client=(ip, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield GQL(c)


@pytest.fixture
def limits() -> Iterator[Any]:
    """Sets other sign-in limits for one test."""
    with ExitStack() as stack:

        def set_limits(**values: str) -> None:
            stack.enter_context(domain_config.overridden(**values))

        yield set_limits


async def test_failures_from_elsewhere_never_lock_a_user_out_where_they_sign_in(
    app: Any, gql: GQL, factory: Factory, clock: Clock
) -> None:
    # given a platform admin who signed in from the office an hour ago, and someone else failing on their login
    admin = await factory.admin()
    async with client_at(app, OFFICE) as office:
        await office.login(admin.email)
    clock.advance(3600)
    refused = [await attempt_login(gql, admin.email, "Wrong-pass-1") for _ in range(8)]
    # when
    async with client_at(app, OFFICE) as office:
        payload = await attempt_login(office, admin.email)
    # then
    assert [codes(r) for r in refused] == [["INVALID_CREDENTIALS"]] * 5 + [["RATE_LIMITED"]] * 3
    assert payload["errors"] == [] and payload["token"]


async def test_a_client_that_keeps_failing_waits_progressively_longer(
    gql: GQL, factory: Factory, clock: Clock, hashes: list[str]
) -> None:
    # given five failures within a minute
    _, owner = await factory.partner()
    await fail_logins(gql, owner.email, 5)
    # when
    first_wait = await attempt_login(gql, owner.email)
    clock.advance(61)
    await fail_logins(gql, owner.email, 5)
    second_wait = await attempt_login(gql, owner.email)
    # then the right password is not even checked while the client waits, and the second wait is longer
    assert codes(first_wait) == ["RATE_LIMITED"] and first_wait["token"] is None
    assert 0 < first_wait["retryAfter"] <= 60
    assert str(first_wait["retryAfter"]) in first_wait["errors"][0]["message"]
    assert codes(second_wait) == ["RATE_LIMITED"]
    assert 60 < second_wait["retryAfter"] <= 15 * 60 - 61
    assert len(hashes) == 10
    # and once the window has room again, the right password gets in
    clock.advance(15 * 60)
    assert (await attempt_login(gql, owner.email))["errors"] == []


async def test_unknown_logins_get_the_same_answers_and_the_same_work_as_known_ones(
    gql: GQL, factory: Factory, hashes: list[str]
) -> None:
    # given
    _, owner = await factory.partner()
    # when seven wrong passwords for an existing login, then seven for one that does not exist
    known = [await attempt_login(gql, owner.email, "Wrong-pass-1") for _ in range(7)]
    known_hashes = len(hashes)
    unknown = [await attempt_login(gql, "nobody@example.com", "Wrong-pass-1") for _ in range(7)]

    # then
    def answers(payloads: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r["token"], r["user"], codes(r), r["retryAfter"] is not None) for r in payloads]

    assert answers(known) == answers(unknown)
    assert [e["message"] for r in known[:5] for e in r["errors"]] == [
        e["message"] for r in unknown[:5] for e in r["errors"]
    ]
    assert codes(known[-1]) == ["RATE_LIMITED"]
    assert known_hashes == 5 and len(hashes) == 10


async def test_a_flood_from_one_address_is_refused_before_any_hashing(
    app: Any, gql: GQL, factory: Factory, hashes: list[str]
) -> None:
    # given thirty attempts within a minute from one address, each on another login
    _, owner = await factory.partner()
    for n in range(30):
        assert codes(await attempt_login(gql, f"guess{n}@example.com", "Wrong-pass-1")) == ["INVALID_CREDENTIALS"]
    # when
    flooded = await attempt_login(gql, owner.email)
    async with client_at(app, OFFICE) as office:
        elsewhere = await attempt_login(office, owner.email)
    # then
    assert codes(flooded) == ["RATE_LIMITED"] and 0 < flooded["retryAfter"] <= 60
    assert len(hashes) == 31  # the flood's thirty and the sign-in from elsewhere
    assert elsewhere["errors"] == []


async def test_failures_from_one_address_across_logins_are_throttled(gql: GQL, factory: Factory, limits: Any) -> None:
    # given an address allowed three failures an hour, which failed on three logins
    limits(login_ip_failure_limits="3/hour")
    _, owner = await factory.partner()
    for n in range(3):
        await attempt_login(gql, f"guess{n}@example.com", "Wrong-pass-1")
    # when
    payload = await attempt_login(gql, owner.email)
    # then
    assert codes(payload) == ["RATE_LIMITED"] and 60 < payload["retryAfter"] <= 3600


async def test_guessing_one_login_from_many_addresses_slows_only_unrecognised_clients(
    app: Any, gql: GQL, factory: Factory
) -> None:
    # given a user who signs in from the office (a first sign-in from there counts too), and four addresses failing
    # once each on their login: the five attempts a minute from clients without a session of it
    _, owner = await factory.partner()
    async with client_at(app, OFFICE) as office:
        await office.login(owner.email)
    for n in range(4):
        async with client_at(app, f"192.0.2.{n + 1}") as bot:
            assert codes(await attempt_login(bot, owner.email, "Wrong-pass-1")) == ["INVALID_CREDENTIALS"]
    # when
    async with client_at(app, "192.0.2.99") as new_address:
        unrecognised = await attempt_login(new_address, owner.email)
    async with client_at(app, OFFICE) as office:
        recognised = await attempt_login(office, owner.email)
    # then
    assert codes(unrecognised) == ["RATE_LIMITED"]
    assert recognised["errors"] == []


async def test_four_failures_then_the_right_password_gets_in(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    await fail_logins(gql, owner.email, 4)
    # when
    payload = await attempt_login(gql, owner.email)
    # then
    assert payload["errors"] == []
    assert payload["token"]


async def test_a_successful_login_clears_the_clients_failures(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    await fail_logins(gql, owner.email, 4)
    assert (await attempt_login(gql, owner.email))["errors"] == []
    await fail_logins(gql, owner.email, 4)
    # when
    payload = await attempt_login(gql, owner.email)
    # then
    assert payload["errors"] == []


async def test_concurrent_failures_cannot_pass_the_limit(gql: GQL, factory: Factory, hashes: list[str]) -> None:
    # given
    _, owner = await factory.partner()
    # when eight wrong passwords arrive at once
    refused = await gather(*(attempt_login(gql, owner.email, "Wrong-pass-1") for _ in range(8)))
    # then only five were checked
    assert sorted(c for r in refused for c in codes(r)) == ["INVALID_CREDENTIALS"] * 5 + ["RATE_LIMITED"] * 3
    assert len(hashes) == 5
    reasons = sorted(
        e.details["reason"] for e in await AuditEvent.filter(type=AuditEventType.LOGIN_FAILED, actor_user_id=owner.id)
    )
    assert reasons == ["bad_password"] * 5 + ["rate_limited"]


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(app: Any, gql: GQL, factory: Factory) -> None:
    # given the app behind a proxy at the test client's address
    _, owner = await factory.partner()
    app.trust_proxies(["203.0.113.0/24"])
    try:
        # when one client comes through the proxy, another sends the header itself
        proxied = await attempt_login(gql, owner.email, **{"x-forwarded-for": "198.51.100.77"})
        async with client_at(app, "192.0.2.50") as direct:
            spoofed = await attempt_login(direct, owner.email, **{"x-forwarded-for": "198.51.100.88"})
    finally:
        app.trust_proxies([])
    # then
    assert proxied["errors"] == [] and spoofed["errors"] == []
    ips = {e.details["session_id"]: e.ip for e in await AuditEvent.filter(type=AuditEventType.LOGIN)}
    assert sorted(ips.values()) == ["192.0.2.50", "198.51.100.77"]


async def test_an_ipv6_client_counts_as_its_whole_64() -> None:
    # given thirty attempts from thirty addresses of one IPv6 /64
    throttle = build_throttle("async+memory://")
    assert [await throttle.admit_client(f"2001:db8:7:1::{n:x}") for n in range(30)] == [None] * 30
    # when
    same_network = await throttle.admit_client("2001:db8:7:1:ffff::1")
    next_network = await throttle.admit_client("2001:db8:7:2::1")
    # then
    assert same_network is not None and same_network.scope == Scope.CLIENT
    assert next_network is None


@pytest.mark.redis
async def test_processes_sharing_redis_count_sign_in_attempts_together() -> None:
    # given the throttles of two processes on one Redis
    assert REDIS_URL is not None
    prefix = f"partnerdesk-test-{uuid.uuid4().hex[:8]}"
    first, second = build_throttle(storage_uri(REDIS_URL), prefix), build_throttle(storage_uri(REDIS_URL), prefix)
    try:
        # when one counts five attempts on a login from a client
        for _ in range(5):
            assert await first.admit_login("victim@example.com", "192.0.2.1", recognised=False) is None
        # then the other refuses the sixth, and clients with a session of the login are not slowed by it
        wait = await second.admit_login("victim@example.com", "192.0.2.1", recognised=False)
        elsewhere = await second.admit_login("victim@example.com", "192.0.2.2", recognised=True)
    finally:
        await first.reset()
    assert wait is not None and wait.scope == Scope.LOGIN_FROM_CLIENT and 0 < wait.seconds <= 60
    assert elsewhere is None


async def test_sign_in_is_not_throttled_while_the_throttles_storage_is_down() -> None:
    # given a throttle whose Redis does not answer
    unreachable = build_throttle("async+redis://127.0.0.1:9/0")
    # when / then: attempts go on (logged), rather than nobody signing in
    assert [await unreachable.admit_client("192.0.2.1") for _ in range(40)] == [None] * 40
    assert await unreachable.admit_login("victim@example.com", "192.0.2.1", recognised=False) is None


# --- TOTP codes are single-use -----------------------------------------------------------------------------------


async def test_a_totp_code_signs_in_once(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    secret = pyotp.random_base32()
    await User.filter(id=owner.id).update(totp_secret=secret, totp_enabled=True)
    code = pyotp.TOTP(secret).now()
    assert (await attempt_login(gql, owner.email, totp_code=code))["errors"] == []
    # when the same code is sent again
    replayed = await attempt_login(gql, owner.email, totp_code=code)
    # then
    assert replayed["token"] is None
    assert [(e["field"], e["code"]) for e in replayed["errors"]] == [("totpCode", "INVALID_TOTP")]
    assert "used already" in replayed["errors"][0]["message"]
    assert (await AuditEvent.filter(type=AuditEventType.LOGIN_FAILED).first()).details == {"reason": "totp_reused"}


async def test_two_sign_ins_with_the_same_totp_code_at_once_get_one_session(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    secret = pyotp.random_base32()
    await User.filter(id=owner.id).update(totp_secret=secret, totp_enabled=True)
    code = pyotp.TOTP(secret).now()
    # when
    payloads = await gather(*(attempt_login(gql, owner.email, totp_code=code) for _ in range(4)))
    # then
    assert sum(1 for p in payloads if p["token"]) == 1
    assert sorted(c for p in payloads for c in codes(p)) == ["INVALID_TOTP"] * 3
    assert await Session.filter(user_id=owner.id).count() == 1


# --- audit of sign-in ------------------------------------------------------------------------------------------


async def test_every_login_attempt_is_audited_with_ip_user_agent_and_request_id(gql: GQL, factory: Factory) -> None:
    # given
    partner, owner = await factory.partner()
    await AuditEvent.all().delete()  # only the sign-in events below matter
    headers = {"user-agent": "Tests/1.0 (audit)"}
    # when
    await attempt_login(gql, owner.email, "Wrong-pass-1", **headers, **{"x-request-id": "req-failed-0001"})
    await attempt_login(gql, "ghost@example.com", "Wrong-pass-1", **headers, **{"x-request-id": "req-unknown-001"})
    ok = await attempt_login(gql, owner.email, **headers, **{"x-request-id": "req-success-001"})
    # then
    events = {e.request_id: e for e in await AuditEvent.all()}
    assert set(events) == {"req-failed-0001", "req-unknown-001", "req-success-001"}
    failed, unknown, success = events["req-failed-0001"], events["req-unknown-001"], events["req-success-001"]
    assert (failed.type, failed.actor_user_id, failed.partner_id) == (AuditEventType.LOGIN_FAILED, owner.id, partner.id)
    assert failed.details == {"reason": "bad_password"}
    assert (unknown.type, unknown.actor_user_id, unknown.actor_label) == (
        AuditEventType.LOGIN_FAILED,
        None,
        "ghost@example.com",
    )
    assert (success.type, success.actor_user_id, success.partner_id) == (AuditEventType.LOGIN, owner.id, partner.id)
    assert success.object_type == "User" and success.object_id == str(owner.id)
    assert ok["token"] not in str(success.details)
    for event in events.values():
        assert event.ip == "203.0.113.7"
        assert event.user_agent == "Tests/1.0 (audit)"
        assert "Wrong-pass-1" not in str(event.details) and PASSWORD not in str(event.details)


async def test_throttled_refusals_are_audited_once_a_minute(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    await fail_logins(gql, owner.email, 5)
    # when
    for _ in range(3):
        await attempt_login(gql, owner.email)
    # then
    events = await AuditEvent.filter(type=AuditEventType.LOGIN_FAILED, actor_user_id=owner.id).order_by("id")
    assert [e.details for e in events] == [{"reason": "bad_password"}] * 5 + [
        {"reason": "rate_limited", "limit": "login-client"}
    ]


async def test_failed_login_of_a_customer_user_is_visible_to_its_customer_admin(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=tenant.customers[0])
    admin_token = await gql.login(tenant.admins[0].email)
    # when
    await attempt_login(gql, member.email, "Wrong-pass-1")
    # then
    data = await gql(
        "{ auditEvents(filter: {type: LOGIN_FAILED}) { totalCount nodes { actor { id } customer { id } } } }",
        token=admin_token,
    )
    assert data["auditEvents"]["totalCount"] == 1
    assert data["auditEvents"]["nodes"][0] == {
        "actor": {"id": gid("User", member.id)},
        "customer": {"id": gid("Customer", tenant.customers[0].id)},
    }


# --- sessions --------------------------------------------------------------------------------------------------


async def test_logout_revokes_only_the_current_session(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    other_token = await gql.login(owner.email)
    # when
    payload = await gql(LOGOUT, token=token)
    # then
    assert payload["logout"] == {"ok": True, "errors": []}
    response = await gql.raw(ME, token=token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await gql(ME, token=other_token))["me"]["id"] == gid("User", owner.id)
    revoked = await Session.get(token_hash=hashlib.sha256(token.encode()).hexdigest())
    assert revoked.revoked_at is not None
    logout_events = await AuditEvent.filter(type=AuditEventType.LOGOUT, actor_user_id=owner.id).count()
    assert logout_events == 1


async def test_logout_without_a_session_is_refused(gql: GQL) -> None:
    # when
    payload = await gql(LOGOUT)
    # then
    assert payload["logout"] == {"ok": False, "errors": [{"code": "FORBIDDEN"}]}
    assert await AuditEvent.all().count() == 0


async def test_expired_session_token_gets_401(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    assert (await gql.raw(ME, token=token)).status_code == 200
    # when the session expires
    await Session.filter(user_id=owner.id).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = await gql.raw(ME, token=token)
    # then
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("token", ["pd_sess_not-a-real-token", "garbage", "pd_sess_" + "x" * 300])
async def test_unknown_token_gets_401(gql: GQL, token: str) -> None:
    # when
    response = await gql.raw(ME, token=token)
    # then
    assert response.status_code == 401


async def test_without_a_token_me_is_null(gql: GQL) -> None:
    # when
    data = await gql(ME)
    # then
    assert data["me"] is None


# --- disabled customers ----------------------------------------------------------------------------------------


async def test_disabling_a_customer_blocks_sign_in_and_ends_its_sessions(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=2)
    disabled = tenant.customers[0]
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=disabled)
    partner_token = await gql.login(tenant.owner.email)
    admin_token = await gql.login(tenant.admins[0].email)
    member_token = await gql.login(member.email)
    other_token = await gql.login(tenant.admins[1].email)
    # when
    payload = await gql(DISABLE, {"i": {"customerId": gid("Customer", disabled.id)}}, token=partner_token)
    # then
    assert payload["customerDisable"] == {"customer": {"status": "DISABLED"}, "errors": []}
    assert (await gql.raw(ME, token=admin_token)).status_code == 401
    assert (await gql.raw(ME, token=member_token)).status_code == 401
    for user in (tenant.admins[0], member):
        assert await Session.filter(user_id=user.id, revoked_at=None).count() == 0
        refused = await attempt_login(gql, user.email)
        assert codes(refused) == ["ACCOUNT_DISABLED"] and refused["token"] is None
    assert (await gql.raw(ME, token=other_token)).status_code == 200
    assert (await gql.raw(ME, token=partner_token)).status_code == 200
    assert (await attempt_login(gql, tenant.admins[1].email))["errors"] == []
    event = await AuditEvent.get(action="customer.disable")
    assert event.details["changes"] == {"status": {"before": "ACTIVE", "after": "DISABLED"}}
    assert event.details["sessions_revoked"] == 2


async def test_enabling_the_customer_restores_sign_in(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer_id = gid("Customer", tenant.customers[0].id)
    partner_token = await gql.login(tenant.owner.email)
    old_token = await gql.login(tenant.admins[0].email)
    await gql(DISABLE, {"i": {"customerId": customer_id}}, token=partner_token)
    # when
    payload = await gql(ENABLE, {"i": {"customerId": customer_id}}, token=partner_token)
    # then
    assert payload["customerEnable"] == {"customer": {"status": "ACTIVE"}, "errors": []}
    signed_in = await attempt_login(gql, tenant.admins[0].email)
    assert signed_in["errors"] == []
    assert (await gql.raw(ME, token=signed_in["token"])).status_code == 200
    assert (await gql.raw(ME, token=old_token)).status_code == 401  # revoked sessions stay revoked


async def test_customer_admin_cannot_disable_their_own_customer(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    admin_token = await gql.login(tenant.admins[0].email)
    events_before = await AuditEvent.all().count()
    # when
    payload = await gql(DISABLE, {"i": {"customerId": gid("Customer", tenant.customers[0].id)}}, token=admin_token)
    # then
    assert payload["customerDisable"] == {"customer": None, "errors": [{"code": "FORBIDDEN"}]}
    assert (await Customer.get(id=tenant.customers[0].id)).status == "ACTIVE"
    assert (await gql.raw(ME, token=admin_token)).status_code == 200
    assert await AuditEvent.all().count() == events_before


async def test_user_with_another_active_organization_still_signs_in_there(gql: GQL, factory: Factory) -> None:
    # given a user who is admin of two customers, one of them disabled
    tenant = await factory.tenant(customers=2)
    first, second = tenant.customers
    user = tenant.admins[0]
    await Membership.create(
        user=user, role=Role.CUSTOMER_MEMBER, customer=second, org_key=org_key(customer_id=second.id)
    )
    partner_token = await gql.login(tenant.owner.email)
    await gql(DISABLE, {"i": {"customerId": gid("Customer", first.id)}}, token=partner_token)
    # when
    payload = await attempt_login(gql, user.email)
    # then
    assert payload["errors"] == []
    data = await gql(CUSTOMERS, token=payload["token"])
    assert data["customers"]["nodes"] == [{"id": gid("Customer", second.id), "name": second.name}]
    orgs = {o["id"]: o for o in (await gql(ME_ORGS, token=payload["token"]))["me"]["organizations"]}
    assert orgs[gid("Customer", first.id)]["active"] is False
    assert orgs[gid("Customer", second.id)]["current"] is True


# --- organizations ---------------------------------------------------------------------------------------------


async def test_me_lists_every_organization_of_the_user_with_the_current_one(gql: GQL, factory: Factory) -> None:
    # given a partner admin who is also a member of a customer of another partner
    tenant = await factory.tenant(customers=1)
    other = await factory.tenant(customers=1, name="Other Agency")
    foreign = other.customers[0]
    await Membership.create(
        user=tenant.owner, role=Role.CUSTOMER_MEMBER, customer=foreign, org_key=org_key(customer_id=foreign.id)
    )
    token = await gql.login(tenant.owner.email)
    # when
    data = await gql(ME_ORGS, token=token)
    # then
    assert data["me"]["organizations"] == [
        {
            "id": gid("Partner", tenant.partner.id),
            "name": tenant.partner.name,
            "kind": "PARTNER",
            "role": "PARTNER_ADMIN",
            "current": True,
            "active": True,
        },
        {
            "id": gid("Customer", foreign.id),
            "name": foreign.name,
            "kind": "CUSTOMER",
            "role": "CUSTOMER_MEMBER",
            "current": False,
            "active": True,
        },
    ]


async def test_switching_organization_changes_what_the_same_token_sees(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=3)
    other = await factory.tenant(customers=1)
    foreign = other.customers[0]
    await Membership.create(
        user=tenant.owner, role=Role.CUSTOMER_ADMIN, customer=foreign, org_key=org_key(customer_id=foreign.id)
    )
    token = await gql.login(tenant.owner.email)
    assert (await gql(CUSTOMERS, token=token))["customers"]["totalCount"] == 3
    # when
    payload = await gql(SWITCH, {"i": {"organizationId": gid("Customer", foreign.id)}}, token=token)
    # then
    assert payload["organizationSwitch"] == {
        "organization": {
            "id": gid("Customer", foreign.id),
            "kind": "CUSTOMER",
            "role": "CUSTOMER_ADMIN",
            "current": True,
        },
        "user": {"id": gid("User", tenant.owner.id)},
        "errors": [],
    }
    seen = await gql(CUSTOMERS, token=token)
    assert seen["customers"] == {"totalCount": 1, "nodes": [{"id": gid("Customer", foreign.id), "name": foreign.name}]}
    current = [o["id"] for o in (await gql(ME_ORGS, token=token))["me"]["organizations"] if o["current"]]
    assert current == [gid("Customer", foreign.id)]
    switch_event = await AuditEvent.get(action="organization.switch")
    assert (switch_event.actor_user_id, switch_event.customer_id) == (tenant.owner.id, foreign.id)
    # and back again
    await gql(SWITCH, {"i": {"organizationId": gid("Partner", tenant.partner.id)}}, token=token)
    assert (await gql(CUSTOMERS, token=token))["customers"]["totalCount"] == 3


@pytest.mark.parametrize("target", ["foreign_customer", "foreign_partner", "garbage", "user_id"])
async def test_switching_to_an_organization_one_does_not_belong_to_is_not_found(
    gql: GQL, factory: Factory, target: str
) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    other = await factory.tenant(customers=1)
    organization_id = {
        "foreign_customer": gid("Customer", other.customers[0].id),
        "foreign_partner": gid("Partner", other.partner.id),
        "garbage": "not-an-id",
        "user_id": gid("User", tenant.owner.id),
    }[target]
    token = await gql.login(tenant.owner.email)
    events_before = await AuditEvent.all().count()
    # when
    payload = await gql(SWITCH, {"i": {"organizationId": organization_id}}, token=token)
    # then
    assert payload["organizationSwitch"] == {
        "organization": None,
        "user": None,
        "errors": [{"field": "organizationId", "code": "NOT_FOUND"}],
    }
    assert (await gql(CUSTOMERS, token=token))["customers"]["totalCount"] == 1
    assert await AuditEvent.all().count() == events_before


async def test_switching_to_a_disabled_customer_is_not_found(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=2)
    target = tenant.customers[1]
    await Membership.create(
        user=tenant.admins[0], role=Role.CUSTOMER_ADMIN, customer=target, org_key=org_key(customer_id=target.id)
    )
    token = await gql.login(tenant.admins[0].email)
    partner_token = await gql.login(tenant.owner.email)
    await gql(DISABLE, {"i": {"customerId": gid("Customer", target.id)}}, token=partner_token)
    # when
    payload = await gql(SWITCH, {"i": {"organizationId": gid("Customer", target.id)}}, token=token)
    # then
    assert [e["code"] for e in payload["organizationSwitch"]["errors"]] == ["NOT_FOUND"]
    assert (await gql(CUSTOMERS, token=token))["customers"]["nodes"][0]["id"] == gid("Customer", tenant.customers[0].id)


async def test_organization_create_makes_the_user_admin_of_a_new_customer(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    admin = tenant.admins[0]
    token = await gql.login(admin.email)
    # when
    payload = await gql(CREATE_ORG, {"i": {"name": "  Second Company  "}}, token=token)
    # then
    assert payload["organizationCreate"]["errors"] == []
    organization = payload["organizationCreate"]["organization"]
    created = await Customer.get(name="Second Company")
    assert created.partner_id == tenant.partner.id
    assert organization == {
        "id": gid("Customer", created.id),
        "name": "Second Company",
        "kind": "CUSTOMER",
        "role": "CUSTOMER_ADMIN",
        "current": False,
        "active": True,
    }
    orgs = (await gql(ME_ORGS, token=token))["me"]["organizations"]
    assert [o["id"] for o in orgs] == [gid("Customer", tenant.customers[0].id), gid("Customer", created.id)]
    event = await AuditEvent.get(action="organization.create")
    assert (event.actor_user_id, event.partner_id, event.customer_id) == (admin.id, tenant.partner.id, created.id)
    # and the new organization is usable
    await gql(SWITCH, {"i": {"organizationId": organization["id"]}}, token=token)
    seen = await gql(CUSTOMERS, token=token)
    assert seen["customers"]["nodes"] == [{"id": gid("Customer", created.id), "name": "Second Company"}]


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
async def test_organization_create_with_an_invalid_name_writes_nothing(gql: GQL, factory: Factory, name: str) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.admins[0].email)
    events_before = await AuditEvent.all().count()
    # when
    payload = await gql(CREATE_ORG, {"i": {"name": name}}, token=token)
    # then
    assert payload["organizationCreate"]["organization"] is None
    assert [e["field"] for e in payload["organizationCreate"]["errors"]] == ["name"]
    assert await Customer.all().count() == 1
    assert await Membership.filter(user_id=tenant.admins[0].id).count() == 1
    assert await AuditEvent.all().count() == events_before


async def test_organization_create_needs_a_signed_in_user(gql: GQL, factory: Factory) -> None:
    # given
    await factory.tenant(customers=1)
    # when
    payload = await gql(CREATE_ORG, {"i": {"name": "Sneaky"}})
    # then
    assert [e["code"] for e in payload["organizationCreate"]["errors"]] == ["FORBIDDEN"]
    assert not await Customer.filter(name="Sneaky").exists()


# --- platform admins (the CLI's `admin create`) ------------------------------------------------------------------


async def test_admin_create_makes_a_platform_admin_once_and_needs_platform_rights(factory: Factory) -> None:
    # given
    command = AdminCreate("ops@example.com", PASSWORD)
    # when
    first = await admin_create(Viewer.system("cli"), command)
    again = await admin_create(Viewer.system("cli"), command)
    # then
    assert (first.created, again.created) == (True, False) and again.user.id == first.user.id
    assert await Membership.filter(user_id=first.user.id, org_key="platform", role=Role.PLATFORM_ADMIN).count() == 1
    event = await AuditEvent.get(action="admin.create")
    assert (event.object_id, event.actor_label) == (str(first.user.id), "cli")
    partner, _ = await factory.partner()
    staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id)
    with pytest.raises(DomainError) as refused:
        await admin_create(staff, AdminCreate("sneaky@example.com", PASSWORD))
    assert [e.code for e in refused.value.errors] == [ErrorCode.FORBIDDEN]
    assert not await User.filter(email_key="sneaky@example.com").exists()


async def test_the_admin_create_command_reports_created_then_exists_and_refuses_bad_input(database: str) -> None:
    created = run_cli("admin", "create", "--email", "cli-admin@example.com", "--password", PASSWORD)
    exists = run_cli("admin", "create", "--email", "cli-admin@example.com", "--password", PASSWORD)
    refused = run_cli("admin", "create", "--email", "not-an-email", "--password", PASSWORD, check=False)
    assert created.stdout.strip() == "created: platform admin cli-admin@example.com"
    assert exists.stdout.strip() == "exists: platform admin cli-admin@example.com"
    assert refused.returncode == 2 and refused.stderr.startswith("error: email:")
