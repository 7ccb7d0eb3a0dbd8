"""Packages decide eligibility (issue 15, items 1-3; seeds 000, 004): the package in force gates the portal, AI
credits, team members, embeds and the knowledge base (NOT_ELIGIBLE naming what is missing, with and without a
package); add-ons may go beyond it and are listed; `userCount` becomes the seat limit; the limits reach the API
keys; an assignment's `given` is the snapshot of the version assigned, and eligibility follows that snapshot."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain.access.models import ApiKey, ApiTier
from domain.accounts.models import Role
from domain.customers.models import Customer
from domain.features.models import FeatureToggles
from domain.packages.models import FeatureKey
from tests.conftest import GQL, Factory, Tenant, gid

FEATURES = """query($id: ID!) { customer(id: $id) { package { id } features {
  portalEnabled aiCreditsEnabled teamMembersEnabled embedUrlsEnabled portalSections maxTeamMembers
  advancedAnalytics detailedCallAnalysis apiAccess addOns } } }"""
UPDATE = """mutation($i: CustomerFeaturesUpdateInput!) { customerFeaturesUpdate(input: $i) {
  features { portalEnabled addOns } errors { field code message } } }"""
CREATE = """mutation($i: PackageCreateInput!) { packageCreate(input: $i) { package { id } errors { field code } } }"""
EDIT = """mutation($i: PackageUpdateInput!) { packageUpdate(input: $i) { package { version } errors { code } } }"""
ASSIGN = """mutation($i: PackageAssignInput!) { packageAssign(input: $i) {
  assignment { id version given { title description features userCount aiCredits
    limits { storageMb apiRateTier monthlySpendingCap { amount } } } }
  errors { field code message } } }"""
KEY = """mutation($i: ApiKeyCreateInput!) { apiKeyCreate(input: $i) {
  apiKey { tier } secret errors { field code message } } }"""
CREATE_ORG = """mutation($i: OrganizationCreateInput!) { organizationCreate(input: $i) {
  organization { id } errors { code } } }"""


def key() -> str:
    return uuid.uuid4().hex


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    return await factory.tenant(customers=2)


@pytest.fixture
async def staff(gql: GQL, tenant: Tenant) -> str:
    return await gql.login(tenant.owner.email)


async def create(gql: GQL, token: str, title: str, features: list[str], **extra: Any) -> str:
    payload = (await gql(CREATE, {"i": {"title": title, "features": features, **extra}}, token))["packageCreate"]
    assert payload["errors"] == [], payload
    return str(payload["package"]["id"])


async def assign(gql: GQL, token: str, customer: Customer, package_id: str) -> dict[str, Any]:
    variables = {"i": {"customerId": gid("Customer", customer.id), "packageId": package_id, "idempotencyKey": key()}}
    return (await gql(ASSIGN, variables, token))["packageAssign"]


async def update(gql: GQL, token: str, customer: Customer, **changes: Any) -> dict[str, Any]:
    variables = {"i": {"customerId": gid("Customer", customer.id), **changes}}
    return (await gql(UPDATE, variables, token))["customerFeaturesUpdate"]


async def features(gql: GQL, token: str, customer: Customer) -> dict[str, Any]:
    return (await gql(FEATURES, {"id": gid("Customer", customer.id)}, token))["customer"]


def refusal(payload: dict[str, Any], field: str) -> str:
    """The NOT_ELIGIBLE message on `field` (fails when there is none)."""
    found = [e["message"] for e in payload["errors"] if e["field"] == field and e["code"] == "NOT_ELIGIBLE"]
    assert found, payload
    return found[0]


GATED = [
    pytest.param({"portalEnabled": True}, "portalEnabled", "the customer portal (CUSTOMER_PORTAL)", id="portal"),
    pytest.param({"aiCreditsEnabled": True}, "aiCreditsEnabled", "AI credits (AI_CREDITS)", id="ai-credits"),
    pytest.param(
        {"portalEnabled": True, "teamMembersEnabled": True},
        "teamMembersEnabled",
        "team members (TEAM_MEMBERS)",
        id="team-members",
    ),
    pytest.param(
        {"portalEnabled": True, "embedUrlsEnabled": True}, "embedUrlsEnabled", "embed URLs (EMBEDS)", id="embeds"
    ),
    pytest.param(
        {"portalEnabled": True, "portalSections": ["KNOWLEDGE_BASE"]},
        "portalSections",
        "the knowledge base (KNOWLEDGE_BASE)",
        id="knowledge-base",
    ),
]


@pytest.mark.parametrize(("changes", "field", "named"), GATED)
async def test_without_a_package_no_gated_feature_can_be_switched_on(
    gql: GQL, tenant: Tenant, staff: str, changes: dict[str, Any], field: str, named: str
) -> None:
    # given: a customer created without a package
    customer = tenant.customers[0]
    # when
    payload = await update(gql, staff, customer, **changes)
    # then: refused whole, the message naming what is missing
    assert refusal(payload, field) == f"The customer has no package: assign one that includes {named}."
    assert payload["features"] is None
    assert not await FeatureToggles.filter(customer_id=customer.id).exists()


@pytest.mark.parametrize(("changes", "field", "named"), GATED)
async def test_the_package_in_force_decides_each_gated_feature(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str, changes: dict[str, Any], field: str, named: str
) -> None:
    # given: a Starter package with the portal only, and a Premium package with everything
    starter, premium = tenant.customers
    await factory.give(starter, await factory.package(tenant.partner, [FeatureKey.CUSTOMER_PORTAL], title="Starter"))
    await factory.give(premium, await factory.package(tenant.partner, title="Premium"))
    await update(gql, staff, premium, **{field: False} if field != "portalSections" else {"portalSections": []})
    # when / then: the Starter customer is refused what its package lacks
    if field == "portalEnabled":
        await update(gql, staff, starter, portalEnabled=False)
        assert (await update(gql, staff, starter, **changes))["errors"] == []  # its package includes the portal
    else:
        refused = await update(gql, staff, starter, **changes)
        assert refusal(refused, field) == f"The Starter package does not include {named}."
    # and the Premium customer gets it
    accepted = await update(gql, staff, premium, **changes)
    assert accepted["errors"] == [], accepted


async def test_add_ons_may_go_beyond_the_package_and_are_listed(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: no package at all
    customer = tenant.customers[0]
    # when: add-ons are switched on
    payload = await update(gql, staff, customer, apiAccess=True, advancedAnalytics=True)
    # then: allowed and listed as beyond the package
    assert payload["errors"] == [] and payload["features"]["addOns"] == ["ADVANCED_ANALYTICS", "API_ACCESS"]
    # when: a package including advanced analytics is assigned
    package = await factory.package(tenant.partner, [FeatureKey.CUSTOMER_PORTAL, FeatureKey.ADVANCED_ANALYTICS])
    await factory.give(customer, package)
    # then: only API access is still beyond it, and both stay on
    state = (await features(gql, staff, customer))["features"]
    assert state["addOns"] == ["API_ACCESS"] and state["apiAccess"] and state["advancedAnalytics"]
    # the customer's own admin reads the same
    own = await gql.login(tenant.admins[0].email)
    assert (await features(gql, own, customer))["features"]["addOns"] == ["API_ACCESS"]


async def test_a_new_package_drops_what_only_the_old_one_gave_and_keeps_add_ons(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: detailed call analysis and the portal from package one, advanced analytics as an add-on
    customer = tenant.customers[0]
    one = await factory.package(tenant.partner, [FeatureKey.CUSTOMER_PORTAL, FeatureKey.DETAILED_CALL_ANALYSIS])
    await factory.give(customer, one)
    assert (await update(gql, staff, customer, advancedAnalytics=True))["errors"] == []
    # when: package two has neither
    await factory.give(customer, await factory.package(tenant.partner, [FeatureKey.AI_CREDITS], title="Two"))
    # then
    state = (await features(gql, staff, customer))["features"]
    assert state["detailedCallAnalysis"] is False and state["portalEnabled"] is False
    assert state["advancedAnalytics"] is True and state["addOns"] == ["ADVANCED_ANALYTICS"]
    assert state["aiCreditsEnabled"] is True


async def test_organization_create_gives_a_customer_without_a_package_and_nothing_billable(
    gql: GQL, tenant: Tenant, staff: str
) -> None:
    # given: a customer admin creates a second organization under the same partner
    token = await gql.login(tenant.admins[0].email)
    created = (await gql(CREATE_ORG, {"i": {"name": "Side Business"}}, token))["organizationCreate"]
    assert created["errors"] == []
    customer = await Customer.get(name="Side Business")
    # then: no package, nothing a package gives
    state = await features(gql, staff, customer)
    assert state["package"] is None
    gated = ("portalEnabled", "aiCreditsEnabled", "teamMembersEnabled", "embedUrlsEnabled")
    assert not any(state["features"][name] for name in gated)
    assert state["features"]["portalSections"] == [] and state["features"]["maxTeamMembers"] == 1
    # and its partner cannot switch the portal on until it assigns a package
    assert "no package" in refusal(await update(gql, staff, customer, portalEnabled=True), "portalEnabled")


async def test_user_count_becomes_the_seat_limit_and_never_below_the_team(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: the admin and three members
    customer = tenant.customers[0]
    for _ in range(3):
        await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    small = await create(gql, staff, "Small team", ["CUSTOMER_PORTAL", "TEAM_MEMBERS"], userCount=3)
    fits = await create(gql, staff, "Team of four", ["CUSTOMER_PORTAL", "TEAM_MEMBERS"], userCount=4)
    # when / then: a user count below the team refuses the assignment, naming it
    refused = await assign(gql, staff, customer, small)
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("packageId", "INVALID")]
    assert refused["errors"][0]["message"].startswith("userCount:")
    assert (await features(gql, staff, customer))["package"] is None
    # and one that fits sets the seat limit
    assert (await assign(gql, staff, customer, fits))["errors"] == []
    state = (await features(gql, staff, customer))["features"]
    assert state["maxTeamMembers"] == 4 and state["teamMembersEnabled"] is True


async def test_the_api_rate_tier_reaches_the_customers_keys(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: a key issued before any package, at the default tier
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    assert (await update(gql, staff, customer, apiAccess=True))["errors"] == []
    before = (await gql(KEY, {"i": {"customerId": cid, "name": "crm", "permissions": ["READ"]}}, staff))["apiKeyCreate"]
    assert before["apiKey"]["tier"] == "STANDARD"
    # when: a package with the PREMIUM tier is assigned
    premium = await create(gql, staff, "Premium API", ["API_ACCESS"], limits={"apiRateTier": "PREMIUM"})
    assert (await assign(gql, staff, customer, premium))["errors"] == []
    # then: the existing key is PREMIUM, a new key gets PREMIUM by default, and ENTERPRISE is beyond the package
    assert {k.tier for k in await ApiKey.filter(customer_id=customer.id)} == {ApiTier.PREMIUM}
    issued = (await gql(KEY, {"i": {"customerId": cid, "name": "bi", "permissions": ["READ"]}}, staff))["apiKeyCreate"]
    assert issued["apiKey"]["tier"] == "PREMIUM"
    beyond = {"customerId": cid, "name": "x", "permissions": ["READ"], "tier": "ENTERPRISE", "rateLimitPerMinute": 9}
    refused = (await gql(KEY, {"i": beyond}, staff))["apiKeyCreate"]
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("tier", "NOT_ELIGIBLE")]
    below = {"customerId": cid, "name": "y", "permissions": ["READ"], "tier": "STANDARD"}
    assert (await gql(KEY, {"i": below}, staff))["apiKeyCreate"]["apiKey"]["tier"] == "STANDARD"


async def test_given_is_the_snapshot_and_eligibility_follows_it(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: a package assigned at version 1
    first, second = tenant.customers
    package = await create(
        gql,
        staff,
        "Growth",
        ["CUSTOMER_PORTAL", "ADVANCED_ANALYTICS"],
        description="Portal and analytics",
        userCount=7,
        limits={"apiRateTier": "PREMIUM", "monthlySpendingCap": "300.00"},
    )
    given_first = (await assign(gql, staff, first, package))["assignment"]["given"]
    # when: the package is edited (no portal any more, other terms)
    edit = {"packageId": package, "title": "Growth 2", "features": ["ADVANCED_ANALYTICS"], "userCount": 9}
    assert (await gql(EDIT, {"i": edit}, staff))["packageUpdate"]["package"]["version"] == 2
    given_second = (await assign(gql, staff, second, package))["assignment"]["given"]
    # then: the first assignment still shows (and the first customer still has) what version 1 gave
    expected_first = {
        "title": "Growth",
        "description": "Portal and analytics",
        "features": ["CUSTOMER_PORTAL", "ADVANCED_ANALYTICS"],
        "userCount": 7,
        "aiCredits": "0",
        "limits": {"storageMb": 0, "apiRateTier": "PREMIUM", "monthlySpendingCap": {"amount": "300.00"}},
    }
    given_first["aiCredits"] = str(int(float(given_first["aiCredits"])))
    assert given_first == expected_first
    shown = await gql(
        "query($id: ID!) { customer(id: $id) { package { version given { title features userCount } } } }",
        {"id": gid("Customer", first.id)},
        staff,
    )
    assert shown["customer"]["package"] == {
        "version": 1,
        "given": {"title": "Growth", "features": ["CUSTOMER_PORTAL", "ADVANCED_ANALYTICS"], "userCount": 7},
    }
    assert given_second["title"] == "Growth 2" and given_second["features"] == ["ADVANCED_ANALYTICS"]
    # eligibility follows each customer's snapshot: the first may have the portal, the second may not
    assert (await update(gql, staff, first, portalEnabled=False))["errors"] == []
    assert (await update(gql, staff, first, portalEnabled=True))["errors"] == []
    assert "Growth 2 package" in refusal(await update(gql, staff, second, portalEnabled=True), "portalEnabled")


async def test_eligibility_is_private_to_each_tenant(gql: GQL, factory: Factory, tenant: Tenant, staff: str) -> None:
    # given: a package in force for one customer of another partner, and one for our first customer
    other = await factory.tenant(customers=1)
    theirs = await factory.give(other.customers[0], await factory.package(other.partner, title="Theirs"))
    ours = await factory.give(tenant.customers[0], await factory.package(tenant.partner, title="Ours"))
    node = "query($id: ID!) { node(id: $id) { ... on PackageAssignment { given { title } } } }"
    assert (await gql(node, {"id": gid("PackageAssignment", ours.id)}, staff))["node"] == {"given": {"title": "Ours"}}
    # then: our partner and our sibling customer see neither its features nor its package
    for token, target in (
        (staff, other.customers[0]),
        (await gql.login(tenant.admins[1].email), tenant.customers[0]),
    ):
        assert (await gql(FEATURES, {"id": gid("Customer", target.id)}, token))["customer"] is None
        refused = await update(gql, token, target, portalEnabled=True)
        assert [(e["field"], e["code"]) for e in refused["errors"]] == [("customerId", "NOT_FOUND")]
    # nor the other side's assignment (and what it gave)
    sibling = await gql.login(tenant.admins[1].email)
    for token, assignment in ((staff, theirs), (sibling, ours)):
        assert (await gql(node, {"id": gid("PackageAssignment", assignment.id)}, token))["node"] is None
