"""A customer's Features & Add-ons (seed 000): defaults, the rules `customerFeaturesUpdate` enforces (refused whole
with the rule's code and field; dependants switched off and listed), who may change them, the audit trail, access
revocation (API keys stop at once) and no N+1 when a page of customers shows them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain.accounts.models import Role
from domain.audit.models import AuditEvent
from domain.billing.models import BillingPreferences
from domain.customers.models import Customer, CustomerStatus
from domain.events import services as events
from domain.events.models import OutboxEvent
from domain.features.models import FeatureToggles
from domain.packages.models import FeatureKey
from tests.conftest import GQL, ROOT, Factory, Tenant, count_queries, gather, gid

FIELDS = """id portalEnabled advancedAnalytics detailedCallAnalysis actionPointAnalysis apiAccess apiKeysMenu
  aiCreditsEnabled lowCreditNotifications lowCreditThreshold showPricing portalSections embedUrlsEnabled
  teamMembersEnabled maxTeamMembers"""
FEATURES = f"query($id: ID!) {{ customer(id: $id) {{ features {{ {FIELDS} }} }} }}"
UPDATE = f"""mutation($i: CustomerFeaturesUpdateInput!) {{ customerFeaturesUpdate(input: $i) {{
  features {{ {FIELDS} }} switchedOff errors {{ field code message }} }} }}"""
NODE = "query($id: ID!) { node(id: $id) { __typename ... on FeatureToggles { id apiAccess } } }"
KEY_CREATE = """mutation($i: ApiKeyCreateInput!) { apiKeyCreate(input: $i) { secret errors { field code } } }"""
CUSTOMER_NAME = "query($id: ID!) { customer(id: $id) { id name } }"
PAGE = f"query {{ customers(first: 100) {{ nodes {{ name features {{ {FIELDS} addOns }} }} }} }}"

# the stored toggles the tests start from (the old defaults: portal and team members on, 5 seats)
BASELINE = {"portal_enabled": True, "team_members_enabled": True, "max_team_members": 5}
DEFAULTS = {
    "portalEnabled": True,
    "advancedAnalytics": False,
    "detailedCallAnalysis": False,
    "actionPointAnalysis": False,
    "apiAccess": False,
    "apiKeysMenu": False,
    "aiCreditsEnabled": False,
    "lowCreditNotifications": False,
    "lowCreditThreshold": None,
    "showPricing": True,
    "portalSections": [],
    "embedUrlsEnabled": False,
    "teamMembersEnabled": True,
    "maxTeamMembers": 5,
}


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    """Two customers with every package feature in force and the toggles a configured customer starts from."""
    tenant = await factory.tenant(customers=2)
    for customer in tenant.customers:
        await factory.entitle(customer)
        await FeatureToggles.create(customer_id=customer.id, **BASELINE)
    return tenant


@pytest.fixture
async def staff(gql: GQL, tenant: Tenant) -> str:
    """The partner admin's session token."""
    return await gql.login(tenant.owner.email)


async def update(gql: GQL, token: str, customer: Customer, **changes: Any) -> dict[str, Any]:
    data = await gql(UPDATE, {"i": {"customerId": gid("Customer", customer.id), **changes}}, token)
    return data["customerFeaturesUpdate"]


async def applied(gql: GQL, token: str, customer: Customer, **changes: Any) -> dict[str, Any]:
    payload = await update(gql, token, customer, **changes)
    assert payload["errors"] == [], payload
    return payload


async def features(gql: GQL, token: str, customer: Customer) -> dict[str, Any]:
    return (await gql(FEATURES, {"id": gid("Customer", customer.id)}, token))["customer"]["features"]


def errors(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["errors"]]


def without_id(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "id"}


# --- reading -------------------------------------------------------------------------------------------------------


