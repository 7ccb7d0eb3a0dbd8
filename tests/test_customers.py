"""Customers (seed 002): create with a first admin, edit, disable/enable, list and find — through /graphql."""

from __future__ import annotations

from typing import Any

import pytest

from domain.accounts.models import Membership, Role, User
from domain.audit.models import AuditEvent
from domain.customers.models import Customer
from tests.conftest import GQL, PASSWORD, Factory, gid

CREATE = """
mutation($i: CustomerCreateInput!) {
  customerCreate(input: $i) {
    customer { id name status phone country state city zip address1 address2 partner { name } }
    user { id username email firstName lastName jobTitle phone memberships { role customer { name } } }
    errors { field message code }
  }
}"""
UPDATE = """
mutation($i: CustomerUpdateInput!) {
  customerUpdate(input: $i) {
    customer { id name phone country state city zip address1 address2 }
    errors { field message code }
  }
}"""
DISABLE = """
mutation($i: CustomerDisableInput!) {
  customerDisable(input: $i) { customer { id status disabledAt } errors { field message code } }
}"""
ENABLE = """
mutation($i: CustomerEnableInput!) {
  customerEnable(input: $i) { customer { id status disabledAt } errors { field message code } }
}"""
CUSTOMERS = """
query($f: CustomerFilter, $first: Int, $after: String) {
  customers(filter: $f, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id name status } }
  }
}"""
CUSTOMER = "query($id: ID!) { customer(id: $id) { id name status } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id ... on Customer { name } } }"

STRONG = "Str0ng!pass"


def new_customer(n: int = 1, **overrides: Any) -> dict[str, Any]:
    data = {
        "username": f"acme{n}",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": f"ada{n}@acme{n}.example.com",
        "phone": "+1 (555) 010-0000",
        "country": "US",
        "state": "CA",
        "city": "San Francisco",
        "zip": "94105",
        "address1": "1 Market St",
        "address2": "Suite 100",
        "companyName": f"Acme {n}",
        "role": "CTO",
        "password": STRONG,
        "passwordConfirmation": STRONG,
    }
    data.update(overrides)
    return data


async def written() -> dict[str, int]:
    """Rows that a customerCreate could leave behind."""
    return {
        "customers": await Customer.all().count(),
        "users": await User.all().count(),
        "memberships": await Membership.all().count(),
        "audit_events": await AuditEvent.filter(action__startswith="customer.").count(),
    }


async def staff_token(gql: GQL, factory: Factory) -> tuple[Any, str]:
    partner, owner = await factory.partner("Northwind Agency")
    return partner, await gql.login(owner.email)


# --- customerCreate -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PARTNER_ADMIN, Role.PARTNER_MEMBER])
async def test_partner_staff_create_customer_with_its_first_admin(gql: GQL, factory: Factory, role: Role) -> None:
    # given
    partner, _ = await factory.partner("Northwind Agency")
    staff = await factory.user(role=role, partner=partner)
    token = await gql.login(staff.email)
    # when
    data = (await gql(CREATE, {"i": new_customer()}, token=token))["customerCreate"]
    # then
    assert data["errors"] == []
    assert data["customer"] == {
        "id": data["customer"]["id"],
        "name": "Acme 1",
        "status": "ACTIVE",
        "phone": "+1 (555) 010-0000",
        "country": "US",
        "state": "CA",
        "city": "San Francisco",
        "zip": "94105",
        "address1": "1 Market St",
        "address2": "Suite 100",
        "partner": {"name": "Northwind Agency"},
    }
    assert data["user"]["username"] == "acme1"
    assert data["user"]["email"] == "ada1@acme1.example.com"
    assert (data["user"]["firstName"], data["user"]["lastName"], data["user"]["jobTitle"]) == ("Ada", "Lovelace", "CTO")
    assert data["user"]["memberships"] == [{"role": "CUSTOMER_ADMIN", "customer": {"name": "Acme 1"}}]


