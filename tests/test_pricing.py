"""Pricing visibility (issue 15, item 9; seed 000 "Show Pricing Information"): with `showPricing` off (always off
under AI credits) the customer's people, API keys and embed tokens see no prices or costs — usage events, summaries,
holds, the rate card and report files — while partner staff see them all; with it on, everyone sees them. Decided
in one place (domain/features/pricing.py)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain import config as domain_config
from domain.accounts.models import Role
from domain.features import pricing
from domain.features.models import FeatureToggles
from domain.packages.models import FeatureKey
from domain.reports.storage import configure_storage
from domain.viewer import Viewer
from tests.conftest import GQL, Factory, Tenant, gid
from tests.test_reports import run_jobs

TODAY = datetime.now(UTC).date()
EVENTS = """query($id: ID!) { usageEvents(customerId: $id, first: 10) { nodes {
  unitType quantity credits cost { amount } unitPrice { amount } } } }"""
SUMMARY = """query($id: ID!, $from: Date!, $to: Date!) { usageSummary(customerId: $id, from: $from, to: $to) {
  unitType quantity cost { amount } unpaidCost { amount } } }"""
RATE_CARD = """query($id: ID!) { customer(id: $id) { partner { rateCard { unitType price { amount } } } } }"""
AUTHORIZE = """mutation($i: UsageAuthorizeInput!) { usageAuthorize(input: $i) {
  hold { estimatedQuantity amount { amount } } errors { code } } }"""
EXPORT = """mutation($i: UsageExportCreateInput!) { usageExportCreate(input: $i) {
  usageReport { id } errors { code } } }"""
REPORTS = """query($id: ID!) { usageReports(customerId: $id) { nodes { id status withPrices downloadUrl } } }"""
FEATURES = """mutation($i: CustomerFeaturesUpdateInput!) { customerFeaturesUpdate(input: $i) {
  features { showPricing aiCreditsEnabled } errors { field code } } }"""
RECORD = """mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted errors { code } } }"""


def key() -> str:
    return uuid.uuid4().hex


@pytest.fixture(autouse=True)
def exports_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "exports"
    with domain_config.overridden(exports_dir=folder):
        yield folder
    configure_storage(None)


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    """A customer with the portal and embeds (its package), API access, and some usage; pricing hidden."""
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await factory.give(customer, await factory.package(tenant.partner, [FeatureKey.CUSTOMER_PORTAL, FeatureKey.EMBEDS]))
    await FeatureToggles.filter(customer_id=customer.id).update(api_access=True, show_pricing=False)
    return tenant


@pytest.fixture
async def staff(gql: GQL, tenant: Tenant) -> str:
    return await gql.login(tenant.owner.email)


async def viewers(gql: GQL, factory: Factory, tenant: Tenant) -> dict[str, str]:
    """Tokens of the customer's admin, a member, a READ/WRITE API key and a usage-dashboard embed token."""
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    admin = await gql.login(tenant.admins[0].email)
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    api_key = await gql(
        "mutation($i: ApiKeyCreateInput!) { apiKeyCreate(input: $i) { secret } }",
        {"i": {"customerId": cid, "name": "bi", "permissions": ["READ", "WRITE"]}},
        admin,
    )
    embed = await gql(
        "mutation($i: EmbedTokenCreateInput!) { embedTokenCreate(input: $i) { token errors { code } } }",
        {"i": {"customerId": cid, "sections": ["USAGE_DASHBOARD"], "expiresInSeconds": 3600}},
        admin,
    )
    return {
        "customer admin": admin,
        "customer member": await gql.login(member.email),
        "API key": api_key["apiKeyCreate"]["secret"],
        "embed token": embed["embedTokenCreate"]["token"],
    }


async def record(gql: GQL, token: str, customer_id: int) -> None:
    event = {
        "idempotencyKey": key(),
        "customerId": gid("Customer", customer_id),
        "unitType": "VOICE_MINUTES",
        "quantity": "10",
        "occurredAt": datetime.now(UTC).isoformat(),
    }
    assert (await gql(RECORD, {"i": {"events": [event]}}, token))["usageRecord"]["accepted"] == 1


async def costs_seen(gql: GQL, token: str, customer_id: int) -> dict[str, Any]:
    cid = gid("Customer", customer_id)
    event = (await gql(EVENTS, {"id": cid}, token))["usageEvents"]["nodes"][0]
    span = {"id": cid, "from": (TODAY - timedelta(days=1)).isoformat(), "to": TODAY.isoformat()}
    row = (await gql(SUMMARY, span, token))["usageSummary"][0]
    return {
        "event": (event["cost"], event["unitPrice"]),
        "summary": (row["cost"], row["unpaidCost"]),
        "quantity": (event["quantity"], row["quantity"]),
    }


