"""The audit log: what mutations and sign-ins record, tenancy of `auditEvents`, and `partnerdesk audit verify`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from tortoise import connections

from domain.accounts.models import Role
from domain.audit.models import AuditChain, AuditEvent, AuditEventType
from domain.audit.sequencer import sequence_pending
from domain.audit.services import record_standalone
from domain.customers.models import Customer
from domain.viewer import Viewer
from tests.conftest import GQL, PASSWORD, Factory, Tenant, gather, gid, run_cli

EVENTS = """
query($filter: AuditEventFilter, $first: Int, $after: String) {
  auditEvents(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id type action createdAt } }
  }
}
"""
EVENT_DETAIL = """
query($filter: AuditEventFilter) {
  auditEvents(filter: $filter) {
    totalCount
    nodes {
      id type action objectType objectId actorLabel details ip userAgent requestId createdAt seq hash
      actor { id } partner { id } customer { id }
    }
  }
}
"""
UPDATE = "mutation($i: CustomerUpdateInput!) { customerUpdate(input: $i) { customer { city } errors { field code } } }"
CREATE = """
mutation($i: CustomerCreateInput!) {
  customerCreate(input: $i) { customer { id } user { id } errors { field code } }
}
"""


async def post(gql: GQL, query: str, variables: dict[str, Any], token: str, **headers: str) -> dict[str, Any]:
    response = await gql.client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}", **headers},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def visible_ids(gql: GQL, token: str | None, **filter: Any) -> list[str]:
    """Every event id the viewer sees, newest first, walking all pages."""
    ids: list[str] = []
    after = None
    while True:
        data = await gql(EVENTS, {"filter": filter or None, "first": 100, "after": after}, token=token)
        page = data["auditEvents"]
        ids += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            assert len(ids) == page["totalCount"]
            return ids
        after = page["pageInfo"]["endCursor"]


def event_ids(events: list[AuditEvent]) -> list[str]:
    return [gid("AuditEvent", e.id) for e in sorted(events, key=lambda e: -e.id)]


async def sql(statement: str) -> None:
    await connections.get("default").execute_script(statement)


def verify() -> tuple[int, str]:
    """What `partnerdesk audit verify` says once the sequencer has linked every committed event."""
    run_cli("audit", "sequence")
    result = run_cli("audit", "verify", check=False)
    return result.returncode, result.stdout + result.stderr


async def busy_tenant(gql: GQL, factory: Factory, name: str) -> Tenant:
    """A partner with two customers whose users have all signed in once."""
    tenant = await factory.tenant(customers=2, name=name)
    for user in (tenant.owner, *tenant.admins):
        await gql.login(user.email)
    return tenant


# --- what gets recorded ----------------------------------------------------------------------------------------


async def test_a_mutation_records_who_what_where_and_the_changed_fields(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await Customer.filter(id=customer.id).update(city="Lisbon", zip="1000")
    token = await gql.login(tenant.owner.email)
    started = datetime.now(UTC)
    # when
    data = await post(
        gql,
        UPDATE,
        {"i": {"customerId": gid("Customer", customer.id), "city": "Porto", "zip": "1000"}},
        token,
        **{"user-agent": "Backoffice/2.0", "x-request-id": "req-update-0001"},
    )
    # then
    assert data["customerUpdate"] == {"customer": {"city": "Porto"}, "errors": []}
    await sequence_pending()  # as the API processes' sequencer does right after commit
    seen = await gql(EVENT_DETAIL, {"filter": {"type": "DATA_CHANGE"}}, token=token)
    newest = seen["auditEvents"]["nodes"][0]
    assert newest["action"] == "customer.update"
    assert (newest["objectType"], newest["objectId"]) == ("Customer", gid("Customer", customer.id))  # a global id
    assert newest["details"] == {"changes": {"city": {"before": "Lisbon", "after": "Porto"}}}
    assert newest["actor"] == {"id": gid("User", tenant.owner.id)}
    assert newest["actorLabel"] == tenant.owner.email
    assert newest["partner"] == {"id": gid("Partner", tenant.partner.id)}
    assert newest["customer"] == {"id": gid("Customer", customer.id)}
    assert (newest["ip"], newest["userAgent"], newest["requestId"]) == (
        "203.0.113.7",
        "Backoffice/2.0",
        "req-update-0001",
    )
    assert started <= datetime.fromisoformat(newest["createdAt"]) <= datetime.now(UTC)
    assert len(newest["hash"]) == 64


async def test_sign_in_and_mutations_are_each_recorded_once(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    await gql.client.post(
        "/graphql", json={"query": 'mutation { login(input: {login: "x@y.z", password: "p"}) { token } }'}
    )
    # when
    await gql(UPDATE, {"i": {"customerId": gid("Customer", tenant.customers[0].id), "city": "Faro"}}, token=token)
    await gql("mutation { logout { ok } }", token=token)
    # then
    actions = [e.action for e in await AuditEvent.all().order_by("id")]
    assert actions == ["partner.create", "customer.create", "login", "login.failed", "customer.update", "logout"]


async def test_audit_details_never_hold_secrets(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    secret = "Sup3r-secret!"
    # when
    created = await gql(
        CREATE,
        {
            "i": {
                "username": "newcomer",
                "firstName": "New",
                "lastName": "Comer",
                "email": "new@comer.example.com",
                "password": secret,
                "passwordConfirmation": secret,
                "companyName": "Comer Ltd",
            }
        },
        token=token,
    )
    customer_token = await gql.login("newcomer", secret)
    await attempt_wrong(gql, "newcomer")
    # then
    assert created["customerCreate"]["errors"] == []
    events = await AuditEvent.all()
    assert {e.action for e in events} >= {"customer.create", "login", "login.failed"}
    dumped = json.dumps([e.details for e in events])
    for forbidden in (secret, PASSWORD, "Wrong-pass-9", token, customer_token, "$argon2"):
        assert forbidden not in dumped
    for event in events:
        assert not any(m in key.lower() for key in all_keys(event.details) for m in ("password", "hash", "token"))


async def attempt_wrong(gql: GQL, login: str) -> None:
    response = await gql.client.post(
        "/graphql",
        json={
            "query": "mutation($i: LoginInput!) { login(input: $i) { errors { code } } }",
            "variables": {"i": {"login": login, "password": "Wrong-pass-9"}},
        },
    )
    assert response.json()["data"]["login"]["errors"] == [{"code": "INVALID_CREDENTIALS"}]


def all_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in (k, *all_keys(v))]
    if isinstance(value, list):
        return [k for item in value for k in all_keys(item)]
    return []


async def test_nested_secrets_are_scrubbed_from_details(database: str) -> None:
    # given
    details = {"changes": {"password_hash": {"before": "a", "after": "b"}, "city": {"before": "x", "after": "y"}}}
    # when
    event = await record_standalone(
        Viewer.system("tests"),
        AuditEventType.SECURITY,
        "test",
        details={**details, "api_token": "t", "n": [{"totp": 1}]},
    )
    # then
    stored = await AuditEvent.get(id=event.id)
    assert stored.details == {"changes": {"city": {"before": "x", "after": "y"}}, "n": [{}]}
    assert verify()[0] == 0


@pytest.mark.parametrize(
    "bad_input",
    [
        {"password": "weak", "passwordConfirmation": "weak"},
        {"email": "not-an-email"},
        {"username": "x"},
        {"passwordConfirmation": "Other-pass-1"},
    ],
    ids=["weak-password", "bad-email", "bad-username", "confirmation-mismatch"],
)
async def test_a_failed_mutation_writes_nothing(gql: GQL, factory: Factory, bad_input: dict[str, str]) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    events_before = await AuditEvent.all().count()
    heads_before = [(h.key, h.seq, h.last_hash) for h in await AuditChain.all().order_by("key")]
    good = {
        "username": "valid.user",
        "firstName": "Val",
        "lastName": "Id",
        "email": "valid@example.com",
        "password": PASSWORD,
        "passwordConfirmation": PASSWORD,
        "companyName": "Valid Co",
    }
    # when
    data = await gql(CREATE, {"i": {**good, **bad_input}}, token=token)
    # then
    assert data["customerCreate"]["customer"] is None
    assert data["customerCreate"]["errors"]
    assert await AuditEvent.all().count() == events_before
    assert [(h.key, h.seq, h.last_hash) for h in await AuditChain.all().order_by("key")] == heads_before
    assert await Customer.all().count() == 0


async def test_failed_update_writes_no_event(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    events_before = await AuditEvent.all().count()
    # when
    data = await gql(
        UPDATE,
        {"i": {"customerId": gid("Customer", tenant.customers[0].id), "phone": "call me", "city": "Faro"}},
        token=token,
    )
    # then
    assert data["customerUpdate"]["errors"] == [{"field": "phone", "code": "INVALID"}]
    assert (await Customer.get(id=tenant.customers[0].id)).city == ""
    assert await AuditEvent.all().count() == events_before


async def test_the_event_commits_or_rolls_back_with_its_change(
    gql: GQL, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a change whose transaction fails right after its event was written
    import domain.customers.services as customer_services

    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    events_before = await AuditEvent.all().count()
    real_record = customer_services.record

    async def record_then_fail(*args: Any, **kwargs: Any) -> AuditEvent:
        await real_record(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(customer_services, "record", record_then_fail)
    # when
    response = await gql.raw(
        UPDATE, {"i": {"customerId": gid("Customer", tenant.customers[0].id), "city": "Faro"}}, token=token
    )
    # then
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert (await Customer.get(id=tenant.customers[0].id)).city == ""
    assert await AuditEvent.all().count() == events_before
    assert verify()[0] == 0


# --- auditEvents: tenancy, order, pages, filters ---------------------------------------------------------------


async def test_partner_staff_see_only_their_partners_events(gql: GQL, factory: Factory) -> None:
    # given
    a = await busy_tenant(gql, factory, "Agency A")
    b = await busy_tenant(gql, factory, "Agency B")
    member = await factory.user(role=Role.PARTNER_MEMBER, partner=a.partner)
    token = await gql.login(member.email)
    # when
    seen = await visible_ids(gql, token)
    # then
    expected = event_ids(await AuditEvent.filter(partner_id=a.partner.id))
    assert seen == expected
    foreign = set(event_ids(await AuditEvent.filter(partner_id=b.partner.id)))
    assert foreign and not foreign & set(seen)
    assert await visible_ids(gql, token, customerId=gid("Customer", b.customers[0].id)) == []
    assert await visible_ids(gql, token, userId=gid("User", b.owner.id)) == []


async def test_customer_admin_sees_only_their_customers_events(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await busy_tenant(gql, factory, "Agency")
    mine, sibling = tenant.customers
    token = await gql.login(tenant.admins[0].email)
    # when
    seen = await visible_ids(gql, token)
    # then
    assert seen == event_ids(await AuditEvent.filter(customer_id=mine.id))
    assert {"customer.create", "login"} <= {e.action for e in await AuditEvent.filter(customer_id=mine.id)}
    sibling_events = set(event_ids(await AuditEvent.filter(customer_id=sibling.id)))
    partner_only = set(event_ids(await AuditEvent.filter(partner_id=tenant.partner.id, customer_id=None)))
    assert sibling_events and partner_only
    assert not (sibling_events | partner_only) & set(seen)
    # and a foreign event's id answers null, never revealing it
    some_foreign = next(iter(sibling_events))
    assert (await gql("query($id: ID!) { node(id: $id) { id } }", {"id": some_foreign}, token=token))["node"] is None


async def test_customer_member_and_anonymous_see_no_events(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await busy_tenant(gql, factory, "Agency")
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=tenant.customers[0])
    token = await gql.login(member.email)
    # when
    as_member = await gql(EVENTS, {"first": 100}, token=token)
    anonymous = await gql(EVENTS, {"first": 100})
    # then
    assert await AuditEvent.filter(customer_id=tenant.customers[0].id).count() > 0
    assert as_member["auditEvents"]["totalCount"] == 0 and as_member["auditEvents"]["edges"] == []
    assert anonymous["auditEvents"]["totalCount"] == 0 and anonymous["auditEvents"]["edges"] == []


async def test_platform_admin_sees_every_event(gql: GQL, factory: Factory) -> None:
    # given
    await busy_tenant(gql, factory, "Agency A")
    await busy_tenant(gql, factory, "Agency B")
    admin = await factory.admin()
    token = await gql.login(admin.email)
    # when
    seen = await visible_ids(gql, token)
    # then
    assert seen == event_ids(await AuditEvent.all())


async def test_events_come_newest_first_in_pages(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await busy_tenant(gql, factory, "Agency")
    token = await gql.login(tenant.owner.email)
    expected = event_ids(await AuditEvent.filter(partner_id=tenant.partner.id))
    assert len(expected) == 7
    # when
    pages = []
    after = None
    for _ in range(3):
        data = await gql(EVENTS, {"first": 3, "after": after}, token=token)
        pages.append(data["auditEvents"])
        after = data["auditEvents"]["pageInfo"]["endCursor"]
    # then
    assert [[e["node"]["id"] for e in p["edges"]] for p in pages] == [expected[0:3], expected[3:6], expected[6:7]]
    assert [p["totalCount"] for p in pages] == [7, 7, 7]
    assert [p["pageInfo"]["hasNextPage"] for p in pages] == [True, True, False]
    assert [p["pageInfo"]["hasPreviousPage"] for p in pages] == [False, True, True]
    times = [e["node"]["createdAt"] for p in pages for e in p["edges"]]
    assert [datetime.fromisoformat(t) for t in times] == sorted(
        (datetime.fromisoformat(t) for t in times), reverse=True
    )


async def test_page_size_is_capped_at_100(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(EVENTS, {"first": 101}, token=token)
    # then
    body = response.json()
    assert body["data"] is None
    assert "between 0 and 100" in body["errors"][0]["message"]


async def test_filters_by_type_user_and_customer(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await busy_tenant(gql, factory, "Agency")
    first, second = tenant.customers
    await attempt_wrong(gql, tenant.admins[1].email)
    token = await gql.login(tenant.owner.email)
    # when
    by_type = await visible_ids(gql, token, type="LOGIN_FAILED")
    by_user = await visible_ids(gql, token, userId=gid("User", tenant.admins[0].id))
    by_customer = await visible_ids(gql, token, customerId=gid("Customer", second.id))
    combined = await visible_ids(gql, token, type="LOGIN", customerId=gid("Customer", first.id))
    # then
    assert by_type == event_ids(await AuditEvent.filter(type=AuditEventType.LOGIN_FAILED))
    assert len(by_type) == 1
    assert by_user == event_ids(await AuditEvent.filter(actor_user_id=tenant.admins[0].id))
    assert by_customer == event_ids(await AuditEvent.filter(customer_id=second.id))
    assert len(by_customer) == 3  # created, signed in, failed sign-in
    assert combined == event_ids(await AuditEvent.filter(type=AuditEventType.LOGIN, customer_id=first.id))
    assert len(combined) == 1


async def test_filters_by_time_range(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    middle = datetime.now(UTC)
    await gql(UPDATE, {"i": {"customerId": gid("Customer", tenant.customers[0].id), "city": "Faro"}}, token=token)
    end = datetime.now(UTC)
    before = event_ids(await AuditEvent.filter(created_at__lt=middle))
    after = event_ids(await AuditEvent.filter(created_at__gte=middle))
    assert len(after) == 1 and len(before) == 3
    # when
    since = await visible_ids(gql, token, **{"from": middle.isoformat()})
    until = await visible_ids(gql, token, to=middle.isoformat())
    in_other_zone = await visible_ids(
        gql, token, **{"from": middle.astimezone(timezone(timedelta(hours=-5))).isoformat()}
    )
    naive_utc = await visible_ids(gql, token, **{"from": middle.replace(tzinfo=None).isoformat()})
    empty = await visible_ids(gql, token, **{"from": end.isoformat()})
    # then
    assert since == after
    assert until == before
    assert in_other_zone == after
    assert naive_utc == after
    assert empty == []


async def test_filter_by_a_malformed_id_is_refused_readably(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(EVENTS, {"filter": {"customerId": "nope"}}, token=token)
    # then
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["message"] == "Not found."
    assert body["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "customerId"}


# --- verify ----------------------------------------------------------------------------------------------------


async def three_events_in_a_chain(gql: GQL, factory: Factory) -> tuple[str, list[AuditEvent]]:
    tenant = await factory.tenant(customers=1)
    await gql.login(tenant.owner.email)
    chain = f"partner:{tenant.partner.id}"
    await sequence_pending()
    events = await AuditEvent.filter(chain=chain).order_by("seq")
    assert [e.seq for e in events] == [1, 2, 3]
    return chain, events


async def test_verify_passes_on_a_clean_log(gql: GQL, factory: Factory) -> None:
    # given
    await busy_tenant(gql, factory, "A")
    await busy_tenant(gql, factory, "B")
    await attempt_wrong(gql, "nobody")
    total = await AuditEvent.all().count()
    # when
    code, output = verify()
    # then
    assert code == 0, output
    assert f"{total} audit events checked, 0 problem(s)" in output


async def test_verify_passes_on_an_empty_log(database: str) -> None:
    # when
    code, output = verify()
    # then
    assert code == 0, output
    assert "0 audit events checked" in output


async def test_verify_names_an_edited_event(gql: GQL, factory: Factory) -> None:
    # given
    chain, events = await three_events_in_a_chain(gql, factory)
    await sql(f"""UPDATE audit_event SET details = '{{"name":"Someone Else"}}' WHERE id = {events[1].id}""")
    # when
    code, output = verify()
    # then
    assert code == 1
    assert f"TAMPERED chain={chain} seq=2: details or personal fields were edited" in output
    assert "1 problem(s)" in output


async def test_verify_names_an_edited_personal_field(gql: GQL, factory: Factory) -> None:
    # given
    chain, events = await three_events_in_a_chain(gql, factory)
    await sql(f"UPDATE audit_event SET ip = '198.51.100.1' WHERE id = {events[2].id}")
    # when
    code, output = verify()
    # then
    assert code == 1
    assert f"TAMPERED chain={chain} seq=3: details or personal fields were edited" in output


async def test_verify_accepts_redacted_personal_fields(gql: GQL, factory: Factory) -> None:
    # given events whose personal part retention erased
    from domain.audit.services import redact

    _, events = await three_events_in_a_chain(gql, factory)
    assert await redact(user_ids=[events[2].actor_user_id]) >= 1
    redacted = await AuditEvent.get(id=events[2].id)
    assert (redacted.actor_label, redacted.ip, redacted.user_agent, redacted.details) == (None, None, None, {})
    # when
    code, output = verify()
    # then
    assert code == 0, output


async def test_verify_catches_personal_fields_nulled_without_redaction(gql: GQL, factory: Factory) -> None:
    chain, events = await three_events_in_a_chain(gql, factory)
    await sql(f"UPDATE audit_event SET actor_label = NULL, ip = NULL, user_agent = NULL WHERE id = {events[2].id}")
    code, output = verify()
    assert code == 1
    assert f"TAMPERED chain={chain} seq=3" in output


async def test_verify_names_a_deleted_middle_event(gql: GQL, factory: Factory) -> None:
    # given
    chain, events = await three_events_in_a_chain(gql, factory)
    await sql(f"DELETE FROM audit_event WHERE id = {events[1].id}")
    # when
    code, output = verify()
    # then
    assert code == 1
    assert f"TAMPERED chain={chain} seq=2: events 2..2 are missing" in output


async def test_verify_names_a_deleted_newest_event(gql: GQL, factory: Factory) -> None:
    # given
    chain, events = await three_events_in_a_chain(gql, factory)
    await sql(f"DELETE FROM audit_event WHERE id = {events[2].id}")
    # when
    code, output = verify()
    # then
    assert code == 1
    assert f"TAMPERED chain={chain} seq=3: newest events were deleted or the head was edited" in output


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE audit_chain SET last_hash = '{zeros}' WHERE key = '{chain}'",
        "UPDATE audit_chain SET seq = 2 WHERE key = '{chain}'",
        "DELETE FROM audit_chain WHERE key = '{chain}'",
    ],
    ids=["hash", "seq", "deleted"],
)
async def test_verify_names_an_edited_chain_head(gql: GQL, factory: Factory, edit: str) -> None:
    # given
    chain, _ = await three_events_in_a_chain(gql, factory)
    await sql(edit.format(zeros="0" * 64, chain=chain))
    # when
    code, output = verify()
    # then
    assert code == 1
    assert f"TAMPERED chain={chain}" in output


async def test_verify_names_an_edited_hash_column(gql: GQL, factory: Factory) -> None:
    # given
    chain, events = await three_events_in_a_chain(gql, factory)
    await sql(f"UPDATE audit_event SET hash = '{'f' * 64}' WHERE id = {events[0].id}")
    # when
    code, output = verify()
    # then
    assert code == 1
    assert f"TAMPERED chain={chain} seq=1: event content does not match its hash (edited)" in output
    assert f"TAMPERED chain={chain} seq=2: link to the previous event is broken" in output


@pytest.mark.postgres
async def test_concurrent_writes_keep_one_unbroken_chain(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    staff = [await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner) for _ in range(8)]
    token = await gql.login(tenant.owner.email)
    customer_id = gid("Customer", tenant.customers[0].id)
    # when
    await gather(
        *(gql.login(u.email) for u in staff),
        *(gql(UPDATE, {"i": {"customerId": customer_id, "city": f"City {n}"}}, token=token) for n in range(8)),
    )
    # then
    await sequence_pending()
    chain = f"partner:{tenant.partner.id}"
    seqs = [e.seq for e in await AuditEvent.filter(chain=chain).order_by("seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 2 + 1 + 8 + 1
    code, output = verify()
    assert code == 0, output