async def test_created_admin_signs_in_by_username_and_sees_only_its_customer(gql: GQL, factory: Factory) -> None:
    # given
    partner, token = await staff_token(gql, factory)
    await factory.customer(partner, "Sibling Co")
    await gql(CREATE, {"i": new_customer()}, token=token)
    # when
    admin_token = await gql.login("ACME1", STRONG)
    data = await gql(CUSTOMERS, token=admin_token)
    # then
    assert data["customers"]["totalCount"] == 1
    assert [e["node"]["name"] for e in data["customers"]["edges"]] == ["Acme 1"]


async def test_create_is_audited_without_the_password(gql: GQL, factory: Factory) -> None:
    # given
    _, token = await staff_token(gql, factory)
    # when
    data = (await gql(CREATE, {"i": new_customer()}, token=token))["customerCreate"]
    # then
    customer = await Customer.get(name="Acme 1")
    events = await AuditEvent.filter(action="customer.create")
    assert [(e.object_type, e.object_id, e.customer_id) for e in events] == [
        ("Customer", str(customer.id), customer.id)
    ]
    assert events[0].details["admin_username"] == "acme1"
    assert STRONG not in str(events[0].details)
    assert data["customer"]["id"] == gid("Customer", customer.id)


async def test_platform_admin_creates_customer_for_a_chosen_partner(gql: GQL, factory: Factory) -> None:
    # given
    partner, _ = await factory.partner("Northwind Agency")
    token = await gql.login((await factory.admin()).email)
    # when
    data = (await gql(CREATE, {"i": new_customer(partnerId=gid("Partner", partner.id))}, token=token))["customerCreate"]
    # then
    assert data["errors"] == []
    assert data["customer"]["partner"] == {"name": "Northwind Agency"}


async def test_platform_admin_must_choose_a_partner(gql: GQL, factory: Factory) -> None:
    # given
    await factory.partner()
    token = await gql.login((await factory.admin()).email)
    before = await written()
    # when
    data = (await gql(CREATE, {"i": new_customer()}, token=token))["customerCreate"]
    # then
    assert [(e["field"], e["code"]) for e in data["errors"]] == [("partnerId", "REQUIRED")]
    assert data["customer"] is None
    assert await written() == before


@pytest.mark.parametrize("role", [Role.CUSTOMER_ADMIN, Role.CUSTOMER_MEMBER])
async def test_customer_users_cannot_create_customers(gql: GQL, factory: Factory, role: Role) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    user = await factory.user(role=role, customer=tenant.customers[0])
    token = await gql.login(user.email)
    before = await written()
    # when
    data = (await gql(CREATE, {"i": new_customer()}, token=token))["customerCreate"]
    # then
    assert [e["code"] for e in data["errors"]] == ["FORBIDDEN"]
    assert (data["customer"], data["user"]) == (None, None)
    assert await written() == before


async def test_anonymous_cannot_create_customers(gql: GQL, factory: Factory) -> None:
    # given
    await factory.tenant(customers=1)
    before = await written()
    # when
    data = (await gql(CREATE, {"i": new_customer()}))["customerCreate"]
    # then
    assert [e["code"] for e in data["errors"]] == ["FORBIDDEN"]
    assert await written() == before


LONG = "x" * 10_000