@pytest.mark.parametrize("viewer", ["customer admin", "customer member", "API key", "embed token"])
async def test_hidden_pricing_leaves_costs_out_for_the_customers_side(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str, viewer: str
) -> None:
    # given: usage of the customer, pricing hidden
    customer = tenant.customers[0]
    await record(gql, staff, customer.id)
    token = (await viewers(gql, factory, tenant))[viewer]
    # when
    seen = await costs_seen(gql, token, customer.id)
    # then: quantities yes, prices and costs no
    assert seen["event"] == (None, None) and seen["summary"] == (None, None)
    assert seen["quantity"][0].startswith("10")
    # partner staff still see them
    assert (await costs_seen(gql, staff, customer.id))["event"] == ({"amount": "0.60"}, {"amount": "0.06"})
    # the rate card is left out for the customer's people (an embed token cannot read it at all)
    if viewer != "embed token":
        card = await gql(RATE_CARD, {"id": gid("Customer", customer.id)}, token)
        assert card["customer"]["partner"]["rateCard"] == []
    assert len((await gql(RATE_CARD, {"id": gid("Customer", customer.id)}, staff))["customer"]["partner"]["rateCard"])


async def test_shown_pricing_shows_costs_and_ai_credits_always_hide_them(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: pricing switched on by the partner
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    assert (await gql(FEATURES, {"i": {"customerId": cid, "showPricing": True}}, staff))["customerFeaturesUpdate"][
        "errors"
    ] == []
    await record(gql, staff, customer.id)
    tokens = await viewers(gql, factory, tenant)
    # then: every one of the customer's viewers sees prices
    for token in tokens.values():
        assert (await costs_seen(gql, token, customer.id))["event"] == ({"amount": "0.60"}, {"amount": "0.06"})
    card = (await gql(RATE_CARD, {"id": cid}, tokens["customer admin"]))["customer"]["partner"]["rateCard"]
    assert {"unitType": "VOICE_MINUTES", "price": {"amount": "0.06"}} in card
    # when: AI credits go on (the package gives them), pricing is hidden again, whatever showPricing said
    await factory.give(customer, await factory.package(tenant.partner, [FeatureKey.AI_CREDITS], title="Credits"))
    toggles = await FeatureToggles.get(customer_id=customer.id)
    assert toggles.ai_credits_enabled and not pricing.pricing_shown(toggles)
    assert (await costs_seen(gql, tokens["customer admin"], customer.id))["event"] == (None, None)


async def test_a_hold_shows_its_amount_only_where_prices_are_seen(
    gql: GQL, factory: Factory, tenant: Tenant, staff: str
) -> None:
    customer = tenant.customers[0]
    tokens = await viewers(gql, factory, tenant)
    request = {"customerId": gid("Customer", customer.id), "unitType": "VOICE_MINUTES", "estimatedQuantity": "5"}
    for token, expected in ((tokens["API key"], None), (staff, {"amount": "0.30"})):
        held = (await gql(AUTHORIZE, {"i": {**request, "idempotencyKey": key()}}, token))["usageAuthorize"]
        assert held["errors"] == [] and held["hold"]["amount"] == expected


def _csv(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


async def test_reports_leave_prices_out_for_whoever_may_not_see_them(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory, tenant: Tenant, staff: str
) -> None:
    # given: usage, and the same export asked for by the customer's admin and by its partner
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    await record(gql, staff, customer.id)
    admin = await gql.login(tenant.admins[0].email)
    request = {"customerId": cid, "format": "VOICE_CSV", "from": TODAY.isoformat(), "to": TODAY.isoformat()}
    mine = (await gql(EXPORT, {"i": request}, admin))["usageExportCreate"]["usageReport"]["id"]
    theirs = (await gql(EXPORT, {"i": request}, staff))["usageExportCreate"]["usageReport"]["id"]
    await run_jobs(app)
    # when
    as_admin = {n["id"]: n for n in (await gql(REPORTS, {"id": cid}, admin))["usageReports"]["nodes"]}
    as_staff = {n["id"]: n for n in (await gql(REPORTS, {"id": cid}, staff))["usageReports"]["nodes"]}
    # then: the customer's own report has no price columns; the partner's has them and only staff can open it
    assert as_admin[mine]["withPrices"] is False and as_admin[theirs]["withPrices"] is True
    assert as_admin[theirs]["downloadUrl"] is None and as_staff[theirs]["downloadUrl"]
    own = await client.get(httpx.URL(as_admin[mine]["downloadUrl"]).path)
    header, row = _csv(own.content)
    assert not {"unit_price", "cost", "currency"} & set(header)
    assert dict(zip(header, row, strict=True))["quantity"] == "10"
    priced = await client.get(httpx.URL(as_staff[theirs]["downloadUrl"]).path)
    header, row = _csv(priced.content)
    cells = dict(zip(header, row, strict=True))
    assert (cells["unit_price"], cells["cost"], cells["currency"]) == ("0.06", "0.60", "USD")


async def test_the_rule_itself() -> None:
    # the one function every price field and report asks
    hidden = FeatureToggles(customer_id=1, show_pricing=False)
    credits = FeatureToggles(customer_id=1, show_pricing=True, ai_credits_enabled=True)
    shown = FeatureToggles(customer_id=1, show_pricing=True)
    customer = Viewer(role=Role.CUSTOMER_MEMBER, partner_id=1, customer_id=1)
    partner = Viewer(role=Role.PARTNER_MEMBER, partner_id=1)
    assert [pricing.may_see_prices(customer, t) for t in (hidden, credits, shown)] == [False, False, True]
    assert all(pricing.may_see_prices(partner, t) for t in (hidden, credits, shown))
    assert all(pricing.may_see_prices(Viewer.system(), t) for t in (hidden, credits, shown))
