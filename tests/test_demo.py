"""Demo mode (seed 001): a demo customer gets sample data (a month of usage over every unit type and several case
types, campaigns, wallet history, credits), limited features (no API keys, emails only to the outbox folder), is
reset to exactly its sample state by the nightly job (once a night, whoever runs it), with the books balanced and
the partner's pool and revenue untouched; `partnerdesk seed-demo` keeps its printed logins working."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain.accounts.models import User
from domain.billing.read import pool_states
from domain.customers.models import Customer
from domain.demo.models import DemoState
from domain.demo.services import reset_demo, reset_demos
from domain.ledger import services as ledger
from domain.ledger.models import Currency
from domain.ledger.services import verify
from tests.conftest import GQL, Factory, Tenant, gid, run_cli
from tests.mailbox import run_jobs, smtp_server

SET = """mutation($i: CustomerDemoModeSetInput!) { customerDemoModeSet(input: $i) {
  demo { enabled lastResetAt nextResetAt } customer { id } errors { field code message } } }"""
STATE = """query($id: ID!, $from: Date!, $to: Date!) {
  customer(id: $id) {
    demo { enabled lastResetAt nextResetAt }
    features { apiAccess aiCreditsEnabled showPricing }
    credits { available used assigned }
    wallet { balance { amount } refills(first: 20) { totalCount nodes { amount { amount } reference } } }
    campaigns(first: 20) { nodes { name status } }
    billing { billingMode }
    serviceState
  }
  usageSummary(customerId: $id, from: $from, to: $to) { unitType quantity cost { amount } }
  usageEvents(customerId: $id, first: 1) { totalCount }
  contactsHealed(customerId: $id, first: 20) { totalCount nodes { externalId newNumber } }
}"""
RECORD = """mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted errors { code } } }"""


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    return await factory.tenant(customers=2)


async def demo_on(gql: GQL, token: str, customer: Customer, enabled: bool = True) -> dict[str, Any]:
    data = await gql(SET, {"i": {"customerId": gid("Customer", customer.id), "enabled": enabled}}, token)
    return data["customerDemoModeSet"]


async def state_of(gql: GQL, token: str, customer: Customer) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    variables = {"id": gid("Customer", customer.id), "from": str(today - timedelta(days=40)), "to": str(today)}
    return await gql(STATE, variables, token)


def sample_part(state: dict[str, Any]) -> dict[str, Any]:
    """What a reset must bring back (times move on)."""
    customer = {k: v for k, v in state["customer"].items() if k != "demo"}
    return {**state, "customer": customer}


async def test_a_demo_customer_gets_sample_data_and_limited_features(gql: GQL, tenant: Tenant) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    pool_before = (await pool_states([tenant.partner.id]))[tenant.partner.id]
    # when
    payload = await demo_on(gql, staff, customer)
    # then
    assert payload["errors"] == [] and payload["demo"]["enabled"] is True
    assert payload["demo"]["nextResetAt"] > payload["demo"]["lastResetAt"]
    state = await state_of(gql, staff, customer)
    units = {row["unitType"] for row in state["usageSummary"]}
    assert units == {"VOICE_MINUTES", "SMS_SEGMENTS", "CHAT_TURNS", "EMAILS", "PHONE_NUMBER_MONTHS", "STORAGE_MB"}
    assert state["usageEvents"]["totalCount"] > 250
    healed = state["contactsHealed"]  # eight confirmed over the month, the one flagged wrong left out
    assert healed["totalCount"] == 7 and "demo-patient-008" not in {n["externalId"] for n in healed["nodes"]}
    case_types = {
        e.case_type
        for e in await _events(customer)  # several case types over a month
    }
    assert len(case_types) >= 3
    c = state["customer"]
    assert c["features"] == {"apiAccess": False, "aiCreditsEnabled": True, "showPricing": False}
    assert Decimal(c["credits"]["assigned"]) == 20_000 and Decimal(c["credits"]["used"]) > 0
    assert [r["reference"] for r in c["wallet"]["refills"]["nodes"]] == ["DEMO-8", "DEMO-18", "DEMO-28"]
    assert Decimal(c["wallet"]["balance"]["amount"]) == Decimal("550.00")
    assert [x["name"] for x in c["campaigns"]["nodes"]] == [
        "Spring outreach",
        "Missed-call follow-up",
        "Renewal reminders",
    ]
    # the partner's own credit pool is not touched, and the books balance
    assert (await pool_states([tenant.partner.id]))[tenant.partner.id] == pool_before
    assert (await verify())[1] == []
    # no API keys for a demo
    key = await gql(
        """mutation($i: ApiKeyCreateInput!) { apiKeyCreate(input: $i) { secret errors { field code } } }""",
        {"i": {"customerId": gid("Customer", customer.id), "name": "k", "permissions": ["READ"]}},
        staff,
    )
    assert key["apiKeyCreate"]["errors"] == [{"field": "customerId", "code": "NOT_ELIGIBLE"}]


async def _events(customer: Customer) -> list[Any]:
    from domain.usage.models import UsageEvent

    return await UsageEvent.filter(customer_id=customer.id)


async def test_a_reset_restores_the_sample_state(gql: GQL, tenant: Tenant) -> None:
    # given: a demo customer, as laid
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    revenue_before = [await ledger.revenue_balance(c, tenant.partner.id) for c in Currency]
    await demo_on(gql, staff, customer)
    laid = await state_of(gql, staff, customer)
    # when: the demo is used (more usage, a refill, a new campaign)
    now = datetime.now(UTC).isoformat()
    events = [
        {
            "idempotencyKey": uuid.uuid4().hex,
            "customerId": gid("Customer", customer.id),
            "unitType": "VOICE_MINUTES",
            "quantity": "500",
            "occurredAt": now,
        }
    ]
    assert (await gql(RECORD, {"i": {"events": events}}, staff))["usageRecord"]["accepted"] == 1
    await gql(
        """mutation($i: WalletRefillInput!) { walletRefill(input: $i) { errors { code } } }""",
        {"i": {"customerId": gid("Customer", customer.id), "amount": "75.00", "idempotencyKey": "r1"}},
        staff,
    )
    await gql(
        """mutation($i: CampaignCreateInput!) { campaignCreate(input: $i) { errors { code } } }""",
        {"i": {"customerId": gid("Customer", customer.id), "name": "Extra"}},
        staff,
    )
    assert sample_part(await state_of(gql, staff, customer)) != sample_part(laid)
    # when: the nightly reset runs
    assert await reset_demo(customer.id, force=True)
    # then: the sample state again, the books balanced
    after = await state_of(gql, staff, customer)
    assert sample_part(after) == sample_part(laid)
    assert after["customer"]["demo"]["lastResetAt"] > laid["customer"]["demo"]["lastResetAt"]
    assert (await verify())[1] == []
    # and switching demo mode off wipes it
    off = await demo_on(gql, staff, customer, enabled=False)
    assert off["demo"] == {"enabled": False, "lastResetAt": None, "nextResetAt": None}
    cleared = await state_of(gql, staff, customer)
    assert cleared["usageEvents"]["totalCount"] == 0 and cleared["customer"]["wallet"]["refills"]["totalCount"] == 0
    assert (await verify())[1] == []
    # the demo's usage never counts as the partner's revenue
    assert [await ledger.revenue_balance(c, tenant.partner.id) for c in Currency] == revenue_before


async def test_the_nightly_job_resets_each_demo_once_a_night(gql: GQL, tenant: Tenant) -> None:
    # given: one demo customer, one regular
    staff = await gql.login(tenant.owner.email)
    demo, regular = tenant.customers
    await demo_on(gql, staff, demo)
    laid_at = (await DemoState.get(customer_id=demo.id)).last_reset_at
    assert laid_at is not None
    # when: the job runs again the same night, then after the next midnight (twice)
    same_night = await reset_demos(laid_at + timedelta(minutes=5))
    next_day = datetime.combine(laid_at.date() + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=1)
    first, second = await reset_demos(next_day), await reset_demos(next_day + timedelta(minutes=1))
    # then
    assert (same_night, first, second) == (0, 1, 0)
    assert (await DemoState.get(customer_id=demo.id)).last_reset_at == next_day
    assert not await DemoState.filter(customer_id=regular.id).exists()


async def test_a_demo_customers_emails_stay_in_the_outbox_folder(
    gql: GQL, app: Any, factory: Factory, tenant: Tenant, tmp_path: Path
) -> None:
    # given: a real SMTP server, and a demo customer next to a regular one (both on a package with a team)
    await factory.with_portal(tenant)
    staff = await gql.login(tenant.owner.email)
    demo, regular = tenant.customers
    await demo_on(gql, staff, demo)
    outbox = tmp_path / "outbox"
    with smtp_server(outbox) as mailbox:
        # when: each invites someone
        for customer, email in ((demo, "demo.guest@example.com"), (regular, "real.guest@example.com")):
            invited = await gql(
                "mutation($i: TeamMemberInviteInput!) { teamMemberInvite(input: $i) { errors { code message } } }",
                {"i": {"customerId": gid("Customer", customer.id), "email": email}},
                staff,
            )
            assert invited["teamMemberInvite"]["errors"] == [], (email, invited)
        await run_jobs(app)
        # then: only the regular customer's email went over SMTP; the demo's is a file in the outbox folder
        assert [m["To"] for m in mailbox.messages] == ["real.guest@example.com"]
    [written] = list(outbox.iterdir())
    assert b"demo.guest@example.com" in written.read_bytes()


async def test_who_may_switch_demo_mode(gql: GQL, factory: Factory, tenant: Tenant) -> None:
    # given
    customer = tenant.customers[0]
    customer_admin = await gql.login(tenant.admins[0].email)
    outsider = await gql.login((await factory.tenant(customers=0)).owner.email)
    # when
    by_customer = await demo_on(gql, customer_admin, customer)
    by_outsider = await demo_on(gql, outsider, customer)
    seen_by_outsider = await gql(
        "query($id: ID!) { customer(id: $id) { demo { enabled } } }", {"id": gid("Customer", customer.id)}, outsider
    )
    # then
    assert [(e["field"], e["code"]) for e in by_customer["errors"]] == [(None, "FORBIDDEN")]
    assert [(e["field"], e["code"]) for e in by_outsider["errors"]] == [("customerId", "NOT_FOUND")]
    assert seen_by_outsider["customer"] is None
    assert not await DemoState.exists()


async def test_seed_demo_has_a_demo_customer_and_keeps_its_logins_working(gql: GQL) -> None:
    # given: the demo data
    first = run_cli("seed-demo")
    assert "sunnydemo.admin@example.com" in first.stdout and "(demo mode)" in first.stdout
    customer = await Customer.get(name="Sunny Smiles Demo")
    assert (await DemoState.get(customer_id=customer.id)).enabled
    # when: someone changes a printed login's password and the seed runs again
    token = await gql.login("bluebird.admin@example.com", "Demo-pass-1")
    changed = await gql(
        """mutation($i: PasswordChangeInput!) { passwordChange(input: $i) { errors { code } } }""",
        {
            "i": {
                "currentPassword": "Demo-pass-1",
                "newPassword": "Other-pass-2",
                "newPasswordConfirmation": "Other-pass-2",
            }
        },
        token,
    )
    assert changed["passwordChange"]["errors"] == []
    again = run_cli("seed-demo")
    # then: it says so and the printed password works again
    line = next(x for x in again.stdout.splitlines() if "bluebird.admin@example.com" in x)
    assert "password reset" in line
    assert await gql.login("bluebird.admin@example.com", "Demo-pass-1")
    assert await User.filter(email_key="sunnydemo.admin@example.com").count() == 1
    assert await Customer.filter(name="Sunny Smiles Demo").count() == 1
    assert run_cli("ledger", "verify").returncode == 0
    assert date.today()  # the demo's dates are relative to today