INVALID_INPUTS = [
    # (overrides, field, code)
    ({"username": ""}, "username", "REQUIRED"),
    ({"username": "   "}, "username", "REQUIRED"),
    ({"username": "ab"}, "username", "INVALID"),
    ({"username": "has space"}, "username", "INVALID"),
    ({"username": "-leading"}, "username", "INVALID"),
    ({"username": "u" * 51}, "username", "INVALID"),
    ({"username": "nul\x00name"}, "username", "INVALID"),
    ({"firstName": ""}, "firstName", "REQUIRED"),
    ({"firstName": "Ad\x00a"}, "firstName", "INVALID"),
    ({"firstName": "A" * 101}, "firstName", "INVALID"),
    ({"lastName": "  "}, "lastName", "REQUIRED"),
    ({"lastName": LONG}, "lastName", "INVALID"),
    ({"email": ""}, "email", "REQUIRED"),
    ({"email": "not-an-email"}, "email", "INVALID"),
    ({"email": "ada@"}, "email", "INVALID"),
    ({"email": "ada@exa mple.com"}, "email", "INVALID"),
    ({"email": "a" * 250 + "@example.com"}, "email", "INVALID"),
    ({"email": "ada\x00@example.com"}, "email", "INVALID"),
    ({"companyName": ""}, "companyName", "REQUIRED"),
    ({"companyName": "C" * 201}, "companyName", "INVALID"),
    ({"companyName": "Acme\x00"}, "companyName", "INVALID"),
    ({"role": "R" * 101}, "role", "INVALID"),
    ({"phone": "call me maybe"}, "phone", "INVALID"),
    ({"phone": "1" * 25}, "phone", "INVALID"),
    ({"country": "C" * 101}, "country", "INVALID"),
    ({"state": "S" * 101}, "state", "INVALID"),
    ({"city": "Sa\x00n"}, "city", "INVALID"),
    ({"city": LONG}, "city", "INVALID"),
    ({"zip": "9" * 21}, "zip", "INVALID"),
    ({"address1": "A" * 201}, "address1", "INVALID"),
    ({"address2": "B\x00"}, "address2", "INVALID"),
    ({"password": "", "passwordConfirmation": ""}, "password", "REQUIRED"),
    ({"password": "Sh0r!t", "passwordConfirmation": "Sh0r!t"}, "password", "WEAK_PASSWORD"),
    ({"password": "Aa1!" * 5 + "x", "passwordConfirmation": "Aa1!" * 5 + "x"}, "password", "WEAK_PASSWORD"),
    ({"password": "nouppercase1!", "passwordConfirmation": "nouppercase1!"}, "password", "WEAK_PASSWORD"),
    ({"password": "NOLOWERCASE1!", "passwordConfirmation": "NOLOWERCASE1!"}, "password", "WEAK_PASSWORD"),
    ({"password": "NoDigitsHere!", "passwordConfirmation": "NoDigitsHere!"}, "password", "WEAK_PASSWORD"),
    ({"password": "NoSpecial123", "passwordConfirmation": "NoSpecial123"}, "password", "WEAK_PASSWORD"),
    ({"password": LONG, "passwordConfirmation": LONG}, "password", "WEAK_PASSWORD"),
    ({"passwordConfirmation": "Str0ng!pasS"}, "passwordConfirmation", "INVALID"),
    ({"passwordConfirmation": ""}, "passwordConfirmation", "INVALID"),
]


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    INVALID_INPUTS,
    ids=[f"{f}-{c}-{i}" for i, (_, f, c) in enumerate(INVALID_INPUTS)],
)
async def test_create_refuses_invalid_field_and_writes_nothing(
    gql: GQL, factory: Factory, overrides: dict[str, Any], field: str, code: str
) -> None:
    # given
    _, token = await staff_token(gql, factory)
    before = await written()
    # when
    response = await gql.raw(CREATE, {"i": new_customer(**overrides)}, token)
    # then
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    data = body["data"]["customerCreate"]
    assert [(e["field"], e["code"]) for e in data["errors"]] == [(field, code)]
    assert all(e["message"] for e in data["errors"])
    assert (data["customer"], data["user"]) == (None, None)
    assert await written() == before


@pytest.mark.parametrize(
    "overrides",
    [
        {"password": "Aa1!aaaa", "passwordConfirmation": "Aa1!aaaa"},  # exactly 8
        {"password": "Aa1!" * 5, "passwordConfirmation": "Aa1!" * 5},  # exactly 20
        {"password": "Pass word 1", "passwordConfirmation": "Pass word 1"},  # a space is a special character
        {"username": "a.b_c-d", "companyName": "C" * 200, "firstName": "F" * 100, "zip": "9" * 20},
        {"email": "Ada.Lovelace+crm@Example.COM"},
        {"phone": None, "country": None, "address1": "", "address2": None, "role": None},
    ],
    ids=["password-8", "password-20", "password-space", "lengths-at-limit", "email-plus-case", "optional-empty"],
)
async def test_create_accepts_values_at_the_limits(gql: GQL, factory: Factory, overrides: dict[str, Any]) -> None:
    # given
    _, token = await staff_token(gql, factory)
    # when
    data = (await gql(CREATE, {"i": new_customer(**overrides)}, token=token))["customerCreate"]
    # then
    assert data["errors"] == []
    assert data["customer"] is not None
    assert await Customer.all().count() == 1


