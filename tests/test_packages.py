"""Agency packages (seed 004): create, update (version +1), archive; assigning applies features, the seat limit
(`userCount`), storage from the partner's pool, the API key tier, the spending cap and AI credits (an expiring
grant from the partner's pool) in one transaction, refused whole; the assignment's snapshot (`given`); idempotency;
tenancy; restricted emails; no N+1 for `Customer.package` and `Package.customerCount`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.accounts.models import Role
from domain.audit.models import AuditEvent
from domain.billing.models import BillingPreferences, CreditGrant, GrantSource
from domain.customers.models import Customer
from domain.features.models import FeatureToggles
from domain.ledger import services as ledger
from domain.ledger.models import Currency, LedgerAccount, Transfer
from domain.packages.models import PackageAssignment
from tests.conftest import GQL, Factory, Tenant, count_queries, gid

FUND = """mutation($i: PartnerCreditsAddInput!) { partnerCreditsAdd(input: $i) { errors { code } } }"""
PACKAGE_FIELDS = """id title description features version archived expiryDays aiCredits restrictedEmails userCount
  customerCount limits { storageMb apiRateTier monthlySpendingCap { amount currency } }"""
STORAGE_BUY = """mutation($i: PartnerStoragePurchaseInput!) { partnerStoragePurchase(input: $i) { errors { code } } }"""
CREATE = f"""mutation($i: PackageCreateInput!) {{ packageCreate(input: $i) {{
  package {{ {PACKAGE_FIELDS} }} errors {{ field code message }} }} }}"""
UPDATE = f"""mutation($i: PackageUpdateInput!) {{ packageUpdate(input: $i) {{
  package {{ {PACKAGE_FIELDS} }} errors {{ field code message }} }} }}"""
ARCHIVE = """mutation($i: PackageArchiveInput!) { packageArchive(input: $i) {
  package { id archived version } errors { field code message } } }"""
ASSIGN = """mutation($i: PackageAssignInput!) { packageAssign(input: $i) {
  assignment { id version assignedAt expiresAt active package { id title version customerCount } }
  errors { field code message } } }"""
CUSTOMER = """query($id: ID!) { customer(id: $id) {
  package { version expiresAt package { title } }
  features { portalEnabled advancedAnalytics apiAccess aiCreditsEnabled showPricing embedUrlsEnabled
             teamMembersEnabled maxTeamMembers portalSections }
  credits { available assigned }
  spendingCap { cap { amount } }
  storage { allocatedMb packageMb }
  partner { creditPool { available assigned } storagePool { totalMb allocatedMb availableMb } } } }"""

GROWTH = {
    "title": "Growth Plan",
    "description": "AI features and more seats",
    "features": ["CUSTOMER_PORTAL", "ADVANCED_ANALYTICS", "API_ACCESS", "AI_CREDITS", "KNOWLEDGE_BASE", "EMBEDS"],
    "userCount": 12,
    "limits": {"storageMb": 2048, "apiRateTier": "PREMIUM", "monthlySpendingCap": "250.00"},
    "aiCredits": "150.5",
    "expiryDays": 30,
}


def key() -> str:
    return uuid.uuid4().hex


async def fund(gql: GQL, factory: Factory, tenant: Tenant, credits: str, storage_gb: int = 4) -> None:
    """Credits in the partner's pool (a platform admin adds them) and storage bought by the partner."""
    admin = await gql.login((await factory.admin()).email)
    data = await gql(
        FUND,
        {"i": {"partnerId": gid("Partner", tenant.partner.id), "credits": credits, "idempotencyKey": key()}},
        admin,
    )
    assert data["partnerCreditsAdd"]["errors"] == []
    if storage_gb:
        owner = await gql.login(tenant.owner.email)
        bought = await gql(STORAGE_BUY, {"i": {"gigabytes": storage_gb, "idempotencyKey": key()}}, owner)
        assert bought["partnerStoragePurchase"]["errors"] == []


