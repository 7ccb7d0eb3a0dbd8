"""Tenancy isolation: another partner's customers, a sibling customer and anonymous callers see nothing.

Every test looks from one side of a wall and checks that nothing from the other side shows up — not even a
hint that it exists: a foreign object answers exactly like one that was never created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from domain.accounts.models import Membership, Role, User
from domain.accounts.services import org_key
from domain.audit.models import AuditEvent
from domain.customers.models import Customer
from domain.partners.models import Partner
from tests.conftest import GQL, Factory, gid

MISSING_CUSTOMER = gid("Customer", 987_654)

CUSTOMER = "query($id: ID!) { customer(id: $id) { id name } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
CUSTOMERS = """
query($f: CustomerFilter) { customers(filter: $f, first: 100) { totalCount edges { node { id name } } } }"""
PARTNER_CUSTOMERS = """
query($id: ID!) { partner(id: $id) { name customers(first: 100) { totalCount nodes { id name } } } }"""
TEAM = """
query($id: ID!) {
  customer(id: $id) {
    name
    teamMembers { totalCount nodes { id email memberships { id role customer { id name } partner { name } } } }
  }
}"""
AUDIT = """
query($f: AuditEventFilter) {
  auditEvents(filter: $f, first: 100) {
    totalCount
    edges { node { action objectType objectId details customer { id name } partner { id name } } }
  }
}"""
UPDATE = """
mutation($i: CustomerUpdateInput!) { customerUpdate(input: $i) { customer { id } errors { field message code } } }"""
DISABLE = """
mutation($i: CustomerDisableInput!) { customerDisable(input: $i) { customer { id } errors { field message code } } }"""
ENABLE = """
mutation($i: CustomerEnableInput!) { customerEnable(input: $i) { customer { id } errors { field message code } } }"""


@dataclass
class World:
    """Partner Alpha (customers Alpha One, Alpha Two) and partner Bravo (Bravo One, Bravo Two).

    `shared` is a user who belongs to Alpha One and to Bravo One.
    """

    alpha: Partner
    alpha_owner: User
    alpha_staff: User
    alpha_one: Customer
    alpha_one_admin: User
    alpha_one_member: User
    alpha_two: Customer
    alpha_two_admin: User
    bravo: Partner
    bravo_owner: User
    bravo_one: Customer
    bravo_one_admin: User
    bravo_two: Customer
    shared: User
    shared_bravo_membership: Membership

    @property
    def bravo_customer_ids(self) -> list[str]:
        return [gid("Customer", self.bravo_one.id), gid("Customer", self.bravo_two.id)]


@pytest.fixture
async def world(factory: Factory) -> World:
    alpha, alpha_owner = await factory.partner("Alpha Agency")
    alpha_one, alpha_one_admin = await factory.customer(alpha, "Alpha One")
    alpha_two, alpha_two_admin = await factory.customer(alpha, "Alpha Two")
    bravo, bravo_owner = await factory.partner("Bravo Agency")
    bravo_one, bravo_one_admin = await factory.customer(bravo, "Bravo One")
    bravo_two, _ = await factory.customer(bravo, "Bravo Two")
    shared = await factory.user(role=Role.CUSTOMER_MEMBER, customer=alpha_one)
    shared_bravo = await Membership.create(
        user=shared, role=Role.CUSTOMER_ADMIN, customer=bravo_one, org_key=org_key(customer_id=bravo_one.id)
    )
    return World(
        alpha=alpha,
        alpha_owner=alpha_owner,
        alpha_staff=await factory.user(role=Role.PARTNER_MEMBER, partner=alpha),
        alpha_one=alpha_one,
        alpha_one_admin=alpha_one_admin,
        alpha_one_member=await factory.user(role=Role.CUSTOMER_MEMBER, customer=alpha_one),
        alpha_two=alpha_two,
        alpha_two_admin=alpha_two_admin,
        bravo=bravo,
        bravo_owner=bravo_owner,
        bravo_one=bravo_one,
        bravo_one_admin=bravo_one_admin,
        bravo_two=bravo_two,
        shared=shared,
        shared_bravo_membership=shared_bravo,
    )


ALPHA_STAFF = ["alpha_owner", "alpha_staff"]


def assert_nothing_of_bravo(text: str, world: World) -> None:
    assert "Bravo" not in text
    assert world.bravo_one_admin.email not in text
    for cid in world.bravo_customer_ids:
        assert cid not in text


# --- another partner's customers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ALPHA_STAFF)
async def test_partner_staff_cannot_read_another_partners_customer(gql: GQL, world: World, who: str) -> None:
    # given
    token = await gql.login(getattr(world, who).email)
    # when
    answers = [await gql.raw(q, {"id": cid}, token) for cid in world.bravo_customer_ids for q in (CUSTOMER, NODE)]
    # then
    assert [a.json() for a in answers] == [
        {"data": {"customer": None}},
        {"data": {"node": None}},
        {"data": {"customer": None}},
        {"data": {"node": None}},
    ]


@pytest.mark.parametrize(
    "target",
    [
        lambda w: gid("Partner", w.bravo.id),
        lambda w: gid("User", w.bravo_one_admin.id),
        lambda w: gid("User", w.bravo_owner.id),
        lambda w: gid("Membership", w.shared_bravo_membership.id),
    ],
    ids=["partner", "customer-admin", "partner-owner", "membership"],
)
async def test_partner_staff_cannot_reach_another_partners_objects_by_node(gql: GQL, world: World, target: Any) -> None:
    # given
    token = await gql.login(world.alpha_owner.email)
    # when
    data = await gql(NODE, {"id": target(world)}, token=token)
    # then
    assert data == {"node": None}


@pytest.mark.parametrize("who", ALPHA_STAFF)
@pytest.mark.parametrize(
    "filter_",
    [None, {"status": "ACTIVE"}, {"search": "Bravo"}, {"search": "customer"}, {"search": "cust"}],
    ids=["all", "active", "bravo-name", "email-domain", "username"],
)
async def test_customers_list_holds_only_own_partners_customers(
    gql: GQL, world: World, who: str, filter_: dict[str, Any] | None
) -> None:
    # given
    token = await gql.login(getattr(world, who).email)
    # when
    response = await gql.raw(CUSTOMERS, {"f": filter_}, token)
    # then
    data = response.json()["data"]["customers"]
    assert {e["node"]["name"] for e in data["edges"]} <= {"Alpha One", "Alpha Two"}
    assert data["totalCount"] == len(data["edges"])
    assert_nothing_of_bravo(response.text, world)


async def test_search_by_a_foreign_admins_email_finds_nothing(gql: GQL, world: World) -> None:
    # given
    token = await gql.login(world.alpha_owner.email)
    # when
    data = await gql(CUSTOMERS, {"f": {"search": world.bravo_one_admin.email}}, token=token)
    # then
    assert data["customers"] == {"totalCount": 0, "edges": []}


async def test_partner_customers_connection_is_walled_too(gql: GQL, world: World) -> None:
    # given
    token = await gql.login(world.alpha_owner.email)
    # when
    own = await gql(PARTNER_CUSTOMERS, {"id": gid("Partner", world.alpha.id)}, token=token)
    foreign = await gql(PARTNER_CUSTOMERS, {"id": gid("Partner", world.bravo.id)}, token=token)
    # then
    assert own["partner"]["customers"]["totalCount"] == 2
    assert {n["name"] for n in own["partner"]["customers"]["nodes"]} == {"Alpha One", "Alpha Two"}
    assert foreign == {"partner": None}


@pytest.mark.parametrize("who", ALPHA_STAFF)
@pytest.mark.parametrize(
    ("mutation", "extra"),
    [(UPDATE, {"companyName": "Hijacked", "city": "Nowhere"}), (DISABLE, {}), (ENABLE, {})],
    ids=["update", "disable", "enable"],
)
async def test_partner_staff_cannot_change_another_partners_customer(
    gql: GQL, world: World, who: str, mutation: str, extra: dict[str, Any]
) -> None:
    # given
    await Customer.filter(id=world.bravo_two.id).update(status="DISABLED")  # so that enabling would change it
    token = await gql.login(getattr(world, who).email)
    events_before = await AuditEvent.filter(action__startswith="customer.").count()
    # when
    foreign = [
        await gql(mutation, {"i": {"customerId": cid, **extra}}, token=token) for cid in world.bravo_customer_ids
    ]
    missing = await gql(mutation, {"i": {"customerId": MISSING_CUSTOMER, **extra}}, token=token)
    # then
    for answer in foreign:
        assert answer == missing  # the same words as for a customer that does not exist
        payload = next(iter(answer.values()))
        assert payload["customer"] is None
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [("customerId", "NOT_FOUND")]
    one, two = await Customer.get(id=world.bravo_one.id), await Customer.get(id=world.bravo_two.id)
    assert (one.name, one.city, one.status) == ("Bravo One", "", "ACTIVE")
    assert (two.name, two.status) == ("Bravo Two", "DISABLED")
    assert await AuditEvent.filter(action__startswith="customer.").count() == events_before


async def test_team_members_show_only_memberships_within_the_viewers_partner(gql: GQL, world: World) -> None:
    # given
    alpha_token = await gql.login(world.alpha_owner.email)
    bravo_token = await gql.login(world.bravo_owner.email)
    # when
    seen_by_alpha = await gql.raw(TEAM, {"id": gid("Customer", world.alpha_one.id)}, alpha_token)
    seen_by_bravo = await gql(TEAM, {"id": gid("Customer", world.bravo_one.id)}, token=bravo_token)
    # then
    team = seen_by_alpha.json()["data"]["customer"]["teamMembers"]
    shared = next(n for n in team["nodes"] if n["email"] == world.shared.email)
    assert [(m["role"], m["customer"]["name"]) for m in shared["memberships"]] == [("CUSTOMER_MEMBER", "Alpha One")]
    assert team["totalCount"] == 3  # admin, member, shared
    assert_nothing_of_bravo(seen_by_alpha.text, world)
    shared_in_bravo = next(
        n for n in seen_by_bravo["customer"]["teamMembers"]["nodes"] if n["email"] == world.shared.email
    )
    assert [(m["role"], m["customer"]["name"]) for m in shared_in_bravo["memberships"]] == [
        ("CUSTOMER_ADMIN", "Bravo One")
    ]


async def test_team_members_of_another_partners_customer_are_unreachable(gql: GQL, world: World) -> None:
    # given
    token = await gql.login(world.alpha_owner.email)
    # when
    data = await gql(TEAM, {"id": gid("Customer", world.bravo_one.id)}, token=token)
    # then
    assert data == {"customer": None}


@pytest.mark.parametrize("who", ALPHA_STAFF)
async def test_audit_events_hold_nothing_of_another_partner(gql: GQL, world: World, who: str) -> None:
    # given
    assert await AuditEvent.filter(partner_id=world.bravo.id).count() > 0
    token = await gql.login(getattr(world, who).email)
    # when
    everything = await gql.raw(AUDIT, {"f": None}, token)
    filtered = await gql(AUDIT, {"f": {"customerId": gid("Customer", world.bravo_one.id)}}, token=token)
    # then
    events = everything.json()["data"]["auditEvents"]
    assert events["totalCount"] > 0
    assert {e["node"]["partner"]["id"] for e in events["edges"] if e["node"]["partner"]} == {
        gid("Partner", world.alpha.id)
    }
    assert_nothing_of_bravo(everything.text, world)
    assert filtered["auditEvents"] == {"totalCount": 0, "edges": []}


# --- a sibling customer of the same partner -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alpha_one_admin", "alpha_one_member"])
async def test_customer_user_cannot_see_a_sibling_customer(gql: GQL, world: World, who: str) -> None:
    # given
    token = await gql.login(getattr(world, who).email)
    sibling = gid("Customer", world.alpha_two.id)
    # when
    by_field = await gql(CUSTOMER, {"id": sibling}, token=token)
    by_node = await gql(NODE, {"id": sibling}, token=token)
    sibling_admin = await gql(NODE, {"id": gid("User", world.alpha_two_admin.id)}, token=token)
    # then
    assert (by_field, by_node, sibling_admin) == ({"customer": None}, {"node": None}, {"node": None})


@pytest.mark.parametrize("who", ["alpha_one_admin", "alpha_one_member"])
@pytest.mark.parametrize("search", [None, "Alpha", "Two", "cust"])
async def test_customer_user_lists_only_its_own_customer(gql: GQL, world: World, who: str, search: str | None) -> None:
    # given
    token = await gql.login(getattr(world, who).email)
    # when
    response = await gql.raw(CUSTOMERS, {"f": {"search": search}}, token)
    # then
    data = response.json()["data"]["customers"]
    assert {e["node"]["name"] for e in data["edges"]} <= {"Alpha One"}
    assert data["totalCount"] == len(data["edges"])
    assert "Alpha Two" not in response.text


async def test_customer_user_sees_its_own_customer(gql: GQL, world: World) -> None:
    # given
    token = await gql.login(world.alpha_one_member.email)
    # when
    data = await gql(CUSTOMERS, {"f": None}, token=token)
    # then
    assert [e["node"]["name"] for e in data["customers"]["edges"]] == ["Alpha One"]


@pytest.mark.parametrize(("mutation", "code"), [(UPDATE, "NOT_FOUND"), (DISABLE, "FORBIDDEN"), (ENABLE, "FORBIDDEN")])
async def test_customer_admin_cannot_change_a_sibling_customer(
    gql: GQL, world: World, mutation: str, code: str
) -> None:
    # given
    token = await gql.login(world.alpha_one_admin.email)
    extra = {"city": "Elsewhere"} if mutation is UPDATE else {}
    # when
    sibling = await gql(mutation, {"i": {"customerId": gid("Customer", world.alpha_two.id), **extra}}, token=token)
    missing = await gql(mutation, {"i": {"customerId": MISSING_CUSTOMER, **extra}}, token=token)
    # then
    assert sibling == missing
    payload = next(iter(sibling.values()))
    assert [e["code"] for e in payload["errors"]] == [code]
    stored = await Customer.get(id=world.alpha_two.id)
    assert (stored.city, stored.status) == ("", "ACTIVE")


async def test_customer_admin_audit_log_holds_only_its_own_customer(gql: GQL, world: World) -> None:
    # given
    sibling_token = await gql.login(world.alpha_two_admin.email)
    await gql(
        UPDATE, {"i": {"customerId": gid("Customer", world.alpha_two.id), "city": "Secretville"}}, token=sibling_token
    )
    token = await gql.login(world.alpha_one_admin.email)
    # when
    response = await gql.raw(AUDIT, {"f": None}, token)
    filtered = await gql(AUDIT, {"f": {"customerId": gid("Customer", world.alpha_two.id)}}, token=token)
    # then
    events = response.json()["data"]["auditEvents"]
    assert events["totalCount"] > 0
    assert {e["node"]["customer"]["name"] for e in events["edges"]} == {"Alpha One"}
    assert "Alpha Two" not in response.text and "Secretville" not in response.text
    assert filtered["auditEvents"]["totalCount"] == 0


async def test_customer_member_sees_no_audit_events(gql: GQL, world: World) -> None:
    # given
    token = await gql.login(world.alpha_one_member.email)
    # when
    data = await gql(AUDIT, {"f": None}, token=token)
    # then
    assert data["auditEvents"]["totalCount"] == 0


async def test_customer_user_sees_team_members_of_its_own_customer_only(gql: GQL, world: World) -> None:
    # given
    token = await gql.login(world.alpha_one_admin.email)
    # when
    response = await gql.raw(TEAM, {"id": gid("Customer", world.alpha_one.id)}, token)
    # then
    team = response.json()["data"]["customer"]["teamMembers"]
    assert {n["email"] for n in team["nodes"]} == {
        world.alpha_one_admin.email,
        world.alpha_one_member.email,
        world.shared.email,
    }
    shared = next(n for n in team["nodes"] if n["email"] == world.shared.email)
    assert [m["customer"]["name"] for m in shared["memberships"]] == ["Alpha One"]
    assert_nothing_of_bravo(response.text, world)


# --- anonymous ------------------------------------------------------------------------------------------------------


async def test_anonymous_sees_nothing(gql: GQL, world: World) -> None:
    # given
    cid = gid("Customer", world.alpha_one.id)
    # when
    listed = await gql(CUSTOMERS, {"f": None})
    one = await gql(CUSTOMER, {"id": cid})
    node = await gql(NODE, {"id": cid})
    partner = await gql(PARTNER_CUSTOMERS, {"id": gid("Partner", world.alpha.id)})
    audit = await gql(AUDIT, {"f": None})
    # then
    assert listed["customers"] == {"totalCount": 0, "edges": []}
    assert (one, node, partner) == ({"customer": None}, {"node": None}, {"partner": None})
    assert audit["auditEvents"]["totalCount"] == 0


@pytest.mark.parametrize(("mutation", "code"), [(UPDATE, "NOT_FOUND"), (DISABLE, "FORBIDDEN"), (ENABLE, "FORBIDDEN")])
async def test_anonymous_cannot_change_customers(gql: GQL, world: World, mutation: str, code: str) -> None:
    # given
    extra = {"city": "Anywhere"} if mutation is UPDATE else {}
    # when
    data = await gql(mutation, {"i": {"customerId": gid("Customer", world.alpha_one.id), **extra}})
    # then
    payload = next(iter(data.values()))
    assert [e["code"] for e in payload["errors"]] == [code]
    stored = await Customer.get(id=world.alpha_one.id)
    assert (stored.city, stored.status) == ("", "ACTIVE")


async def test_platform_admin_sees_every_partners_customers(gql: GQL, world: World, factory: Factory) -> None:
    # given
    token = await gql.login((await factory.admin()).email)
    # when
    data = await gql(CUSTOMERS, {"f": None}, token=token)
    # then
    assert {e["node"]["name"] for e in data["customers"]["edges"]} == {
        "Alpha One",
        "Alpha Two",
        "Bravo One",
        "Bravo Two",
    }