async def test_create_reports_every_failure_at_once(gql: GQL, factory: Factory) -> None:
    # given
    _, token = await staff_token(gql, factory)
    before = await written()
    bad = new_customer(
        username="x",
        firstName="",
        lastName="L" * 101,
        email="nope",
        companyName=" ",
        phone="phone?",
        city="\x00",
        password="weak",
        passwordConfirmation="weak",
    )
    # when
    data = (await gql(CREATE, {"i": bad}, token=token))["customerCreate"]
    # then
    assert {(e["field"], e["code"]) for e in data["errors"]} == {
        ("username", "INVALID"),
        ("firstName", "REQUIRED"),
        ("lastName", "INVALID"),
        ("email", "INVALID"),
        ("companyName", "REQUIRED"),
        ("phone", "INVALID"),
        ("city", "INVALID"),
        ("password", "WEAK_PASSWORD"),
    }
    assert await written() == before


async def test_username_and_email_are_unique_case_insensitively(gql: GQL, factory: Factory) -> None:
    # given
    _, token = await staff_token(gql, factory)
    assert (await gql(CREATE, {"i": new_customer()}, token=token))["customerCreate"]["errors"] == []
    before = await written()
    # when
    data = (await gql(CREATE, {"i": new_customer(2, username="ACME1", email="ADA1@Acme1.Example.com")}, token=token))[
        "customerCreate"
    ]
    # then
    assert {(e["field"], e["code"]) for e in data["errors"]} == {("username", "UNIQUE"), ("email", "UNIQUE")}
    assert (data["customer"], data["user"]) == (None, None)
    assert await written() == before


async def test_email_of_a_user_of_another_partner_is_taken_too(gql: GQL, factory: Factory) -> None:
    # given
    other = await factory.tenant(customers=1)
    _, token = await staff_token(gql, factory)
    before = await written()
    # when
    data = (await gql(CREATE, {"i": new_customer(email=other.admins[0].email.upper())}, token=token))["customerCreate"]
    # then
    assert [(e["field"], e["code"]) for e in data["errors"]] == [("email", "UNIQUE")]
    assert await written() == before


async def test_uniqueness_and_format_failures_are_reported_together(gql: GQL, factory: Factory) -> None:
    # given
    partner, token = await staff_token(gql, factory)
    _, existing = await factory.customer(partner)
    # when
    data = (
        await gql(
            CREATE,
            {"i": new_customer(username=existing.username.upper(), companyName="", passwordConfirmation="other")},
            token=token,
        )
    )["customerCreate"]
    # then
    assert {(e["field"], e["code"]) for e in data["errors"]} == {
        ("username", "UNIQUE"),
        ("companyName", "REQUIRED"),
        ("passwordConfirmation", "INVALID"),
    }


@pytest.mark.parametrize(
    "partner_id",
    ["not base64 at all!", "UGFydG5lcjo=", gid("Customer", 1), gid("Partner", 2**40), gid("Partner", -1)],
    ids=["garbage", "no-pk", "customer-gid", "huge", "negative"],
)
async def test_create_with_a_wrong_partner_id_is_not_found(gql: GQL, factory: Factory, partner_id: str) -> None:
    # given
    await factory.partner()
    token = await gql.login((await factory.admin()).email)
    before = await written()
    # when
    response = await gql.raw(CREATE, {"i": new_customer(partnerId=partner_id)}, token)
    # then
    assert response.status_code == 200
    data = response.json()["data"]["customerCreate"]
    assert [(e["field"], e["code"]) for e in data["errors"]] == [("partnerId", "NOT_FOUND")]
    assert await written() == before