async def create(gql: GQL, token: str, **overrides: Any) -> dict[str, Any]:
    payload = (await gql(CREATE, {"i": {**GROWTH, **overrides}}, token))["packageCreate"]
    assert payload["errors"] == [], payload
    return payload["package"]


async def assign(gql: GQL, token: str, customer_id: int, package_id: str, **extra: Any) -> dict[str, Any]:
    """packageAssign with a fresh idempotency key unless `extra` names one."""
    variables = {
        "i": {"customerId": gid("Customer", customer_id), "packageId": package_id, "idempotencyKey": key(), **extra}
    }
    return (await gql(ASSIGN, variables, token))["packageAssign"]


def codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["errors"]]


async def customer_view(gql: GQL, token: str, customer_id: int) -> dict[str, Any]:
    return (await gql(CUSTOMER, {"id": gid("Customer", customer_id)}, token))["customer"]


async def state_of(customer_id: int) -> tuple[Any, ...]:
    """Everything an assignment could change, to show a refusal changed nothing."""
    toggles = await FeatureToggles.filter(customer_id=customer_id).values()
    prefs = await BillingPreferences.filter(customer_id=customer_id).values("monthly_spending_cap")
    accounts = await LedgerAccount.all().order_by("id").values("key", "balance")
    return (
        toggles,
        prefs,
        accounts,
        await Transfer.all().count(),
        await CreditGrant.all().count(),
        await PackageAssignment.all().count(),
    )


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    return await factory.tenant(customers=2)


@pytest.fixture
async def staff(gql: GQL, tenant: Tenant) -> str:
    return await gql.login(tenant.owner.email)


async def test_create_update_archive_and_versions(gql: GQL, tenant: Tenant, staff: str) -> None:
    # given
    package = await create(gql, staff, restrictedEmails=["Boss@Example.com"])
    # then
    assert package["version"] == 1 and package["archived"] is False and package["customerCount"] == 0
    assert package["features"] == GROWTH["features"] and package["userCount"] == 12
    assert package["limits"] == {
        "storageMb": 2048,
        "apiRateTier": "PREMIUM",
        "monthlySpendingCap": {"amount": "250.00", "currency": "USD"},
    }
    assert Decimal(package["aiCredits"]) == Decimal("150.5")
    assert package["restrictedEmails"] == ["boss@example.com"]
    # when: a real change, then the same values again
    changed = (
        await gql(UPDATE, {"i": {"packageId": package["id"], "title": "Growth+", "limits": {"storageMb": 1}}}, staff)
    )["packageUpdate"]
    same = (await gql(UPDATE, {"i": {"packageId": package["id"], "title": "Growth+"}}, staff))["packageUpdate"]
    archived = (await gql(ARCHIVE, {"i": {"packageId": package["id"]}}, staff))["packageArchive"]
    # then
    assert changed["errors"] == [] and changed["package"]["version"] == 2
    assert changed["package"]["title"] == "Growth+" and changed["package"]["limits"]["storageMb"] == 1
    assert changed["package"]["limits"]["apiRateTier"] == "PREMIUM"  # limits not sent keep their values
    assert changed["package"]["userCount"] == 12
    assert same["package"]["version"] == 2
    assert archived["errors"] == [] and archived["package"]["archived"] is True
    listed = await gql("query { packages(first: 10) { totalCount nodes { title archived } } }", None, staff)
    assert listed["packages"] == {"totalCount": 1, "nodes": [{"title": "Growth+", "archived": True}]}
    actions = await AuditEvent.filter(object_type="Package").order_by("id").values_list("action", flat=True)
    assert actions == ["package.create", "package.update", "package.archive"]


