"""Knowledge-base storage (issue 15, item 7; seed 000): the partner buys storage at $8/GB (a ledger transfer from its
USD account to the platform, idempotent), allocates it to customers as totals (POOL_EXHAUSTED, never below what
they use, only with the knowledge base in their package), the platform reports use, and use beyond the allocation is
metered daily as STORAGE_MB usage. Concurrent allocations never over-commit the pool (PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.accounts.models import Role
from domain.audit.models import AuditEvent
from domain.customers.models import Customer
from domain.features.models import FeatureToggles
from domain.ledger import services as ledger
from domain.ledger.models import Currency, LedgerAccount, Transfer, TransferKind
from domain.packages.models import FeatureKey
from domain.storage.metering import meter_storage, storage_usage_key
from domain.storage.models import CustomerStorage, PartnerStorage
from domain.usage.models import UnitType, UsageEvent
from tests.conftest import GQL, Factory, Tenant, gid

BUY = """mutation($i: PartnerStoragePurchaseInput!) { partnerStoragePurchase(input: $i) {
  storagePool { totalMb allocatedMb availableMb }
  transfer { id kind currency amount debitBalanceAfter creditBalanceAfter }
  partner { id }
  errors { field code message } } }"""
ALLOCATE = """mutation($i: CustomerStorageAllocateInput!) { customerStorageAllocate(input: $i) {
  storage { allocatedMb packageMb usedMb percentUsed partnerAvailableMb } customer { id }
  errors { field code message } } }"""
USAGE = """mutation($i: StorageUsageRecordInput!) { storageUsageRecord(input: $i) {
  storage { allocatedMb usedMb percentUsed usedReportedAt } errors { field code message } } }"""
STORAGE = """query($id: ID!) { customer(id: $id) {
  storage { allocatedMb packageMb usedMb percentUsed partnerAvailableMb }
  partner { storagePool { totalMb allocatedMb availableMb } } } }"""
KEY = """mutation($i: ApiKeyCreateInput!) { apiKeyCreate(input: $i) { secret errors { code } } }"""


def key() -> str:
    return uuid.uuid4().hex


def codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["errors"]]


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    """Two customers with the knowledge base in their package (nothing applied)."""
    tenant = await factory.tenant(customers=2)
    for customer in tenant.customers:
        await factory.entitle(customer, [FeatureKey.CUSTOMER_PORTAL, FeatureKey.KNOWLEDGE_BASE])
    return tenant


@pytest.fixture
async def staff(gql: GQL, tenant: Tenant) -> str:
    return await gql.login(tenant.owner.email)


async def buy(gql: GQL, token: str, gigabytes: int, idempotency_key: str | None = None, **extra: Any) -> dict[str, Any]:
    variables = {"i": {"gigabytes": gigabytes, "idempotencyKey": idempotency_key or key(), **extra}}
    return (await gql(BUY, variables, token))["partnerStoragePurchase"]


async def allocate(gql: GQL, token: str, customer: Customer, megabytes: int) -> dict[str, Any]:
    variables = {"i": {"customerId": gid("Customer", customer.id), "megabytes": megabytes}}
    return (await gql(ALLOCATE, variables, token))["customerStorageAllocate"]


async def report_use(gql: GQL, token: str, customer: Customer, used_mb: int) -> dict[str, Any]:
    variables = {"i": {"customerId": gid("Customer", customer.id), "usedMb": used_mb}}
    return (await gql(USAGE, variables, token))["storageUsageRecord"]


async def test_a_purchase_charges_8_dollars_a_gigabyte_once_per_key(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given
    same = key()
    # when: bought, then the same request again
    first = await buy(gql, staff, 2, same)
    again = await buy(gql, staff, 2, same)
    # then: one charge of $16 from the partner's USD account to the platform, 2,048 MB in the pool
    assert first["errors"] == [] and again["errors"] == []
    assert first["transfer"] == again["transfer"]
    transfer = first["transfer"]
    assert (transfer["kind"], transfer["currency"], Decimal(transfer["amount"])) == ("STORAGE_PURCHASE", "USD", 16)
    assert Decimal(transfer["debitBalanceAfter"]) == -16  # the partner owes the platform
    assert transfer["creditBalanceAfter"] is None  # the platform's revenue is not the partner's figure
    assert first["storagePool"] == {"totalMb": 2048, "allocatedMb": 0, "availableMb": 2048}
    assert first["partner"]["id"] == gid("Partner", tenant.partner.id)
    assert await Transfer.filter(kind=TransferKind.STORAGE_PURCHASE).count() == 1
    assert await ledger.balance_of(ledger.partner_usd(tenant.partner.id)) == Decimal(-16)
    assert await ledger.balance_of(ledger.platform_revenue(tenant.partner.id)) == Decimal(16)
    _, problems = await ledger.verify()
    assert problems == []
    audit = await AuditEvent.get(action="partner.storage_purchase")
    assert audit.partner_id == tenant.partner.id and audit.details["price"] == "16.00"
    # the same key for another amount is refused; a new key buys more
    assert codes(await buy(gql, staff, 3, same)) == [("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")]
    assert (await buy(gql, staff, 1))["storagePool"]["totalMb"] == 3072


async def test_who_may_buy_storage(gql: GQL, factory: Factory, tenant: Tenant, staff: str) -> None:
    # given
    platform = await gql.login((await factory.admin()).email)
    member = await gql.login((await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)).email)
    customer_admin = await gql.login(tenant.admins[0].email)
    other = await factory.tenant(customers=0)
    partner_id = gid("Partner", tenant.partner.id)
    # then: partner members and customer users may not
    for token in (member, customer_admin):
        assert codes(await buy(gql, token, 1)) == [(None, "FORBIDDEN")]
    # a partner admin buys for its own partner only; a platform admin names the partner
    assert codes(await buy(gql, staff, 1, partnerId=gid("Partner", other.partner.id))) == [("partnerId", "NOT_FOUND")]
    assert codes(await buy(gql, platform, 1)) == [("partnerId", "REQUIRED")]
    assert (await buy(gql, platform, 1, partnerId=partner_id))["storagePool"]["totalMb"] == 1024
    # bad amounts are refused before anything is stored
    for gigabytes in (0, -1, 100_001):
        assert codes(await buy(gql, staff, gigabytes)) == [("gigabytes", "INVALID")]
    assert await Transfer.filter(kind=TransferKind.STORAGE_PURCHASE).count() == 1


async def test_allocations_are_totals_from_the_pool(gql: GQL, tenant: Tenant, staff: str) -> None:
    # given: 1 GB in the pool
    first, second = tenant.customers
    await buy(gql, staff, 1)
    # when: 600 MB to the first customer, twice (a retry changes nothing)
    given = await allocate(gql, staff, first, 600)
    again = await allocate(gql, staff, first, 600)
    # then
    assert given["errors"] == [] and again["errors"] == []
    assert again["storage"] == {
        "allocatedMb": 600,
        "packageMb": 0,
        "usedMb": 0,
        "percentUsed": "0.00",
        "partnerAvailableMb": 424,
    }
    assert await AuditEvent.filter(action="customer.storage_allocate").count() == 1
    # when: the second customer asks for more than is left
    short = await allocate(gql, staff, second, 500)
    # then
    assert codes(short) == [("megabytes", "POOL_EXHAUSTED")] and "424 MB left" in short["errors"][0]["message"]
    # lowering the first gives the difference back, and the second fits
    assert (await allocate(gql, staff, first, 100))["storage"]["partnerAvailableMb"] == 924
    assert (await allocate(gql, staff, second, 500))["errors"] == []
    pool = await PartnerStorage.get(partner_id=tenant.partner.id)
    assert (pool.total_mb, pool.allocated_mb) == (1024, 600)


async def test_an_allocation_never_goes_below_use_and_needs_the_knowledge_base(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: 700 MB allocated, 512 MB in use
    customer = tenant.customers[0]
    await buy(gql, staff, 1)
    await allocate(gql, staff, customer, 700)
    assert (await report_use(gql, staff, customer, 512))["storage"]["percentUsed"] == "73.14"
    # when / then: never below what it uses
    below = await allocate(gql, staff, customer, 500)
    assert codes(below) == [("megabytes", "INVALID")] and "512 MB" in below["errors"][0]["message"]
    assert (await allocate(gql, staff, customer, 512))["errors"] == []
    # a customer whose package lacks the knowledge base cannot be given more, but can be given less
    await factory.entitle(customer, [FeatureKey.CUSTOMER_PORTAL])
    await report_use(gql, staff, customer, 0)
    refused = await allocate(gql, staff, customer, 600)
    assert codes(refused) == [("megabytes", "NOT_ELIGIBLE")]
    assert "does not include the knowledge base" in refused["errors"][0]["message"]
    assert (await allocate(gql, staff, customer, 0))["storage"]["allocatedMb"] == 0
    # bad sizes
    for megabytes in (-1, 10_000_001):
        assert codes(await allocate(gql, staff, customer, megabytes)) == [("megabytes", "INVALID")]


async def test_who_may_allocate_and_see_storage(gql: GQL, factory: Factory, tenant: Tenant, staff: str) -> None:
    # given
    customer, sibling = tenant.customers
    await buy(gql, staff, 1)
    await allocate(gql, staff, customer, 256)
    other = await factory.tenant(customers=1)
    other_staff = await gql.login(other.owner.email)
    own_admin = await gql.login(tenant.admins[0].email)
    member = await gql.login((await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)).email)
    # then: only the partner's admins (and platform admins) allocate
    for token in (own_admin, member):
        assert codes(await allocate(gql, token, customer, 300)) == [(None, "FORBIDDEN")]
    for token, target in ((other_staff, customer), (await gql.login(tenant.admins[1].email), customer)):
        assert codes(await allocate(gql, token, target, 300)) == [("customerId", "NOT_FOUND")]
        assert (await gql(STORAGE, {"id": gid("Customer", target.id)}, token))["customer"] is None
    # the customer's own admin sees its storage, not the partner's pool
    own = (await gql(STORAGE, {"id": gid("Customer", customer.id)}, own_admin))["customer"]
    assert own["storage"]["allocatedMb"] == 256 and own["storage"]["partnerAvailableMb"] is None
    assert own["partner"]["storagePool"] is None
    # partner staff see both
    seen = (await gql(STORAGE, {"id": gid("Customer", customer.id)}, member))["customer"]
    assert seen["storage"]["partnerAvailableMb"] == 768
    assert seen["partner"]["storagePool"] == {"totalMb": 1024, "allocatedMb": 256, "availableMb": 768}
    # another partner's pool stays its own
    theirs = (await gql(STORAGE, {"id": gid("Customer", other.customers[0].id)}, other_staff))["customer"]
    assert theirs["partner"]["storagePool"] == {"totalMb": 0, "allocatedMb": 0, "availableMb": 0}
    assert (await gql(STORAGE, {"id": gid("Customer", sibling.id)}, staff))["customer"]["storage"]["allocatedMb"] == 0


async def test_use_is_reported_by_the_platform_and_metered_beyond_the_allocation(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: 1,024 MB allocated, an API key of the customer (the platform's integration)
    customer = tenant.customers[0]
    await buy(gql, staff, 1)
    await allocate(gql, staff, customer, 1024)
    await FeatureToggles.create(customer_id=customer.id, api_access=True)
    cid = gid("Customer", customer.id)
    own_admin = await gql.login(tenant.admins[0].email)
    secret = (await gql(KEY, {"i": {"customerId": cid, "name": "kb", "permissions": ["WRITE"]}}, own_admin))[
        "apiKeyCreate"
    ]["secret"]
    # when: the key reports 1,024 + 3,100 MB in use; a person of the customer may not report
    assert codes(await report_use(gql, own_admin, customer, 10)) == [(None, "FORBIDDEN")]
    reported = await report_use(gql, secret, customer, 4124)
    # then
    assert reported["errors"] == [] and reported["storage"]["percentUsed"] == "402.73"
    assert reported["storage"]["usedReportedAt"]
    assert codes(await report_use(gql, secret, customer, -1)) == [("usedMb", "INVALID")]
    # when: the daily metering runs for yesterday, twice
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    first = await meter_storage(yesterday)
    second = await meter_storage(yesterday)
    # then: one STORAGE_MB event of 3,100 MB for one day, in MB-months, rated by the rate card ($8/GB-month)
    assert (first.accepted, second.accepted, second.duplicates) == (1, 0, 1)
    event = await UsageEvent.get(customer_id=customer.id, unit_type=UnitType.STORAGE_MB)
    assert event.idempotency_key == storage_usage_key(customer.id, yesterday)
    days = (date(yesterday.year + yesterday.month // 12, yesterday.month % 12 + 1, 1) - timedelta(days=1)).day
    assert event.quantity == (Decimal(3100) / days).quantize(Decimal("0.000001"))
    assert event.cost == (event.quantity * Decimal("0.0078125")).quantize(Decimal("0.000001"))
    # a customer within its allocation is not metered
    await report_use(gql, staff, customer, 1000)
    assert (await meter_storage(yesterday - timedelta(days=1))).accepted == 0


@pytest.mark.postgres
async def test_concurrent_allocations_never_over_commit_the_pool(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: 1 GB in the pool and ten customers asking for 200 MB each at once
    for _ in range(8):
        customer, _ = await factory.customer(tenant.partner)
        await factory.entitle(customer, [FeatureKey.CUSTOMER_PORTAL, FeatureKey.KNOWLEDGE_BASE])
        tenant.customers.append(customer)
    await buy(gql, staff, 1)
    # when
    answers = await asyncio.gather(*(allocate(gql, staff, c, 200) for c in tenant.customers))
    # then: five fit (1,000 of 1,024 MB), five are refused, and the pool adds up
    outcomes = sorted(tuple(code for _, code in codes(a)) for a in answers)
    assert outcomes == [()] * 5 + [("POOL_EXHAUSTED",)] * 5
    pool = await PartnerStorage.get(partner_id=tenant.partner.id)
    allocated = sum(await CustomerStorage.filter(partner_id=tenant.partner.id).values_list("allocated_mb", flat=True))
    assert pool.allocated_mb == allocated == 1000 and pool.total_mb == 1024
    _, problems = await ledger.verify()
    assert problems == []


@pytest.mark.postgres
async def test_concurrent_purchases_charge_once_per_key_and_keep_the_books(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: five retries of one purchase and five distinct purchases, all at once
    same = key()
    requests = [buy(gql, staff, 3, same) for _ in range(5)] + [buy(gql, staff, 1) for _ in range(5)]
    # when
    answers = await asyncio.gather(*requests)
    # then: the retries got the first outcome (or were told it is still running), 3 + 5 GB were bought once
    retries = answers[:5]
    assert all(codes(a) in ([], [("idempotencyKey", "IDEMPOTENCY_KEY_IN_USE")]) for a in retries)
    assert len({a["transfer"]["id"] for a in retries if a["transfer"]}) == 1
    assert await Transfer.filter(kind=TransferKind.STORAGE_PURCHASE).count() == 6
    assert (await PartnerStorage.get(partner_id=tenant.partner.id)).total_mb == 8 * 1024
    assert await ledger.balance_of(ledger.partner_usd(tenant.partner.id)) == Decimal(-64)
    _, problems = await ledger.verify()
    assert problems == []
    totals = await LedgerAccount.filter(currency=Currency.USD).values_list("balance", flat=True)
    assert sum(totals, Decimal(0)) == 0


async def test_a_deleted_customer_gives_its_storage_back_and_ends_its_package(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: a customer on a package with 300 MB allocated
    from domain.customers.retention import purge_customer
    from domain.packages.models import EndReason, PackageAssignment

    customer = tenant.customers[0]
    await buy(gql, staff, 1)
    await allocate(gql, staff, customer, 300)
    assignment = await PackageAssignment.get(current_customer_id=customer.id)
    # when: retention deletes it
    assert await purge_customer(customer)
    # then
    pool = await PartnerStorage.get(partner_id=tenant.partner.id)
    assert pool.allocated_mb == 0 and not await CustomerStorage.filter(customer_id=customer.id).exists()
    ended = await PackageAssignment.get(id=assignment.id)
    assert ended.current_customer_id is None and ended.end_reason == EndReason.PURGED
    audit = await AuditEvent.get(action="customer.purge")
    assert audit.details["storage_mb_to_pool"] == 300


PAGE = """query { customers(first: 100) { nodes { name
  storage { allocatedMb usedMb percentUsed partnerAvailableMb }
  features { addOns }
  package { given { title features userCount limits { storageMb } } }
  partner { storagePool { availableMb } } } } }"""


async def test_storage_on_a_customer_page_costs_the_same_for_3_and_30(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: storage bought, some customers with allocations and use
    from tests.conftest import count_queries

    await buy(gql, staff, 10)

    async def grow(until: int) -> None:
        while len(tenant.customers) < until:
            customer, _ = await factory.customer(tenant.partner)
            await factory.entitle(customer, [FeatureKey.CUSTOMER_PORTAL, FeatureKey.KNOWLEDGE_BASE])
            tenant.customers.append(customer)
            if len(tenant.customers) % 2:
                await allocate(gql, staff, customer, 100)
                await report_use(gql, staff, customer, 50)

    await grow(3)
    with count_queries() as small:
        few = (await gql(PAGE, None, staff))["customers"]["nodes"]
    await grow(30)
    with count_queries() as large:
        many = (await gql(PAGE, None, staff))["customers"]["nodes"]
    # then
    assert len(few) == 3 and len(many) == 30
    assert sum(n["storage"]["allocatedMb"] for n in many) == 100 * 14
    assert {n["package"]["given"]["title"] for n in many} == {"Entitlement"}
    print(f"\nSQL statements for customers with storage: 3 → {len(small.queries)}, 30 → {len(large.queries)}")
    assert len(small.queries) == len(large.queries)