async def test_partner_staff_cannot_create_under_another_partner(gql: GQL, factory: Factory) -> None:
    # given
    other, _ = await factory.partner("Other Agency")
    _, token = await staff_token(gql, factory)
    before = await written()
    # when
    data = (await gql(CREATE, {"i": new_customer(partnerId=gid("Partner", other.id))}, token=token))["customerCreate"]
    # then
    assert [(e["field"], e["code"]) for e in data["errors"]] == [("partnerId", "NOT_FOUND")]
    assert await written() == before


# --- customerUpdate -------------------------------------------------------------------------------------------------


async def test_update_changes_only_the_fields_sent(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await Customer.filter(id=customer.id).update(phone="+44 20 7946 0000", city="London", zip="EC1A")
    token = await gql.login(tenant.owner.email)
    # when
    data = (await gql(UPDATE, {"i": {"customerId": gid("Customer", customer.id), "city": "  Leeds "}}, token=token))[
        "customerUpdate"
    ]
    # then
    assert data["errors"] == []
    assert data["customer"]["city"] == "Leeds"
    stored = await Customer.get(id=customer.id)
    assert (stored.name, stored.phone, stored.zip, stored.city) == (customer.name, "+44 20 7946 0000", "EC1A", "Leeds")
    event = await AuditEvent.get(action="customer.update")
    assert event.details == {"changes": {"city": {"before": "London", "after": "Leeds"}}}


async def test_update_renames_the_company_and_clears_an_address_line(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await Customer.filter(id=customer.id).update(address2="Floor 3")
    token = await gql.login(tenant.owner.email)
    # when
    data = (
        await gql(
            UPDATE,
            {"i": {"customerId": gid("Customer", customer.id), "companyName": "Renamed Ltd", "address2": ""}},
            token=token,
        )
    )["customerUpdate"]
    # then
    assert data["errors"] == []
    assert (data["customer"]["name"], data["customer"]["address2"]) == ("Renamed Ltd", "")


async def test_update_without_changes_writes_no_audit_event(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    token = await gql.login(tenant.owner.email)
    # when
    data = (
        await gql(
            UPDATE, {"i": {"customerId": gid("Customer", customer.id), "companyName": customer.name}}, token=token
        )
    )["customerUpdate"]
    # then
    assert data["errors"] == []
    assert await AuditEvent.filter(action="customer.update").count() == 0


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"companyName": ""}, [("companyName", "REQUIRED")]),
        ({"companyName": None}, [("companyName", "REQUIRED")]),
        ({"companyName": "N" * 201}, [("companyName", "INVALID")]),
        ({"phone": "not a phone"}, [("phone", "INVALID")]),
        ({"city": "x\x00y"}, [("city", "INVALID")]),
        ({"zip": LONG}, [("zip", "INVALID")]),
        (
            {"companyName": "", "address1": "A" * 201, "state": "\x00"},
            [("companyName", "REQUIRED"), ("address1", "INVALID"), ("state", "INVALID")],
        ),
    ],
    ids=["name-empty", "name-null", "name-long", "phone", "nul", "zip-long", "several"],
)
async def test_update_refuses_invalid_input_and_changes_nothing(
    gql: GQL, factory: Factory, changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    token = await gql.login(tenant.owner.email)
    # when
    data = (
        await gql(UPDATE, {"i": {"customerId": gid("Customer", customer.id), "city": "Paris", **changes}}, token=token)
    )["customerUpdate"]
    # then
    assert {(e["field"], e["code"]) for e in data["errors"]} == set(expected)
    assert data["customer"] is None
    stored = await Customer.get(id=customer.id)
    assert (stored.name, stored.city) == (customer.name, customer.city)
    assert await AuditEvent.filter(action="customer.update").count() == 0


@pytest.mark.parametrize(
    "customer_id",
    [
        "%%%garbage",
        "",
        gid("Partner", 1),
        gid("User", 1),
        gid("Customer", 2**40),
        gid("Customer", 0),
        gid("Customer", 99_999),
    ],
    ids=["garbage", "empty", "partner-gid", "user-gid", "huge", "zero", "missing"],
)
async def test_update_with_a_wrong_customer_id_is_not_found(gql: GQL, factory: Factory, customer_id: str) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(UPDATE, {"i": {"customerId": customer_id, "city": "Oslo"}}, token)
    # then
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    assert [(e["field"], e["code"]) for e in body["data"]["customerUpdate"]["errors"]] == [("customerId", "NOT_FOUND")]


async def test_customer_admin_may_edit_its_own_customer_but_a_member_may_not(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    admin_token = await gql.login(tenant.admins[0].email)
    member_token = await gql.login(member.email)
    variables = {"i": {"customerId": gid("Customer", customer.id), "city": "Berlin"}}
    # when
    by_member = (await gql(UPDATE, variables, token=member_token))["customerUpdate"]
    by_admin = (await gql(UPDATE, variables, token=admin_token))["customerUpdate"]
    # then
    assert [e["code"] for e in by_member["errors"]] == ["FORBIDDEN"]
    assert by_admin["errors"] == []
    assert (await Customer.get(id=customer.id)).city == "Berlin"


# --- customerDisable / customerEnable -------------------------------------------------------------------------------


async def test_disable_blocks_sign_in_and_ends_sessions_then_enable_restores(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer, admin = tenant.customers[0], tenant.admins[0]
    staff_token_ = await gql.login(tenant.owner.email)
    admin_token = await gql.login(admin.email)
    cid = gid("Customer", customer.id)
    # when
    disabled = (await gql(DISABLE, {"i": {"customerId": cid}}, token=staff_token_))["customerDisable"]
    # then
    assert disabled["errors"] == []
    assert disabled["customer"]["status"] == "DISABLED"
    assert disabled["customer"]["disabledAt"] is not None
    assert (await gql.raw(CUSTOMER, {"id": cid}, admin_token)).status_code == 401
    refused = await gql(
        "mutation($i: LoginInput!) { login(input: $i) { token errors { code } } }",
        {"i": {"login": admin.email, "password": PASSWORD}},
    )
    assert refused["login"] == {"token": None, "errors": [{"code": "ACCOUNT_DISABLED"}]}
    listed = await gql(CUSTOMERS, {"f": {"status": "DISABLED"}}, token=staff_token_)
    assert [e["node"]["id"] for e in listed["customers"]["edges"]] == [cid]
    # when
    enabled = (await gql(ENABLE, {"i": {"customerId": cid}}, token=staff_token_))["customerEnable"]
    # then
    assert enabled["errors"] == []
    assert enabled["customer"]["status"] == "ACTIVE"
    assert enabled["customer"]["disabledAt"] is None
    assert await gql.login(admin.email)
    actions = await AuditEvent.filter(action__in=["customer.disable", "customer.enable"]).order_by("id")
    assert [e.action for e in actions] == ["customer.disable", "customer.enable"]


async def test_disabling_twice_changes_nothing_the_second_time(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    cid = gid("Customer", tenant.customers[0].id)
    await gql(DISABLE, {"i": {"customerId": cid}}, token=token)
    # when
    data = (await gql(DISABLE, {"i": {"customerId": cid}}, token=token))["customerDisable"]
    # then
    assert data["errors"] == []
    assert data["customer"]["status"] == "DISABLED"
    assert await AuditEvent.filter(action="customer.disable").count() == 1


@pytest.mark.parametrize("mutation", [DISABLE, ENABLE], ids=["disable", "enable"])
@pytest.mark.parametrize("role", [Role.CUSTOMER_ADMIN, Role.CUSTOMER_MEMBER])
async def test_customer_users_cannot_disable_or_enable(gql: GQL, factory: Factory, mutation: str, role: Role) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    user = await factory.user(role=role, customer=customer)
    token = await gql.login(user.email)
    # when
    data = await gql(mutation, {"i": {"customerId": gid("Customer", customer.id)}}, token=token)
    # then
    payload = next(iter(data.values()))
    assert [e["code"] for e in payload["errors"]] == ["FORBIDDEN"]
    assert payload["customer"] is None
    assert (await Customer.get(id=customer.id)).status == "ACTIVE"


@pytest.mark.parametrize("mutation", [DISABLE, ENABLE], ids=["disable", "enable"])
@pytest.mark.parametrize(
    "customer_id", ["bm9wZQ", gid("Partner", 1), gid("Customer", 2**33)], ids=["garbage", "partner", "huge"]
)
async def test_disable_or_enable_with_a_wrong_id_is_not_found(
    gql: GQL, factory: Factory, mutation: str, customer_id: str
) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(mutation, {"i": {"customerId": customer_id}}, token)
    # then
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    payload = next(iter(body["data"].values()))
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("customerId", "NOT_FOUND")]


# --- customers / customer / node ------------------------------------------------------------------------------------


async def test_customers_pages_with_cursors_and_total_count(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=5)
    token = await gql.login(tenant.owner.email)
    ids = [gid("Customer", c.id) for c in tenant.customers]
    # when
    first = (await gql(CUSTOMERS, {"first": 2}, token=token))["customers"]
    second = (await gql(CUSTOMERS, {"first": 2, "after": first["pageInfo"]["endCursor"]}, token=token))["customers"]
    last = (await gql(CUSTOMERS, {"first": 2, "after": second["pageInfo"]["endCursor"]}, token=token))["customers"]
    # then
    assert [e["node"]["id"] for e in first["edges"]] == ids[:2]
    assert [e["node"]["id"] for e in second["edges"]] == ids[2:4]
    assert [e["node"]["id"] for e in last["edges"]] == ids[4:]
    assert (first["totalCount"], second["totalCount"], last["totalCount"]) == (5, 5, 5)
    assert first["pageInfo"]["hasNextPage"] and not first["pageInfo"]["hasPreviousPage"]
    assert second["pageInfo"]["hasNextPage"] and second["pageInfo"]["hasPreviousPage"]
    assert not last["pageInfo"]["hasNextPage"]
    assert first["pageInfo"]["startCursor"] == first["edges"][0]["cursor"]


@pytest.mark.parametrize("first", [101, 1000, -1])
async def test_customers_refuses_a_page_size_out_of_range(gql: GQL, factory: Factory, first: int) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(CUSTOMERS, {"first": first}, token)
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert len(body["errors"]) == 1
    assert body["errors"][0]["path"] == ["customers"]
    assert "first" in body["errors"][0]["message"]
    assert "INTERNAL_SERVER_ERROR" not in str(body)


async def test_customers_accepts_a_page_of_100(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    data = await gql(CUSTOMERS, {"first": 100}, token=token)
    # then
    assert data["customers"]["totalCount"] == 1


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"after": "not-a-cursor"}, "after"),
        ({"after": gid("Customer", 1)}, "after"),
        ({"after": gid("cursor", 2**40)}, "after"),
        ({"f": {"search": "acme\x00"}}, "search"),
    ],
    ids=["garbage-cursor", "global-id-as-cursor", "huge-cursor", "nul-search"],
)
async def test_customers_refuses_bad_arguments_without_an_internal_error(
    gql: GQL, factory: Factory, variables: dict[str, Any], field: str
) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(CUSTOMERS, variables, token)
    # then
    assert response.status_code == 200
    body = response.json()
    assert [e["path"] for e in body["errors"]] == [["customers"]]
    assert body["errors"][0]["extensions"] == {"code": "INVALID", "field": field}
    assert "INTERNAL_SERVER_ERROR" not in response.text