async def test_invalid_packages_are_refused(gql: GQL, staff: str) -> None:
    payload = (
        await gql(
            CREATE,
            {"i": {**GROWTH, "title": " ", "features": ["EMBEDS"], "aiCredits": "-1", "expiryDays": 0, "userCount": 0}},
            staff,
        )
    )["packageCreate"]
    assert payload["package"] is None
    assert set(codes(payload)) == {
        ("title", "REQUIRED"),
        ("features", "REQUIRES_FEATURE"),
        ("aiCredits", "INVALID"),
        ("expiryDays", "INVALID"),
        ("userCount", "INVALID"),
    }
    no_ai = (await gql(CREATE, {"i": {**GROWTH, "features": ["CUSTOMER_PORTAL"]}}, staff))["packageCreate"]
    assert set(codes(no_ai)) == {("aiCredits", "REQUIRES_FEATURE"), ("storageMb", "REQUIRES_FEATURE")}


async def test_assign_applies_features_limits_cap_and_credits(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given
    await fund(gql, factory, tenant, "1000")
    package = await create(gql, staff)
    customer = tenant.customers[0]
    # when
    before = datetime.now(UTC)
    payload = await assign(gql, staff, customer.id, package["id"], idempotencyKey=key())
    # then
    assert payload["errors"] == [], payload
    assignment = payload["assignment"]
    assert assignment["version"] == 1 and assignment["active"] is True
    assert assignment["package"] == {"id": package["id"], "title": "Growth Plan", "version": 1, "customerCount": 1}
    expires = datetime.fromisoformat(assignment["expiresAt"])
    assert before + timedelta(days=30) <= expires <= datetime.now(UTC) + timedelta(days=30)
    view = await customer_view(gql, staff, customer.id)
    assert view["package"]["version"] == 1 and view["package"]["package"]["title"] == "Growth Plan"
    assert view["features"] == {
        "portalEnabled": True,
        "advancedAnalytics": True,
        "apiAccess": True,
        "aiCreditsEnabled": True,
        "showPricing": False,  # hidden while AI credits are on (the features service's rule)
        "embedUrlsEnabled": True,
        "teamMembersEnabled": False,  # not in the package
        "maxTeamMembers": 12,
        "portalSections": ["KNOWLEDGE_BASE"],
    }
    assert Decimal(view["credits"]["available"]) == Decimal("150.5")
    assert Decimal(view["credits"]["assigned"]) == Decimal("150.5")
    assert Decimal(view["partner"]["creditPool"]["available"]) == Decimal("849.5")
    assert Decimal(view["partner"]["creditPool"]["assigned"]) == Decimal("150.5")
    assert view["spendingCap"]["cap"] == {"amount": "250.00"}
    # storage from the partner's pool (4 GB bought), the package's part of it
    assert view["storage"] == {"allocatedMb": 2048, "packageMb": 2048}
    assert view["partner"]["storagePool"] == {"totalMb": 4096, "allocatedMb": 2048, "availableMb": 2048}
    grant = await CreditGrant.get(customer_id=customer.id)
    assert grant.source == GrantSource.PACKAGE and grant.amount == Decimal("150.5") == grant.remaining
    assert grant.expires_at == expires
    assert await ledger.balance_of(ledger.partner_pool(tenant.partner.id)) == Decimal("849.5")
    _, problems = await ledger.verify()
    assert problems == []
    actions = set(await AuditEvent.filter(customer_id=customer.id).values_list("action", flat=True))
    assert {"package.assign", "customer.credits_grant", "customer_features.update", "spending_cap.update"} <= actions


async def test_updating_a_package_leaves_existing_assignments_at_their_version(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    await fund(gql, factory, tenant, "1000")
    package = await create(gql, staff)
    first = await assign(gql, staff, tenant.customers[0].id, package["id"])
    await gql(UPDATE, {"i": {"packageId": package["id"], "aiCredits": "10"}}, staff)
    second = await assign(gql, staff, tenant.customers[1].id, package["id"])
    assert first["assignment"]["version"] == 1 and second["assignment"]["version"] == 2
    view = await customer_view(gql, staff, tenant.customers[0].id)
    assert view["package"]["version"] == 1
    assert Decimal(view["credits"]["available"]) == Decimal("150.5")
    listed = await gql("query { packages { nodes { customerCount } } }", None, staff)
    assert listed["packages"]["nodes"] == [{"customerCount": 2}]


async def test_archived_package_is_not_eligible(gql: GQL, factory: Factory, tenant: Tenant, staff: str) -> None:
    await fund(gql, factory, tenant, "1000")
    package = await create(gql, staff)
    await gql(ARCHIVE, {"i": {"packageId": package["id"]}}, staff)
    before = await state_of(tenant.customers[0].id)
    payload = await assign(gql, staff, tenant.customers[0].id, package["id"], idempotencyKey=key())
    assert payload["assignment"] is None and codes(payload) == [("packageId", "NOT_ELIGIBLE")]
    assert await state_of(tenant.customers[0].id) == before


async def test_pool_too_small_refuses_the_whole_assignment(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: a pool that lacks 0.5 credits
    await fund(gql, factory, tenant, "150")
    package = await create(gql, staff)
    customer = tenant.customers[0]
    before = await state_of(customer.id)
    # when
    payload = await assign(gql, staff, customer.id, package["id"], idempotencyKey=key())
    # then
    assert payload["assignment"] is None and [e["code"] for e in payload["errors"]] == ["POOL_EXHAUSTED"]
    assert await state_of(customer.id) == before
    view = await customer_view(gql, staff, customer.id)
    assert view["package"] is None and view["features"]["advancedAnalytics"] is False
    assert view["spendingCap"]["cap"] is None and Decimal(view["credits"]["available"]) == 0


async def test_feature_rules_refuse_the_assignment(gql: GQL, factory: Factory, tenant: Tenant, staff: str) -> None:
    # given: a disabled customer cannot get portal access (the features service's NOT_ELIGIBLE rule)
    await fund(gql, factory, tenant, "1000")
    package = await create(gql, staff)
    customer = tenant.customers[0]
    await gql(
        """mutation($i: CustomerDisableInput!) { customerDisable(input: $i) { errors { code } } }""",
        {"i": {"customerId": gid("Customer", customer.id)}},
        staff,
    )
    await FeatureToggles.create(customer_id=customer.id, portal_enabled=False)
    before = await state_of(customer.id)
    # when
    payload = await assign(gql, staff, customer.id, package["id"])
    # then: each gated feature the package would switch on is refused, named by its package feature
    assert set(codes(payload)) == {("packageId", "NOT_ELIGIBLE")}
    named = [e["message"].split(":")[0] for e in payload["errors"]]
    assert named == ["CUSTOMER_PORTAL", "AI_CREDITS", "EMBEDS", "KNOWLEDGE_BASE"]
    assert all("disabled" in e["message"] for e in payload["errors"])
    assert await state_of(customer.id) == before


async def test_same_idempotency_key_grants_once(gql: GQL, factory: Factory, tenant: Tenant, staff: str) -> None:
    await fund(gql, factory, tenant, "1000")
    package = await create(gql, staff)
    customer = tenant.customers[0]
    same = key()
    first = await assign(gql, staff, customer.id, package["id"], idempotencyKey=same)
    second = await assign(gql, staff, customer.id, package["id"], idempotencyKey=same)
    assert first["errors"] == [] and second["errors"] == []
    assert first["assignment"]["id"] == second["assignment"]["id"]
    assert await CreditGrant.filter(customer_id=customer.id).count() == 1
    assert await PackageAssignment.filter(customer_id=customer.id).count() == 1
    assert await ledger.balance_of(ledger.customer_credits(customer.id, tenant.partner.id)) == Decimal("150.5")
    other = await gql(CREATE, {"i": {**GROWTH, "title": "Other"}}, staff)
    reused = await assign(gql, staff, customer.id, other["packageCreate"]["package"]["id"], idempotencyKey=same)
    assert codes(reused) == [("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")]


async def test_assign_without_idempotency_key_is_refused_and_grants_nothing(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given a package with credits and a funded pool
    await fund(gql, factory, tenant, "1000")
    package = await create(gql, staff)
    customer = tenant.customers[0]
    variables = {"i": {"customerId": gid("Customer", customer.id), "packageId": package["id"]}}
    # when a client retries an assignment that names no key
    answers = [(await gql.raw(ASSIGN, variables, staff)).json() for _ in range(2)]
    # then the request is refused before it runs (`idempotencyKey: String!`) and no credits moved
    for body in answers:
        assert "data" not in body and "idempotencyKey" in body["errors"][0]["message"], body
    assert await CreditGrant.filter(customer_id=customer.id).count() == 0
    assert await PackageAssignment.filter(customer_id=customer.id).count() == 0
    assert await ledger.balance_of(ledger.partner_pool(tenant.partner.id)) == Decimal(1000)


async def test_tenancy_and_roles(gql: GQL, factory: Factory, tenant: Tenant, staff: str) -> None:
    # given
    package = await create(gql, staff, aiCredits="0", features=["CUSTOMER_PORTAL"], limits={"storageMb": 0})
    other = await factory.tenant(customers=1)
    other_staff = await gql.login(other.owner.email)
    customer_admin = await gql.login(tenant.admins[0].email)
    member = await gql.login((await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)).email)
    # then: other partner's admin sees nothing and gets NOT_FOUND
    assert (await gql("query($id: ID!) { package(id: $id) { id } }", {"id": package["id"]}, other_staff)) == {
        "package": None
    }
    assert (await gql("query { packages { totalCount } }", None, other_staff))["packages"]["totalCount"] == 0
    update = (await gql(UPDATE, {"i": {"packageId": package["id"], "title": "Mine"}}, other_staff))["packageUpdate"]
    assert codes(update) == [("packageId", "NOT_FOUND")]
    foreign = await assign(gql, other_staff, other.customers[0].id, package["id"])
    assert codes(foreign) == [("packageId", "NOT_FOUND")]
    cross = await assign(gql, staff, other.customers[0].id, package["id"])
    assert codes(cross) == [("customerId", "NOT_FOUND")]
    # customer users and partner members may not manage packages
    for token in (customer_admin, member):
        assert codes((await gql(CREATE, {"i": GROWTH}, token))["packageCreate"]) == [(None, "FORBIDDEN")]
        assert codes(await assign(gql, token, tenant.customers[0].id, package["id"])) == [(None, "FORBIDDEN")]
        archived = (await gql(ARCHIVE, {"i": {"packageId": package["id"]}}, token))["packageArchive"]
        assert codes(archived) == [(None, "FORBIDDEN")]
    # a customer sees its own package, without the partner's restricted emails
    await gql(UPDATE, {"i": {"packageId": package["id"], "restrictedEmails": [tenant.admins[0].email]}}, staff)
    assert (await assign(gql, staff, tenant.customers[0].id, package["id"]))["errors"] == []
    own = await gql(
        "query($id: ID!) { customer(id: $id) { package { package { title restrictedEmails customerCount } } } }",
        {"id": gid("Customer", tenant.customers[0].id)},
        customer_admin,
    )
    assert own["customer"]["package"]["package"] == {"title": "Growth Plan", "restrictedEmails": [], "customerCount": 1}
    assert (await gql("query { packages { totalCount } }", None, customer_admin))["packages"]["totalCount"] == 1


async def test_restricted_emails_limit_who_can_get_the_package(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    package = await create(
        gql, staff, aiCredits="0", limits={"storageMb": 0}, restrictedEmails=[tenant.admins[1].email.upper()]
    )
    refused = await assign(gql, staff, tenant.customers[0].id, package["id"])
    allowed = await assign(gql, staff, tenant.customers[1].id, package["id"])
    assert codes(refused) == [("packageId", "NOT_ELIGIBLE")]
    assert allowed["errors"] == []


PAGE = """query { customers(first: 100) { nodes { name
  package { version expiresAt active given { title userCount features } package { title customerCount userCount } }
  } } }"""


async def test_customer_package_page_costs_the_same_for_3_and_30_customers(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: several packages, each customer assigned one
    packages = [
        (await create(gql, staff, title=f"P{i}", aiCredits="0", limits={"storageMb": 0}))["id"] for i in range(3)
    ]

    async def grow(until: int) -> None:
        while len(tenant.customers) < until:
            customer, _ = await factory.customer(tenant.partner)
            tenant.customers.append(customer)
        for n, customer in enumerate(tenant.customers):
            if not await PackageAssignment.filter(customer_id=customer.id).exists():
                assert (await assign(gql, staff, customer.id, packages[n % 3]))["errors"] == []

    await grow(3)
    with count_queries() as small:
        small_data = await gql(PAGE, None, staff)
    await grow(30)
    with count_queries() as large:
        large_data = await gql(PAGE, None, staff)
    # then
    assert len(small_data["customers"]["nodes"]) == 3 and len(large_data["customers"]["nodes"]) == 30
    assert sum(n["package"]["package"]["customerCount"] for n in large_data["customers"]["nodes"]) == 10 * 10 * 3
    assert len(small.queries) == len(large.queries), (len(small.queries), len(large.queries))


@pytest.mark.postgres
async def test_concurrent_assignments_never_overdraw_the_pool(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: a pool that fits one package's credits, and six customers wanting it at once
    await fund(gql, factory, tenant, "200")
    package = await create(gql, staff)
    for _ in range(4):
        tenant.customers.append((await factory.customer(tenant.partner))[0])
    # when
    answers = await asyncio.gather(
        *[assign(gql, staff, c.id, package["id"], idempotencyKey=key()) for c in tenant.customers]
    )
    # then
    outcomes = sorted(tuple(e["code"] for e in a["errors"]) for a in answers)
    assert outcomes == [()] + [("POOL_EXHAUSTED",)] * 5
    assert await ledger.balance_of(ledger.partner_pool(tenant.partner.id)) == Decimal("49.5")
    assert await CreditGrant.all().count() == 1 and await PackageAssignment.all().count() == 1
    _, problems = await ledger.verify()
    assert problems == []
    totals = await LedgerAccount.filter(currency=Currency.CREDITS).values_list("balance", flat=True)
    assert sum(totals, Decimal(0)) == 0


CUSTOMER_CREATE = """mutation($i: CustomerCreateInput!) { customerCreate(input: $i) {
    customer { id name package { version package { title } } credits { available } }
    errors { field code } } }"""


def new_customer(package_id: str) -> dict[str, Any]:
    n = key()[:8]
    return {
        "username": f"pkg{n}",
        "firstName": "Pat",
        "lastName": "Kay",
        "email": f"pkg{n}@example.com",
        "password": "Test-pass-1",
        "passwordConfirmation": "Test-pass-1",
        "companyName": f"Packaged {n}",
        "packageId": package_id,
    }


async def test_customer_create_with_a_package_assigns_it_or_creates_nothing(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given a funded pool and a package
    await fund(gql, factory, tenant, "1000")
    package = await create(gql, staff)
    # when a customer is created with it: created with the package applied
    created = (await gql(CUSTOMER_CREATE, {"i": new_customer(package["id"])}, staff))["customerCreate"]
    assert created["errors"] == [], created
    assert created["customer"]["package"]["package"]["title"] == GROWTH["title"]
    assert Decimal(created["customer"]["credits"]["available"]) == Decimal(GROWTH["aiCredits"])
    # when the package cannot apply (archived): refused whole, no customer
    await gql(ARCHIVE, {"i": {"packageId": package["id"]}}, staff)
    count = await Customer.all().count()
    refused = (await gql(CUSTOMER_CREATE, {"i": new_customer(package["id"])}, staff))["customerCreate"]
    assert refused["customer"] is None and ("packageId", "NOT_ELIGIBLE") in codes(refused)
    assert await Customer.all().count() == count