async def test_defaults_are_readable_before_anything_is_stored(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: a customer nobody configured (no package either)
    customer, admin = await factory.customer(tenant.partner)
    assert not await FeatureToggles.filter(customer_id=customer.id).exists()
    # when
    state = await features(gql, staff, customer)
    own = await features(gql, await gql.login(admin.email), customer)
    # then: nothing a package gives, the first admin's seat, pricing shown
    assert without_id(state) == DEFAULTS | {"portalEnabled": False, "teamMembersEnabled": False, "maxTeamMembers": 1}
    assert own == state
    node = (await gql(NODE, {"id": state["id"]}, staff))["node"]
    assert node == {"__typename": "FeatureToggles", "id": state["id"], "apiAccess": False}
    # a node id of another tenant's customer is null, like one that never existed
    outsider = await gql.login((await factory.tenant(customers=0)).owner.email)
    assert (await gql(NODE, {"id": state["id"]}, outsider))["node"] is None


# --- accepted changes ----------------------------------------------------------------------------------------------


async def test_only_sent_fields_change_and_are_stored(gql: GQL, tenant: Tenant, staff: str) -> None:
    # given
    customer = tenant.customers[0]
    # when
    payload = await applied(
        gql,
        staff,
        customer,
        advancedAnalytics=True,
        apiAccess=True,
        apiKeysMenu=True,
        portalSections=["API_KEYS", "KNOWLEDGE_BASE", "KNOWLEDGE_BASE"],
        maxTeamMembers=12,
        lowCreditThreshold="250.5",
    )
    # then
    expected = DEFAULTS | {
        "advancedAnalytics": True,
        "apiAccess": True,
        "apiKeysMenu": True,
        "portalSections": ["KNOWLEDGE_BASE", "API_KEYS"],
        "maxTeamMembers": 12,
        "lowCreditThreshold": "250.500000",
    }
    assert payload["switchedOff"] == []
    assert without_id(payload["features"]) == expected
    assert without_id(await features(gql, staff, customer)) == expected
    row = await FeatureToggles.get(customer_id=customer.id)
    assert row.api_access and row.portal_sections == ["KNOWLEDGE_BASE", "API_KEYS"]
    # the threshold lives with the billing preferences, which the credit meter and the alert read
    assert (await BillingPreferences.get(customer_id=customer.id)).low_credit_threshold == Decimal("250.5")
    # the other customer is untouched
    assert without_id(await features(gql, staff, tenant.customers[1])) == DEFAULTS


async def test_portal_off_switches_off_embeds_team_members_and_sections(gql: GQL, tenant: Tenant, staff: str) -> None:
    # given
    customer = tenant.customers[0]
    await applied(gql, staff, customer, apiAccess=True, embedUrlsEnabled=True, portalSections=["PHONE_NUMBERS"])
    # when
    payload = await applied(gql, staff, customer, portalEnabled=False)
    # then
    assert payload["switchedOff"] == ["embedUrlsEnabled", "teamMembersEnabled", "portalSections"]
    state = payload["features"]
    assert state["portalEnabled"] is False and state["embedUrlsEnabled"] is False
    assert state["teamMembersEnabled"] is False and state["portalSections"] == []
    assert state["apiAccess"] is True  # API access does not live in the portal
    assert await features(gql, staff, customer) == state


async def test_api_access_off_switches_off_the_menu_and_the_section(gql: GQL, tenant: Tenant, staff: str) -> None:
    # given
    customer = tenant.customers[0]
    await applied(gql, staff, customer, apiAccess=True, apiKeysMenu=True, portalSections=["API_KEYS", "INTEGRATION"])
    # when
    payload = await applied(gql, staff, customer, apiAccess=False)
    # then
    assert payload["switchedOff"] == ["apiKeysMenu", "portalSections"]
    assert payload["features"]["apiKeysMenu"] is False
    assert payload["features"]["portalSections"] == ["INTEGRATION"]


async def test_ai_credits_hide_pricing_and_their_notifications_follow_them(
    gql: GQL, tenant: Tenant, staff: str
) -> None:
    # given
    customer = tenant.customers[0]
    # when: credits go on (the existing `set_ai_credits` rule hides pricing; the package includes AI_CREDITS)
    on = await applied(gql, staff, customer, aiCreditsEnabled=True, lowCreditNotifications=True)
    # then
    assert on["switchedOff"] == ["showPricing"]
    assert on["features"]["showPricing"] is False and on["features"]["lowCreditNotifications"] is True
    # when: credits go off, their notifications go with them
    off = await applied(gql, staff, customer, aiCreditsEnabled=False)
    # then
    assert off["switchedOff"] == ["lowCreditNotifications"]
    assert off["features"]["aiCreditsEnabled"] is False and off["features"]["lowCreditNotifications"] is False
    # and pricing can be shown again
    assert (await applied(gql, staff, customer, showPricing=True))["features"]["showPricing"] is True


async def test_switching_off_what_is_asked_for_is_not_reported_as_a_cascade(
    gql: GQL, tenant: Tenant, staff: str
) -> None:
    customer = tenant.customers[0]
    await applied(gql, staff, customer, embedUrlsEnabled=True)
    payload = await applied(gql, staff, customer, portalEnabled=False, embedUrlsEnabled=False)
    assert payload["switchedOff"] == ["teamMembersEnabled"]


async def test_unchanged_input_writes_no_event(gql: GQL, tenant: Tenant, staff: str) -> None:
    customer = tenant.customers[0]
    payload = await applied(gql, staff, customer, portalEnabled=True, maxTeamMembers=5, lowCreditThreshold=None)
    assert without_id(payload["features"]) == DEFAULTS
    assert await AuditEvent.filter(action="customer_features.update").count() == 0


# --- refused changes -----------------------------------------------------------------------------------------------

REFUSALS = [
    pytest.param({"apiKeysMenu": True}, [("apiKeysMenu", "REQUIRES_FEATURE")], id="menu-needs-api-access"),
    pytest.param({"portalSections": ["API_KEYS"]}, [("portalSections", "REQUIRES_FEATURE")], id="section-needs-api"),
    pytest.param(
        {"portalEnabled": False, "embedUrlsEnabled": True},
        [("embedUrlsEnabled", "REQUIRES_FEATURE")],
        id="embeds-need-portal",
    ),
    pytest.param(
        {"portalEnabled": False, "teamMembersEnabled": True},
        [("teamMembersEnabled", "REQUIRES_FEATURE")],
        id="team-needs-portal",
    ),
    pytest.param(
        {"portalEnabled": False, "portalSections": ["KNOWLEDGE_BASE"]},
        [("portalSections", "REQUIRES_FEATURE")],
        id="sections-need-portal",
    ),
    pytest.param(
        {"lowCreditNotifications": True}, [("lowCreditNotifications", "REQUIRES_FEATURE")], id="alerts-need-credits"
    ),
    pytest.param(
        {"aiCreditsEnabled": True, "showPricing": True}, [("showPricing", "INVALID")], id="pricing-hidden-by-credits"
    ),
    pytest.param({"lowCreditThreshold": "-1"}, [("lowCreditThreshold", "INVALID")], id="negative-threshold"),
    pytest.param({"lowCreditThreshold": "0.0000001"}, [("lowCreditThreshold", "INVALID")], id="threshold-places"),
    pytest.param({"maxTeamMembers": -1}, [("maxTeamMembers", "INVALID")], id="negative-limit"),
    pytest.param({"advancedAnalytics": None}, [("advancedAnalytics", "INVALID")], id="null-switch"),
    pytest.param({"portalSections": None}, [("portalSections", "INVALID")], id="null-sections"),
    pytest.param(
        {"apiKeysMenu": True, "advancedAnalytics": True, "embedUrlsEnabled": True, "portalEnabled": False},
        [("apiKeysMenu", "REQUIRES_FEATURE"), ("embedUrlsEnabled", "REQUIRES_FEATURE")],
        id="all-refusals-at-once",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), REFUSALS)
async def test_a_forbidden_change_is_refused_whole(
    gql: GQL, tenant: Tenant, staff: str, changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    # given
    customer = tenant.customers[0]
    # when: the forbidden part travels with an innocent one, which must not be kept either
    payload = await update(gql, staff, customer, detailedCallAnalysis=True, **changes)
    # then
    assert errors(payload) == expected
    assert all(e["message"] for e in payload["errors"])
    assert payload["features"] is None and payload["switchedOff"] == []
    assert without_id(await features(gql, staff, customer)) == DEFAULTS
    assert not await FeatureToggles.filter(customer_id=customer.id, detailed_call_analysis=True).exists()
    assert await AuditEvent.filter(action="customer_features.update").count() == 0


async def test_turning_credits_on_is_rolled_back_with_a_refused_request(gql: GQL, tenant: Tenant, staff: str) -> None:
    customer = tenant.customers[0]
    payload = await update(gql, staff, customer, aiCreditsEnabled=True, apiKeysMenu=True)
    assert errors(payload) == [("apiKeysMenu", "REQUIRES_FEATURE")]
    row = await FeatureToggles.get_or_none(customer_id=customer.id)
    assert row is None or (not row.ai_credits_enabled and row.show_pricing)


async def test_team_limit_cannot_drop_below_the_current_team(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: the admin and two members
    customer = tenant.customers[0]
    for _ in range(2):
        await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    # when / then
    assert errors(await update(gql, staff, customer, maxTeamMembers=2)) == [("maxTeamMembers", "INVALID")]
    assert (await applied(gql, staff, customer, maxTeamMembers=3))["features"]["maxTeamMembers"] == 3
    assert (await applied(gql, staff, customer, maxTeamMembers=40))["features"]["maxTeamMembers"] == 40


async def test_a_disabled_customer_is_not_eligible_for_the_portal(gql: GQL, tenant: Tenant, staff: str) -> None:
    # given
    customer = tenant.customers[0]
    await applied(gql, staff, customer, portalEnabled=False)
    await Customer.filter(id=customer.id).update(status=CustomerStatus.DISABLED)
    # when
    refused = await update(gql, staff, customer, portalEnabled=True)
    # then: refused with the reason; other features of a disabled customer can still be edited
    assert errors(refused) == [("portalEnabled", "NOT_ELIGIBLE")]
    assert "disabled" in refused["errors"][0]["message"]
    assert errors(await update(gql, staff, customer, aiCreditsEnabled=True)) == [("aiCreditsEnabled", "NOT_ELIGIBLE")]
    assert (await applied(gql, staff, customer, portalEnabled=False, advancedAnalytics=True))["switchedOff"] == []


@pytest.mark.postgres
async def test_concurrent_changes_never_leave_a_dependant_without_what_it_needs(
    gql: GQL, tenant: Tenant, staff: str
) -> None:
    # given: each round, one request switches API access off while another asks for the menu that needs it
    customer = tenant.customers[0]
    for _ in range(8):
        await applied(gql, staff, customer, apiAccess=True, apiKeysMenu=False)
        # when
        off, menu = await gather(
            update(gql, staff, customer, apiAccess=False), update(gql, staff, customer, apiKeysMenu=True)
        )
        # then: the row lock serialises them; whichever ran second saw the other's outcome
        row = await FeatureToggles.get(customer_id=customer.id)
        assert off["errors"] == [] and not row.api_access and not row.api_keys_menu
        assert errors(menu) in ([], [("apiKeysMenu", "REQUIRES_FEATURE")])
        assert (off["switchedOff"] == ["apiKeysMenu"]) == (menu["errors"] == [])


# --- who may -------------------------------------------------------------------------------------------------------


async def test_partner_admins_and_platform_admins_may_others_may_not(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given
    customer = tenant.customers[0]
    member = await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)
    colleague = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    platform = await gql.login((await factory.admin()).email)
    other = await factory.tenant(customers=1)
    # then: partner admins and platform admins may
    assert (await applied(gql, staff, customer, advancedAnalytics=True))["features"]["advancedAnalytics"]
    assert (await applied(gql, platform, customer, advancedAnalytics=False))["features"]["advancedAnalytics"] is False
    # partner members, the customer's own admin and members may not
    for token in (
        await gql.login(member.email),
        await gql.login(tenant.admins[0].email),
        await gql.login(colleague.email),
    ):
        refused = await update(gql, token, customer, advancedAnalytics=True)
        assert [e["code"] for e in refused["errors"]] == ["FORBIDDEN"] and refused["features"] is None
    # another partner's customer, a sibling customer and a malformed id do not exist for them
    sibling_admin = await gql.login(tenant.admins[1].email)
    for token, target in ((staff, other.customers[0]), (sibling_admin, customer)):
        assert errors(await update(gql, token, target, advancedAnalytics=True)) == [("customerId", "NOT_FOUND")]
    bad = await gql(UPDATE, {"i": {"customerId": "nope", "apiAccess": True}}, staff)
    assert errors(bad["customerFeaturesUpdate"]) == [("customerId", "NOT_FOUND")]
    assert not await FeatureToggles.filter(advanced_analytics=True).exists()
    # anonymous callers are refused
    anonymous = await gql(UPDATE, {"i": {"customerId": gid("Customer", customer.id), "apiAccess": True}})
    assert [e["code"] for e in anonymous["customerFeaturesUpdate"]["errors"]] in (["FORBIDDEN"], ["NOT_FOUND"])


# --- audit, revocation ---------------------------------------------------------------------------------------------


async def test_changes_are_audited_with_before_and_after(gql: GQL, tenant: Tenant, staff: str) -> None:
    # given
    customer = tenant.customers[0]
    await applied(gql, staff, customer, embedUrlsEnabled=True)
    # when
    await applied(gql, staff, customer, portalEnabled=False, lowCreditThreshold="10")
    # then
    first, second = await AuditEvent.filter(action="customer_features.update").order_by("id")
    assert first.details["changes"] == {"embed_urls_enabled": {"before": False, "after": True}}
    assert second.customer_id == customer.id and second.partner_id == tenant.partner.id
    assert second.object_type == "Customer" and second.object_id == str(customer.id)
    assert second.actor_user_id == tenant.owner.id
    assert second.details["changes"] == {
        "portal_enabled": {"before": True, "after": False},
        "embed_urls_enabled": {"before": True, "after": False},
        "team_members_enabled": {"before": True, "after": False},
        "low_credit_threshold": {"before": None, "after": "10.000000"},
    }
    assert second.details["switched_off"] == ["embed_urls_enabled", "team_members_enabled"]


async def test_switching_access_off_tells_live_connections(gql: GQL, tenant: Tenant, staff: str) -> None:
    customer = tenant.customers[0]

    async def revocations() -> int:
        return await OutboxEvent.filter(topic=events.ACCESS_REVOKED, customer_id=customer.id).count()

    await applied(gql, staff, customer, apiAccess=True, embedUrlsEnabled=True, advancedAnalytics=True)
    assert await revocations() == 0  # switching on revokes nothing
    await applied(gql, staff, customer, advancedAnalytics=False)
    assert await revocations() == 0
    await applied(gql, staff, customer, apiAccess=False)
    assert await revocations() == 1
    await applied(gql, staff, customer, portalEnabled=False)  # the portal and, with it, embeds
    assert await revocations() == 2
    event = await OutboxEvent.filter(topic=events.ACCESS_REVOKED).order_by("-id").first()
    assert event is not None and event.partner_id == tenant.partner.id
    # a refused request emits nothing
    await update(gql, staff, customer, apiAccess=False, apiKeysMenu=True)
    assert await revocations() == 2


async def test_api_access_off_stops_existing_keys(gql: GQL, tenant: Tenant, staff: str) -> None:
    # given: API access switched on through the mutation, and a key issued
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    refused = await gql(KEY_CREATE, {"i": {"customerId": cid, "name": "crm", "permissions": ["READ"]}}, staff)
    assert errors(refused["apiKeyCreate"]) == [("customerId", "REQUIRES_FEATURE")]
    await applied(gql, staff, customer, apiAccess=True)
    issued = await gql(KEY_CREATE, {"i": {"customerId": cid, "name": "crm", "permissions": ["READ"]}}, staff)
    secret = issued["apiKeyCreate"]["secret"]
    assert (await gql.raw(CUSTOMER_NAME, {"id": cid}, secret)).status_code == 200
    # when
    await applied(gql, staff, customer, apiAccess=False)
    # then
    response = await gql.raw(CUSTOMER_NAME, {"id": cid}, secret)
    assert response.status_code == 401
    # and switching it back on revives the (unrevoked) key
    await applied(gql, staff, customer, apiAccess=True)
    assert (await gql.raw(CUSTOMER_NAME, {"id": cid}, secret)).status_code == 200


async def test_api_keys_cannot_change_features(gql: GQL, tenant: Tenant, staff: str) -> None:
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    await applied(gql, staff, customer, apiAccess=True)
    issued = await gql(KEY_CREATE, {"i": {"customerId": cid, "name": "ops", "permissions": ["ADMIN"]}}, staff)
    key = issued["apiKeyCreate"]["secret"]
    refused = await update(gql, key, customer, apiAccess=False)
    assert [e["code"] for e in refused["errors"]] == ["FORBIDDEN"]
    assert (await features(gql, staff, customer))["apiAccess"] is True


# --- no N+1 --------------------------------------------------------------------------------------------------------


async def test_features_on_a_customer_page_cost_the_same_for_3_and_30(gql: GQL, factory: Factory) -> None:
    # given: half the customers configured (stored rows), half on defaults; some with a package in force
    tenant = await factory.tenant(customers=3)
    await factory.entitle(tenant.customers[0])
    token = await gql.login(tenant.owner.email)

    async def measure() -> tuple[int, list[dict[str, Any]]]:
        with count_queries() as counter:
            nodes = (await gql(PAGE, None, token))["customers"]["nodes"]
        return len(counter.queries), nodes

    await applied(gql, token, tenant.customers[0], apiAccess=True, lowCreditThreshold="5")
    small, small_nodes = await measure()
    for n in range(27):
        customer, _ = await factory.customer(tenant.partner)
        if n % 2:
            await applied(gql, token, customer, advancedAnalytics=True, lowCreditThreshold="7")
        if n % 3 == 0:
            await factory.entitle(customer, [FeatureKey.CUSTOMER_PORTAL, FeatureKey.ADVANCED_ANALYTICS])
    # when
    large, large_nodes = await measure()
    # then
    assert len(small_nodes) == 3 and len(large_nodes) == 30
    assert sum(n["features"]["advancedAnalytics"] for n in large_nodes) == 13
    # an add-on is one only beyond the package in force (n = 1, 3, 5 … have it; n = 3, 9, … 21 in their package)
    assert sum(n["features"]["addOns"] == ["ADVANCED_ANALYTICS"] for n in large_nodes) == 13 - 4
    assert large_nodes[0]["features"]["apiAccess"] is True
    assert large_nodes[0]["features"]["lowCreditThreshold"] == "5.000000"
    print(f"\nSQL statements for customers with features: 3 → {small}, 30 → {large}")
    assert small == large


# --- upgrading -----------------------------------------------------------------------------------------------------


def test_customers_from_before_packages_keep_the_toggles_they_had(tmp_path: Path) -> None:
    # given: a database at the migration before issue 15, with a customer that never stored toggles
    url = f"sqlite://{tmp_path / 'upgrade.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url}
    cli = [sys.executable, "-c", "import sys; from tortoise.cli import main; sys.exit(main())"]
    subprocess.run([*cli, "migrate", "models", "0011_wide_money"], cwd=ROOT, env=env, check=True, capture_output=True)
    with sqlite3.connect(tmp_path / "upgrade.sqlite3") as db:
        db.execute(
            "INSERT INTO partner (name, status, primary_color, secondary_color, created_at, updated_at)"
            " VALUES ('P', 'ACTIVE', '#000000', '#FFFFFF', datetime('now'), datetime('now'))"
        )
        db.execute(
            "INSERT INTO customer (partner_id, name, status, service_state, phone, country, state, city, zip,"
            " address1, address2, created_at, updated_at)"
            " VALUES (1, 'Old', 'ACTIVE', 'ACTIVE', '', '', '', '', '', '', '', datetime('now'), datetime('now'))"
        )
    # when: upgraded
    subprocess.run([*cli, "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    # then: it reads what it read before (portal and team members on, 5 seats, pricing shown)
    with sqlite3.connect(tmp_path / "upgrade.sqlite3") as db:
        row = db.execute(
            "SELECT portal_enabled, team_members_enabled, max_team_members, show_pricing, api_access, portal_sections"
            " FROM feature_toggles WHERE customer_id = 1"
        ).fetchone()
    assert row == (1, 1, 5, 1, 0, "[]")