async def test_customers_filters_by_status(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=3)
    await Customer.filter(id=tenant.customers[1].id).update(status="DISABLED")
    token = await gql.login(tenant.owner.email)
    # when
    active = (await gql(CUSTOMERS, {"f": {"status": "ACTIVE"}}, token=token))["customers"]
    disabled = (await gql(CUSTOMERS, {"f": {"status": "DISABLED"}}, token=token))["customers"]
    # then
    assert [e["node"]["name"] for e in active["edges"]] == [tenant.customers[0].name, tenant.customers[2].name]
    assert active["totalCount"] == 2
    assert [e["node"]["name"] for e in disabled["edges"]] == [tenant.customers[1].name]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("globex", ["Globex Corporation"]),  # company name, any case
        ("  INITECH ", ["Initech"]),  # trimmed
        ("peter@initech", ["Initech"]),  # a team member's email
        ("HANKSCORPION", ["Globex Corporation"]),  # a team member's username
        ("o", ["Globex Corporation", "Initech"]),
        ("%", []),  # LIKE wildcards are literal
        ("_", []),
        ("nobody", []),
        ("", ["Globex Corporation", "Initech"]),
    ],
)
async def test_customers_search_matches_name_email_or_username(
    gql: GQL, factory: Factory, search: str, expected: list[str]
) -> None:
    # given
    _, token = await staff_token(gql, factory)
    for n, (company, username, email) in enumerate(
        [
            ("Globex Corporation", "hankscorpion", "hank@globex.example"),
            ("Initech", "pgibbons", "peter@initech.example"),
        ]
    ):
        created = await gql(
            CREATE, {"i": new_customer(n, companyName=company, username=username, email=email)}, token=token
        )
        assert created["customerCreate"]["errors"] == []
    # when
    data = (await gql(CUSTOMERS, {"f": {"search": search}}, token=token))["customers"]
    # then
    assert [e["node"]["name"] for e in data["edges"]] == expected
    assert data["totalCount"] == len(expected)


