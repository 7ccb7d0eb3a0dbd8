"""A customer's portal settings (seed 001): defaults, partial updates through `customerPortalSettingsUpdate` (the
portal switch going through the features rules), who may read and change them, and auto-invite: the customer's
admin is emailed once (real SMTP) when the customer is created with it, or its portal is switched on with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from domain import config as domain_config
from domain.accounts.models import Role
from domain.audit.models import AuditEvent
from domain.customers.models import Customer
from tests.conftest import GQL, PASSWORD, Factory, Tenant, gid
from tests.mailbox import Mailbox, run_jobs, smtp_server, text_of

PUBLIC_URL = "https://desk.platform.example"
PORTAL = (
    "query($id: ID!) { customer(id: $id) { portal { enabled autoInvite chatEnabled documentUpload caseVisibility } } }"
)
UPDATE = """mutation($i: CustomerPortalSettingsUpdateInput!) { customerPortalSettingsUpdate(input: $i) {
  portal { enabled autoInvite chatEnabled documentUpload caseVisibility } switchedOff errors { field code message } } }"""
CREATE = (
    """mutation($i: CustomerCreateInput!) { customerCreate(input: $i) { customer { id } errors { field code } } }"""
)
DISABLE = """mutation($i: CustomerDisableInput!) { customerDisable(input: $i) { errors { code } } }"""
DEFAULTS = {
    "enabled": True,
    "autoInvite": False,
    "chatEnabled": True,
    "documentUpload": True,
    "caseVisibility": "ALL",
}


@pytest.fixture(autouse=True)
def public_url() -> Iterator[str]:
    with domain_config.overridden(public_url=PUBLIC_URL):
        yield PUBLIC_URL


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    with smtp_server(tmp_path / "outbox") as box:
        yield box


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    return await factory.with_portal(await factory.tenant(customers=2))


async def update(gql: GQL, token: str, customer: Customer, **changes: Any) -> dict[str, Any]:
    return (await gql(UPDATE, {"i": {"customerId": gid("Customer", customer.id), **changes}}, token))[
        "customerPortalSettingsUpdate"
    ]


async def portal(gql: GQL, token: str, customer: Customer) -> dict[str, Any]:
    return (await gql(PORTAL, {"id": gid("Customer", customer.id)}, token))["customer"]["portal"]


def codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["errors"]]


async def test_defaults_and_partial_updates(gql: GQL, tenant: Tenant) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    assert await portal(gql, staff, customer) == DEFAULTS
    # when
    payload = await update(gql, staff, customer, chatEnabled=False, caseVisibility="ASSIGNED")
    # then
    expected = DEFAULTS | {"chatEnabled": False, "caseVisibility": "ASSIGNED"}
    assert payload == {"portal": expected, "switchedOff": [], "errors": []}
    assert await portal(gql, staff, customer) == expected
    assert await portal(gql, await gql.login(tenant.admins[0].email), customer) == expected  # the customer reads it
    assert await portal(gql, staff, tenant.customers[1]) == DEFAULTS
    [event] = await AuditEvent.filter(action="customer_portal.update")
    assert event.details["changes"] == {
        "chat_enabled": {"before": True, "after": False},
        "case_visibility": {"before": "ALL", "after": "ASSIGNED"},
    }
    # nulls and unknown values are refused whole
    refused = await update(gql, staff, customer, documentUpload=None, chatEnabled=True)
    assert codes(refused) == [("documentUpload", "INVALID")]
    assert (await portal(gql, staff, customer))["chatEnabled"] is False


async def test_the_portal_switch_goes_through_the_features_rules(gql: GQL, tenant: Tenant) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    # when: the portal goes off
    off = await update(gql, staff, customer, enabled=False)
    # then: its dependants follow, as customerFeaturesUpdate reports them
    assert off["portal"]["enabled"] is False and "teamMembersEnabled" in off["switchedOff"]
    features = await gql(
        "query($id: ID!) { customer(id: $id) { features { portalEnabled teamMembersEnabled } } }",
        {"id": gid("Customer", customer.id)},
        staff,
    )
    assert features["customer"]["features"] == {"portalEnabled": False, "teamMembersEnabled": False}
    # when: a disabled customer's portal is switched on
    await gql(DISABLE, {"i": {"customerId": gid("Customer", customer.id)}}, staff)
    on = await update(gql, staff, customer, enabled=True, chatEnabled=False)
    # then: refused whole, with the rule's code on this mutation's field
    assert codes(on) == [("enabled", "NOT_ELIGIBLE")] and on["portal"] is None
    assert await portal(gql, staff, customer) == DEFAULTS | {"enabled": False}


async def test_who_may_change_portal_settings(gql: GQL, factory: Factory, tenant: Tenant) -> None:
    # given
    customer = tenant.customers[0]
    partner_member = await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)
    outsider = (await factory.tenant(customers=0)).owner
    # when
    by_customer_admin = await update(gql, await gql.login(tenant.admins[0].email), customer, chatEnabled=False)
    by_partner_member = await update(gql, await gql.login(partner_member.email), customer, chatEnabled=False)
    by_outsider = await update(gql, await gql.login(outsider.email), customer, chatEnabled=False)
    read_by_outsider = await gql(PORTAL, {"id": gid("Customer", customer.id)}, await gql.login(outsider.email))
    # then
    assert codes(by_customer_admin) == [(None, "FORBIDDEN")]
    assert codes(by_partner_member) == [(None, "FORBIDDEN")]
    assert codes(by_outsider) == [("customerId", "NOT_FOUND")]
    assert read_by_outsider["customer"] is None
    assert await portal(gql, await gql.login(tenant.owner.email), customer) == DEFAULTS


def new_customer(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "username": f"client{n}",
        "firstName": "Ada",
        "lastName": "Client",
        "email": f"client{n}@example.com",
        "password": PASSWORD,
        "passwordConfirmation": PASSWORD,
        "companyName": f"Client {n}",
        **extra,
    }


async def test_a_customer_created_with_auto_invite_has_its_admin_invited_once(
    gql: GQL, app: Any, factory: Factory, tenant: Tenant, mailbox: Mailbox
) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    package = gid("Package", (await factory.package(tenant.partner, user_count=5)).id)
    # when: one customer with auto-invite, one without (both on a package with the portal, which turns it on)
    with_invite = await gql(CREATE, {"i": new_customer(1, autoInvite=True, packageId=package)}, staff)
    await gql(CREATE, {"i": new_customer(2, packageId=package)}, staff)
    await run_jobs(app)
    # then: only the first admin is emailed, under the partner's brand, with the username and the portal link
    assert [m["To"] for m in mailbox.messages] == ["client1@example.com"]
    message = mailbox.messages[0]
    assert message["Subject"] == f"{tenant.partner.name}: Your portal is ready"
    assert "client1" in text_of(message) and f"{PUBLIC_URL}/" in text_of(message)
    customer_id = with_invite["customerCreate"]["customer"]["id"]
    assert (await gql(PORTAL, {"id": customer_id}, staff))["customer"]["portal"]["autoInvite"] is True
    # when: the portal goes off and on again, and auto-invite is switched again
    customer = await Customer.get(name="Client 1")
    await update(gql, staff, customer, enabled=False)
    await update(gql, staff, customer, enabled=True, autoInvite=False)
    await update(gql, staff, customer, autoInvite=True)
    await run_jobs(app)
    # then: invited once only
    assert len(mailbox.messages) == 1


async def test_switching_the_portal_on_with_auto_invite_invites_the_admin(
    gql: GQL, app: Any, tenant: Tenant, mailbox: Mailbox
) -> None:
    # given: a customer whose portal is off
    staff = await gql.login(tenant.owner.email)
    customer, admin = tenant.customers[0], tenant.admins[0]
    await update(gql, staff, customer, enabled=False)
    # when: auto-invite goes on while the portal is off
    await update(gql, staff, customer, autoInvite=True)
    await run_jobs(app)
    # then: nothing yet
    assert mailbox.messages == []
    # when: the portal is switched on (through the features mutation, as a package assignment does)
    switched = await gql(
        """mutation($i: CustomerFeaturesUpdateInput!) { customerFeaturesUpdate(input: $i) { errors { code } } }""",
        {"i": {"customerId": gid("Customer", customer.id), "portalEnabled": True}},
        staff,
    )
    await run_jobs(app)
    # then
    assert switched["customerFeaturesUpdate"]["errors"] == []
    assert [m["To"] for m in mailbox.messages] == [admin.email]