async def test_search_with_an_oversized_term_is_answered(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    data = await gql(CUSTOMERS, {"f": {"search": "y" * 50_000}}, token=token)
    # then
    assert data["customers"]["totalCount"] == 0


async def test_customer_and_node_return_a_visible_customer(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=2)
    token = await gql.login(tenant.owner.email)
    cid = gid("Customer", tenant.customers[1].id)
    # when
    by_field = await gql(CUSTOMER, {"id": cid}, token=token)
    by_node = await gql(NODE, {"id": cid}, token=token)
    # then
    assert by_field["customer"] == {"id": cid, "name": tenant.customers[1].name, "status": "ACTIVE"}
    assert by_node["node"] == {"__typename": "Customer", "id": cid, "name": tenant.customers[1].name}


@pytest.mark.parametrize(
    "customer_id",
    ["garbage!!", "", gid("Partner", 1), gid("Customer", 2**40), gid("Customer", -3), gid("Customer", 12345)],
    ids=["garbage", "empty", "partner-gid", "huge", "negative", "missing"],
)
async def test_customer_with_a_wrong_id_is_null(gql: GQL, factory: Factory, customer_id: str) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(CUSTOMER, {"id": customer_id}, token)
    # then
    assert response.status_code == 200
    assert response.json() == {"data": {"customer": None}}


@pytest.mark.parametrize(
    "node_id", [gid("Customer", 2**40), gid("Customer", 12345), gid("Customer", "abc")], ids=["huge", "missing", "nan"]
)
async def test_node_with_an_unknown_customer_id_is_null(gql: GQL, factory: Factory, node_id: str) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(NODE, {"id": node_id}, token)
    # then
    assert response.status_code == 200
    assert response.json() == {"data": {"node": None}}


@pytest.mark.parametrize(
    "node_id",
    ["!!!garbage", "", gid("NoSuchType", 1), gid("PageInfo", 1), gid("Customer", "")],
    ids=["garbage", "empty", "unknown-type", "not-a-node-type", "no-pk"],
)
async def test_node_with_a_malformed_id_is_null(gql: GQL, factory: Factory, node_id: str) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    # when
    response = await gql.raw(NODE, {"id": node_id}, token)
    # then
    assert response.status_code == 200
    assert response.json() == {"data": {"node": None}}
