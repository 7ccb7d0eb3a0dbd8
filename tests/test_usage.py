"""Metering: rating, charging per billing mode, duplicates, bad events, holds, the spending cap, summaries, the
ingestion endpoint and tenancy."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from domain.accounts.models import Role
from domain.campaigns.models import Campaign
from domain.ledger import services as ledger
from domain.ledger.models import Currency, LedgerAccount, TransferKind
from domain.usage import holds, store
from domain.usage import services as usage
from domain.usage.models import CapCrossing, PhoneNumber, UsageEvent, UsageHold, UsageRollup
from tests.conftest import GQL, IS_POSTGRES, Factory, gid
from tests.funding import fund_credits, fund_wallet

RECORD = """mutation($i: UsageRecordInput!) { usageRecord(input: $i) {
  accepted duplicates rejected { index code field message } errors { code message } } }"""
AUTHORIZE = """mutation($i: UsageAuthorizeInput!) { usageAuthorize(input: $i) {
  hold { id status amount { amount } credits expiresAt } errors { code message } } }"""
CAP = """mutation($i: SpendingCapUpdateInput!) { spendingCapUpdate(input: $i) {
  spendingCap { cap { amount } spentThisMonth { amount } status } errors { field code } } }"""
PREFS = """mutation($i: BillingPreferencesUpdateInput!) { billingPreferencesUpdate(input: $i) { errors { code } } }"""


def key() -> str:
    return uuid.uuid4().hex


def event(customer_id: int, unit: str = "SMS_SEGMENTS", quantity: str = "1", **extra: Any) -> dict[str, Any]:
    return {
        "idempotencyKey": extra.pop("idempotencyKey", key()),
        "customerId": gid("Customer", customer_id),
        "unitType": unit,
        "quantity": quantity,
        "occurredAt": extra.pop("occurredAt", datetime.now(UTC).isoformat()),
        **extra,
    }


async def _tenant(gql: GQL, factory: Factory) -> tuple[Any, str]:
    tenant = await factory.tenant(customers=2)
    admin = await factory.admin()
    return tenant, await gql.login(admin.email)


async def balance(ref: Any) -> Decimal:
    return await ledger.balance_of(ref)


# ---------------------------------------------------------------- rating and charging


@pytest.mark.parametrize(
    ("unit", "quantity", "cost"),
    [
        ("SMS_SEGMENTS", "3", "0.03"),
        ("VOICE_MINUTES", "2.5", "0.15"),
        ("CHAT_TURNS", "4", "0.04"),
        ("EMAILS", "10", "0"),
        ("PHONE_NUMBER_MONTHS", "1", "2"),
        ("STORAGE_MB", "1024", "8"),
    ],
)
async def test_default_rates_per_unit(gql: GQL, factory: Factory, unit: str, quantity: str, cost: str) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    data = await gql(RECORD, {"i": {"events": [event(customer.id, unit, quantity)]}}, token)
    assert data["usageRecord"]["accepted"] == 1
    row = await UsageEvent.get(customer_id=customer.id)
    assert row.cost == Decimal(cost)


async def test_wallet_mode_debits_the_wallet(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "1.00")
    await gql(RECORD, {"i": {"events": [event(customer.id, "VOICE_MINUTES", "10")]}}, token)
    assert await balance(ledger.customer_wallet(customer.id, customer.partner_id)) == Decimal("0.40")
    row = await UsageEvent.get(customer_id=customer.id)
    assert (row.paid, row.funding) == (True, "WALLET")


async def test_credits_mode_burns_credits(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_credits(customer, "100")
    await gql(RECORD, {"i": {"events": [event(customer.id, "VOICE_MINUTES", "5")]}}, token)
    assert await balance(ledger.customer_credits(customer.id, customer.partner_id)) == Decimal(70)
    credits = await gql(
        "query($id: ID!) { customer(id: $id) { credits { available used } } }",
        {"id": gid("Customer", customer.id)},
        token,
    )
    assert {k: Decimal(v) for k, v in credits["customer"]["credits"].items()} == {"available": 70, "used": 30}


async def test_invoice_mode_accrues_unpaid(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await gql(RECORD, {"i": {"events": [event(customer.id, "SMS_SEGMENTS", "7")]}}, token)
    assert await balance(ledger.customer_invoice(customer.id, customer.partner_id)) == Decimal("-0.07")
    row = await UsageEvent.get(customer_id=customer.id)
    assert (row.paid, row.funding) == (False, "INVOICE")


async def test_wallet_shortfall_records_the_rest_unpaid(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "0.10")
    events = [event(customer.id, "VOICE_MINUTES", "1") for _ in range(3)]  # $0.06 each
    data = await gql(RECORD, {"i": {"events": events}}, token)
    assert data["usageRecord"]["accepted"] == 3
    rows = await UsageEvent.filter(customer_id=customer.id).order_by("id")
    assert [r.paid for r in rows] == [True, False, False]
    assert await balance(ledger.customer_wallet(customer.id, customer.partner_id)) == Decimal("0.04")
    assert await balance(ledger.customer_invoice(customer.id, customer.partner_id)) == Decimal("-0.12")


async def test_rate_card_change_applies_from_that_moment(gql: GQL, factory: Factory) -> None:
    # given an SMS sent an hour ago at the default price
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    # when the partner marks SMS up to 2 cents now
    data = await gql(
        """mutation($i: PartnerUpdateInput!) { partnerUpdate(input: $i) {
        partner { rateCard { unitType price { amount } creditPrice isDefault } } errors { field code } } }""",
        {
            "i": {
                "partnerId": gid("Partner", tenant.partner.id),
                "rateCard": [{"unitType": "SMS_SEGMENTS", "price": "0.02", "creditPrice": "2"}],
            }
        },
        staff,
    )
    rates = {r["unitType"]: r for r in data["partnerUpdate"]["partner"]["rateCard"]}
    assert rates["SMS_SEGMENTS"]["price"] == {"amount": "0.02"} and not rates["SMS_SEGMENTS"]["isDefault"]
    assert rates["VOICE_MINUTES"]["isDefault"]
    await gql(RECORD, {"i": {"events": [event(customer.id, occurredAt=earlier), event(customer.id)]}}, token)
    # then the late event keeps the old price and the new one pays the new price
    costs = sorted(r.cost for r in await UsageEvent.filter(customer_id=customer.id))
    assert costs == [Decimal("0.01"), Decimal("0.02")]


# ---------------------------------------------------------------- duplicates and bad events


async def test_duplicates_are_accepted_once_and_charged_once(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "10")
    one = event(customer.id, "VOICE_MINUTES", "1")
    first = await gql(RECORD, {"i": {"events": [one, one]}}, token)
    again = await gql(RECORD, {"i": {"events": [one]}}, token)
    assert (first["usageRecord"]["accepted"], first["usageRecord"]["duplicates"]) == (1, 1)
    assert (again["usageRecord"]["accepted"], again["usageRecord"]["duplicates"]) == (0, 1)
    assert await UsageEvent.filter(customer_id=customer.id).count() == 1
    assert await balance(ledger.customer_wallet(customer.id, customer.partner_id)) == Decimal("9.94")


async def test_a_batch_with_bad_events_keeps_the_good_ones(gql: GQL, factory: Factory) -> None:
    # given
    tenant, token = await _tenant(gql, factory)
    other = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(other.owner.email)  # partner B's staff must not record for partner A
    now = datetime.now(UTC)
    events = [
        event(customer.id),
        event(customer.id, occurredAt=(now - timedelta(days=36)).isoformat()),
        event(customer.id, occurredAt=(now + timedelta(hours=1)).isoformat()),
        event(customer.id, quantity="-1"),
        event(customer.id, quantity="0"),
        {**event(customer.id), "customerId": "garbage"},
        event(customer.id, idempotencyKey="has space"),
        event(customer.id, holdId=gid("UsageHold", 999)),
        event(customer.id, caseType="x" * 65),
        event(customer.id, unit="VOICE_MINUTES", quantity="2"),
    ]
    # when
    data = (await gql(RECORD, {"i": {"events": events}}, token))["usageRecord"]
    foreign = (await gql(RECORD, {"i": {"events": [event(customer.id)]}}, staff))["usageRecord"]
    # then
    assert (data["accepted"], data["duplicates"]) == (2, 0)
    assert [(r["index"], r["code"]) for r in data["rejected"]] == [
        (1, "EVENT_TOO_OLD"),
        (2, "EVENT_IN_FUTURE"),
        (3, "INVALID"),
        (4, "INVALID"),
        (5, "NOT_FOUND"),
        (6, "INVALID"),
        (7, "NOT_FOUND"),
        (8, "INVALID"),
    ]
    assert await UsageEvent.filter(customer_id=customer.id).count() == 2
    assert [(r["index"], r["code"]) for r in foreign["rejected"]] == [(0, "NOT_FOUND")]


async def test_more_than_1000_events_is_refused(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    events = [event(tenant.customers[0].id) for _ in range(1001)]
    data = await gql(RECORD, {"i": {"events": events}}, token)
    assert [e["code"] for e in data["usageRecord"]["errors"]] == ["INVALID"]
    assert await UsageEvent.all().count() == 0


async def test_customer_users_cannot_record_usage(gql: GQL, factory: Factory) -> None:
    tenant, _ = await _tenant(gql, factory)
    token = await gql.login(tenant.admins[0].email)
    data = await gql(RECORD, {"i": {"events": [event(tenant.customers[0].id)]}}, token)
    assert [e["code"] for e in data["usageRecord"]["errors"]] == ["FORBIDDEN"]


# ---------------------------------------------------------------- holds and the cap


async def _authorize(
    gql: GQL, token: str, customer_id: int, quantity: str = "1", unit: str = "VOICE_MINUTES", k: str | None = None
) -> dict[str, Any]:
    data = await gql(
        AUTHORIZE,
        {
            "i": {
                "customerId": gid("Customer", customer_id),
                "unitType": unit,
                "estimatedQuantity": quantity,
                "idempotencyKey": k or key(),
            }
        },
        token,
    )
    return data["usageAuthorize"]


async def test_authorize_refusals(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    wallet_customer, credit_customer = tenant.customers
    await fund_wallet(wallet_customer, "0.10")
    await fund_credits(credit_customer, "5")
    assert (await _authorize(gql, token, wallet_customer.id, "1"))["hold"]["status"] == "ACTIVE"
    assert [e["code"] for e in (await _authorize(gql, token, wallet_customer.id, "1"))["errors"]] == [
        "INSUFFICIENT_BALANCE"
    ]
    assert [e["code"] for e in (await _authorize(gql, token, credit_customer.id, "1"))["errors"]] == [
        "INSUFFICIENT_CREDITS"
    ]
    await gql(CAP, {"i": {"customerId": gid("Customer", credit_customer.id), "cap": "0.01"}}, token)
    await fund_credits(credit_customer, "100")
    assert [e["code"] for e in (await _authorize(gql, token, credit_customer.id, "1"))["errors"]] == ["CAP_REACHED"]


async def test_expired_holds_stop_counting(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "0.06")
    first = await _authorize(gql, token, customer.id, "1")
    assert first["hold"] is not None
    assert [e["code"] for e in (await _authorize(gql, token, customer.id, "1"))["errors"]] == ["INSUFFICIENT_BALANCE"]
    await UsageHold.all().update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await _authorize(gql, token, customer.id, "1"))["hold"] is not None
    assert await holds.expire_holds() == 1


async def test_recording_against_a_hold_consumes_it(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "0.06")
    hold = (await _authorize(gql, token, customer.id, "1"))["hold"]
    data = await gql(RECORD, {"i": {"events": [event(customer.id, "VOICE_MINUTES", "1", holdId=hold["id"])]}}, token)
    assert data["usageRecord"]["accepted"] == 1
    row = await UsageEvent.get(customer_id=customer.id)
    assert row.paid  # the hold's reservation paid for it
    assert (await UsageHold.get(id=row.hold_id)).status == "CONSUMED"
    released = await gql(
        "mutation($i: UsageHoldReleaseInput!) { usageHoldRelease(input: $i) { hold { status } } }",
        {"i": {"holdId": hold["id"]}},
        token,
    )
    assert released["usageHoldRelease"]["hold"]["status"] == "CONSUMED"


async def test_a_repeated_authorization_answers_exactly_as_the_first(gql: GQL, factory: Factory) -> None:
    # given a hold placed under a key (the first answer shows the row as written, never read back)
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "5")
    k = key()
    query = """mutation($i: UsageAuthorizeInput!) { usageAuthorize(input: $i) { hold {
      id unitType estimatedQuantity credits funding status expiresAt createdAt amount { amount } } errors { code } } }"""
    variables = {
        "i": {
            "customerId": gid("Customer", customer.id),
            "unitType": "SMS_SEGMENTS",
            "estimatedQuantity": "3",
            "idempotencyKey": k,
        }
    }
    first = await gql(query, variables, token)
    # when the same request is sent again
    again = await gql(query, variables, token)
    # then it answers with the same hold, field for field (quantities at the column's scale both times)
    assert first["usageAuthorize"]["errors"] == []
    assert again["usageAuthorize"]["hold"] == first["usageAuthorize"]["hold"]
    assert first["usageAuthorize"]["hold"]["estimatedQuantity"] == "3.000000"
    assert await UsageHold.filter(customer_id=customer.id).count() == 1


async def test_cap_pauses_and_raising_it_resumes_only_cap_paused_campaigns(gql: GQL, factory: Factory) -> None:
    # given a customer with a $1 cap, one running and one manually paused campaign
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    staff = await gql.login(tenant.owner.email)
    await gql(CAP, {"i": {"customerId": cid, "cap": "1.00"}}, staff)
    for name in ("Spring promo", "Manual"):
        await gql(
            "mutation($i: CampaignCreateInput!) { campaignCreate(input: $i) { campaign { id } } }",
            {"i": {"customerId": cid, "name": name}},
            staff,
        )
    await Campaign.filter(name="Manual").update(status="PAUSED", pause_reason="MANUAL")
    # when usage reaches 80% and then the cap
    await gql(RECORD, {"i": {"events": [event(customer.id, "VOICE_MINUTES", "14")]}}, token)  # $0.84
    state = await gql(
        "query($id: ID!) { customer(id: $id) { serviceState spendingCap { status } } }", {"id": cid}, staff
    )
    assert state["customer"] == {"serviceState": "ACTIVE", "spendingCap": {"status": "WARNING"}}
    await gql(RECORD, {"i": {"events": [event(customer.id, "VOICE_MINUTES", "3")]}}, token)  # $1.02
    # then the service is paused, the running campaign paused by the cap, authorizations refused
    state = await gql(
        "query($id: ID!) { customer(id: $id) { serviceState spendingCap { status spentThisMonth { amount } }"
        " campaigns { nodes { name status pauseReason } } } }",
        {"id": cid},
        staff,
    )
    assert state["customer"]["serviceState"] == "PAUSED_CAP"
    assert state["customer"]["spendingCap"] == {"status": "REACHED", "spentThisMonth": {"amount": "1.02"}}
    assert {c["name"]: (c["status"], c["pauseReason"]) for c in state["customer"]["campaigns"]["nodes"]} == {
        "Spring promo": ("PAUSED", "CAP"),
        "Manual": ("PAUSED", "MANUAL"),
    }
    assert [e["code"] for e in (await _authorize(gql, token, customer.id))["errors"]] == ["SERVICE_PAUSED"]
    assert await CapCrossing.filter(customer_id=customer.id).count() == 2  # 80% and 100%, once each
    # when the cap is raised
    raised = await gql(CAP, {"i": {"customerId": cid, "cap": "5"}}, staff)
    assert raised["spendingCapUpdate"]["spendingCap"]["status"] == "UNDER"
    # then only the cap-paused campaign resumes
    state = await gql(
        "query($id: ID!) { customer(id: $id) { serviceState campaigns { nodes { name status } } } }", {"id": cid}, staff
    )
    assert state["customer"]["serviceState"] == "ACTIVE"
    assert {c["name"]: c["status"] for c in state["customer"]["campaigns"]["nodes"]} == {
        "Spring promo": "RUNNING",
        "Manual": "PAUSED",
    }
    actions = [
        e["action"]
        for e in (await gql("{ auditEvents(filter: {type: BILLING}) { nodes { action } } }", token=staff))[
            "auditEvents"
        ]["nodes"]
    ]
    assert "spending_cap.reached" in actions and "spending_cap.resumed" in actions
    # and removing a cap on a paused customer resumes too
    await gql(RECORD, {"i": {"events": [event(customer.id, "VOICE_MINUTES", "100")]}}, token)
    assert (await Campaign.get(name="Spring promo")).status == "PAUSED"
    await gql(CAP, {"i": {"customerId": cid, "cap": None}}, staff)
    assert (await Campaign.get(name="Spring promo")).status == "RUNNING"


async def test_spending_cap_projection(factory: Factory) -> None:
    from domain.billing.cap import projection

    assert projection(Decimal("10"), datetime(2026, 11, 10, tzinfo=UTC)) == Decimal("30.00")
    assert projection(Decimal("31"), datetime(2026, 12, 31, tzinfo=UTC)) == Decimal("31.00")


# ---------------------------------------------------------------- logs and summaries


async def test_usage_events_filters_and_summary_equals_detail(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    now = datetime.now(UTC)
    events = []
    for days_ago in (0, 1, 2):
        at = (now - timedelta(days=days_ago)).isoformat()
        events += [
            event(customer.id, "SMS_SEGMENTS", "2", occurredAt=at),
            event(customer.id, "VOICE_MINUTES", "1.5", occurredAt=at),
            event(customer.id, "EMAILS", "3", occurredAt=at),
        ]
    await gql(RECORD, {"i": {"events": events}}, token)
    detail = await gql(
        """query($id: ID!) { usageEvents(customerId: $id, first: 100) { totalCount
        nodes { unitType quantity cost { amount } paid occurredAt caseType } } }""",
        {"id": cid},
        token,
    )
    assert detail["usageEvents"]["totalCount"] == 9
    sms = await gql(
        """query($id: ID!) { usageEvents(customerId: $id, filter: {unitType: SMS_SEGMENTS, paid: false}) {
        totalCount } }""",
        {"id": cid},
        token,
    )
    assert sms["usageEvents"]["totalCount"] == 3
    since, until = (now - timedelta(days=2)).date(), now.date()
    for group in ("DAY", "MONTH", "UNIT_TYPE"):
        summary = await gql(
            """query($id: ID!, $from: Date!, $to: Date!, $g: UsageGroupBy!) {
            usageSummary(customerId: $id, from: $from, to: $to, groupBy: $g) { period unitType quantity cost { amount } } }""",
            {"id": cid, "from": since.isoformat(), "to": until.isoformat(), "g": group},
            token,
        )
        rows = summary["usageSummary"]
        for unit in ("SMS_SEGMENTS", "VOICE_MINUTES", "EMAILS"):
            detail_rows = [n for n in detail["usageEvents"]["nodes"] if n["unitType"] == unit]
            assert sum(Decimal(r["quantity"]) for r in rows if r["unitType"] == unit) == sum(
                Decimal(n["quantity"]) for n in detail_rows
            )
            assert sum(Decimal(r["cost"]["amount"]) for r in rows if r["unitType"] == unit) == sum(
                Decimal(n["cost"]["amount"]) for n in detail_rows
            )
        if group == "UNIT_TYPE":
            assert all(r["period"] is None for r in rows) and len(rows) == 3
        if group == "DAY":
            assert len({r["period"] for r in rows}) == 3
    assert await UsageRollup.filter(customer_id=customer.id).count() == 9


async def test_usage_reads_are_tenant_scoped(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    other = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await gql(RECORD, {"i": {"events": [event(customer.id)]}}, token)
    for viewer_token in (await gql.login(other.owner.email), await gql.login(tenant.admins[1].email)):
        response = await gql.raw(
            "query($id: ID!) { usageEvents(customerId: $id) { totalCount } }",
            {"id": gid("Customer", customer.id)},
            viewer_token,
        )
        assert response.json()["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "customerId"}
        response = await gql.raw(
            'query($id: ID!) { usageSummary(customerId: $id, from: "2026-01-01", to: "2026-12-31")'
            " { cost { amount } } }",
            {"id": gid("Customer", customer.id)},
            viewer_token,
        )
        assert "errors" in response.json()
        node = await gql(
            "query($id: ID!) { node(id: $id) { id } }",
            {"id": gid("UsageEvent", (await UsageEvent.first()).id)},
            viewer_token,
        )
        assert node["node"] is None
        cap = await gql(CAP, {"i": {"customerId": gid("Customer", customer.id), "cap": "1"}}, viewer_token)
        assert [e["code"] for e in cap["spendingCapUpdate"]["errors"]] == ["NOT_FOUND"]
    own = await gql.login(tenant.admins[0].email)
    mine = await gql(
        "query($id: ID!) { usageEvents(customerId: $id) { totalCount } }", {"id": gid("Customer", customer.id)}, own
    )
    assert mine["usageEvents"]["totalCount"] == 1


# ---------------------------------------------------------------- phone numbers


async def test_phone_numbers_are_charged_once_per_month(factory: Factory) -> None:
    partner, _ = await factory.partner()
    customer, _ = await factory.customer(partner)
    await PhoneNumber.create(customer_id=customer.id, number="+15550100")
    await PhoneNumber.create(customer_id=customer.id, number="+15550101", active=False)
    first = await usage.charge_phone_numbers()
    second = await usage.charge_phone_numbers()
    assert (first.accepted, second.accepted, second.duplicates) == (1, 0, 1)
    row = await UsageEvent.get(customer_id=customer.id)
    assert (row.unit_type, row.cost) == ("PHONE_NUMBER_MONTHS", Decimal(2))


# ---------------------------------------------------------------- ingestion endpoint


async def test_ingestion_endpoint_plain_and_cloudevents(client, gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    auth = {"authorization": f"Bearer {token}"}
    plain = [event(customer.id), event(customer.id, quantity="nope")]
    response = await client.post("/v1/usage/events", json=plain, headers=auth)
    assert response.status_code == 200
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 1, "code": "INVALID", "message": "Not a decimal number.", "field": "quantity"}],
    }
    cloud = [
        {
            "specversion": "1.0",
            "id": key(),
            "source": "pbx",
            "type": "usage",
            "time": datetime.now(UTC).isoformat(),
            "subject": gid("Customer", customer.id),
            "data": {"unitType": "VOICE_MINUTES", "quantity": 2.5},
        }
    ]
    response = await client.post(
        "/v1/usage/events",
        content=json.dumps(cloud),
        headers={**auth, "content-type": "application/cloudevents-batch+json"},
    )
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert (await UsageEvent.get(unit_type="VOICE_MINUTES")).quantity == Decimal("2.5")


async def test_ingestion_endpoint_errors(client, gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    assert (await client.post("/v1/usage/events", content=b"[{", headers=auth)).status_code == 400
    assert (await client.post("/v1/usage/events", content=b'{"a": 1}', headers=auth)).status_code == 400
    too_many = [event(tenant.customers[0].id) for _ in range(1001)]
    assert (await client.post("/v1/usage/events", json=too_many, headers=auth)).status_code == 413
    huge = b"[" + b" " * 1_000_001 + b"]"
    assert (await client.post("/v1/usage/events", content=huge, headers=auth)).status_code == 413
    assert (await client.post("/v1/usage/events", json=[])).status_code == 401
    assert (await client.post("/v1/usage/events", json=[], headers={"authorization": "Bearer nope"})).status_code == 401
    customer_token = await gql.login(tenant.admins[0].email)
    response = await client.post("/v1/usage/events", json=[], headers={"authorization": f"Bearer {customer_token}"})
    assert response.status_code == 403
    assert await UsageEvent.all().count() == 0


# ---------------------------------------------------------------- PostgreSQL: concurrency and partitions


@pytest.mark.postgres
async def test_32_concurrent_authorizations_against_room_for_10(gql: GQL, factory: Factory) -> None:
    # given a cap of $0.60 and voice at $0.06/min: room for exactly 10 one-minute holds
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await gql(CAP, {"i": {"customerId": gid("Customer", customer.id), "cap": "0.60"}}, token)
    # when
    results = await asyncio.gather(*[_authorize(gql, token, customer.id, "1") for _ in range(32)])
    # then
    granted = [r for r in results if r["hold"]]
    assert len(granted) == 10
    assert {e["code"] for r in results for e in r["errors"]} == {"CAP_REACHED"}
    assert await UsageHold.filter(customer_id=customer.id, status="ACTIVE").count() == 10


@pytest.mark.postgres
async def test_concurrent_batches_with_overlapping_keys_charge_once(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "100")
    events = [event(customer.id, "VOICE_MINUTES", "1") for _ in range(50)]
    results = await asyncio.gather(*[gql(RECORD, {"i": {"events": events}}, token) for _ in range(8)])
    assert sum(r["usageRecord"]["accepted"] for r in results) == 50
    assert sum(r["usageRecord"]["duplicates"] for r in results) == 350
    assert await balance(ledger.customer_wallet(customer.id, customer.partner_id)) == Decimal(97)
    assert (await ledger.verify())[1] == []


@pytest.mark.postgres
async def test_usage_events_are_partitioned_by_month(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    await gql(RECORD, {"i": {"events": [event(tenant.customers[0].id)]}}, token)
    conn = connections.get("default")
    parent = await conn.execute_query_dict(
        "SELECT partstrat::text AS partstrat FROM pg_partitioned_table WHERE partrelid = 'usage_event'::regclass"
    )
    assert parent == [{"partstrat": "r"}]
    month = date.today().replace(day=1)
    children = await conn.execute_query_dict(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'usage_event'::regclass"
    )
    assert f"usage_event_{month:%Y_%m}" in {c["relname"] for c in children}


async def test_sql_statements_per_batch_do_not_grow_with_batch_size(gql: GQL, factory: Factory) -> None:
    from tests.conftest import count_queries

    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "1000")
    await gql(RECORD, {"i": {"events": [event(customer.id)]}}, token)  # warm up partitions
    counts = []
    for n in (10, 200):
        with count_queries() as counter:
            await gql(RECORD, {"i": {"events": [event(customer.id) for _ in range(n)]}}, token)
        counts.append(len(counter.queries))
    if IS_POSTGRES:
        assert counts[0] == counts[1], counts
    else:  # SQLite upserts rollups row by row, but not event by event
        assert counts[1] - counts[0] < 10, counts
    assert await LedgerAccount.all().count() > 0
    _ = Role


async def test_ingestion_keeps_fractional_metadata_exact(client, gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    body = json.dumps([event(tenant.customers[0].id, metadata={"ratio": 0.25, "nested": {"x": 1.5}})])
    response = await client.post(
        "/v1/usage/events",
        content=body,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    row = await UsageEvent.get(customer_id=tenant.customers[0].id)
    assert row.metadata == {"ratio": 0.25, "nested": {"x": 1.5}}


@pytest.mark.postgres
async def test_concurrent_batches_across_interleaved_partners_do_not_deadlock(gql: GQL, factory: Factory) -> None:
    # given customers of two partners whose ids interleave
    a_partner, _ = await factory.partner()
    b_partner, _ = await factory.partner()
    customers = []
    for _ in range(3):
        customers.append((await factory.customer(a_partner))[0])
        customers.append((await factory.customer(b_partner))[0])
    admin = await factory.admin()
    token = await gql.login(admin.email)

    # when batches spanning both partners, in opposite orders, race
    def batch(order: list[Any]) -> dict[str, Any]:
        return {"i": {"events": [event(c.id, "VOICE_MINUTES", "1") for c in order]}}

    results = await asyncio.gather(
        *[gql(RECORD, batch(customers if i % 2 else list(reversed(customers))), token) for i in range(8)]
    )
    # then every batch is accepted in full
    assert [r["usageRecord"]["accepted"] for r in results] == [6] * 8
    assert (await ledger.verify())[1] == []


# ---------------------------------------------------------------- hardening (issue 11)


@pytest.mark.postgres
async def test_holds_and_charges_racing_never_commit_more_than_the_wallet_holds(gql: GQL, factory: Factory) -> None:
    # given a wallet of $1.00 and SMS at $0.01 a segment
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "1.00")
    await store.ensure_partitions([store.month_start(datetime.now(UTC))])  # as the scheduler does ahead of time
    # when 15 authorizations of $0.10 race 15 recordings of $0.10
    authorizations = [_authorize(gql, token, customer.id, "10", "SMS_SEGMENTS") for _ in range(15)]
    recordings = [gql(RECORD, {"i": {"events": [event(customer.id, "SMS_SEGMENTS", "10")]}}, token) for _ in range(15)]
    await asyncio.gather(*[aw for pair in zip(authorizations, recordings, strict=True) for aw in pair])
    # then what was charged to the wallet and what is still held never exceed what the wallet had
    wallet = await balance(ledger.customer_wallet(customer.id, customer.partner_id))
    held = sum((h.amount for h in await UsageHold.filter(customer_id=customer.id, status="ACTIVE")), Decimal(0))
    assert wallet >= 0
    assert (Decimal("1.00") - wallet) + held <= Decimal("1.00"), (wallet, held)


async def _ingest(client: Any, token: str, body: bytes) -> Any:
    return await client.post(
        "/v1/usage/events",
        content=body,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )


async def test_each_bad_event_is_refused_alone_and_reads_stay_healthy(client, gql: GQL, factory: Factory) -> None:
    # given events the review saw fail whole batches with a plain-text 500, or poison later reads
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    cid = customer.id
    deep: dict[str, Any] = {}
    for _ in range(20):
        deep = {"d": deep}
    bad = [
        json.dumps(event(cid, caseType="in\u0000take")),
        json.dumps(event(cid, metadata={"note": "a\u0000b"})),
        json.dumps(event(cid, metadata={"ke\u0000y": 1})),
        json.dumps(event(cid, occurredAt="0001-01-01T00:00:00+14:00")),
        json.dumps(event(cid, occurredAt="9999-12-31T23:59:59-14:00")),
        json.dumps(event(cid, quantity="1e-9999999999")),
        json.dumps(event(cid, metadata=deep)),
        json.dumps(event(cid, metadata={"blob": "x" * 5000})),
        json.dumps(event(cid, metadata={"n": 1})).replace('{"n": 1}', '{"n": 1e5000}'),
        json.dumps(event(cid, metadata={"n": 1})).replace('{"n": 1}', '{"n": 1e-5000}'),
        json.dumps("not an event"),
        json.dumps(event(cid, occurredAt=1764500000)),
        json.dumps({k: v for k, v in event(cid).items() if k != "occurredAt"}),
    ]
    good = json.dumps(event(cid, metadata={"ratio": 0.25, "tags": ["a", {"b": None}]}))
    # when they arrive in one batch with a good event
    response = await _ingest(client, token, f"[{', '.join([*bad, good])}]".encode())
    # then each bad event is refused with a code on its field, the good one is recorded
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["code"], r["field"]) for r in body["rejected"]] == [
        (0, "INVALID", "caseType"),
        (1, "INVALID", "metadata"),
        (2, "INVALID", "metadata"),
        (3, "INVALID", "occurredAt"),
        (4, "INVALID", "occurredAt"),
        (5, "INVALID", "quantity"),
        (6, "INVALID", "metadata"),
        (7, "INVALID", "metadata"),
        (8, "INVALID", "metadata"),
        (9, "INVALID", "metadata"),
        (10, "INVALID", None),  # not an object at all
        (11, "INVALID", "occurredAt"),  # a number, not a timestamp
        (12, "REQUIRED", "occurredAt"),
    ]
    # and the customer's usage log still reads
    log = await gql(
        "query($id: ID!) { usageEvents(customerId: $id) { totalCount nodes { metadata caseType } } }",
        {"id": gid("Customer", cid)},
        token,
    )
    assert log["usageEvents"]["totalCount"] == 1
    assert log["usageEvents"]["nodes"][0]["metadata"] == {"ratio": 0.25, "tags": ["a", {"b": None}]}


async def test_usage_record_over_graphql_refuses_the_same_values(gql: GQL, factory: Factory) -> None:
    # given
    tenant, token = await _tenant(gql, factory)
    cid = tenant.customers[0].id
    events = [
        event(cid, caseType="in\u0000take"),
        event(cid, metadata={"n": 1e300 * 10}),  # JSON has no infinity: Python's encoder writes `Infinity`
        event(cid, holdId="not-a-hold"),
        event(cid),
    ]
    # when
    data = (await gql(RECORD, {"i": {"events": events}}, token))["usageRecord"]
    # then
    assert data["accepted"] == 1
    assert [(r["index"], r["code"], r["field"]) for r in data["rejected"]] == [
        (0, "INVALID", "caseType"),
        (1, "INVALID", "metadata"),
        (2, "NOT_FOUND", "holdId"),
    ]


async def test_a_time_with_no_utc_instant_is_not_a_datetime_over_graphql(gql: GQL, factory: Factory) -> None:
    # given an occurredAt that parses as ISO-8601 but lies before year 1 in UTC (a DateTime the scalar refuses, as it
    # refuses any malformed one: typed input fails before the batch is read; /v1/usage/events refuses it per event)
    tenant, token = await _tenant(gql, factory)
    events = [event(tenant.customers[0].id, occurredAt="0001-01-01T00:00:00+14:00")]
    # when
    response = await gql.raw(RECORD, {"i": {"events": events}}, token)
    # then a coded request error, nothing recorded
    assert response.status_code == 200
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["INVALID"]
    assert await UsageEvent.filter(customer_id=tenant.customers[0].id).count() == 0


async def test_an_unknown_hold_id_refuses_the_event_instead_of_ignoring_it(client, gql: GQL, factory: Factory) -> None:
    # given a wallet with an active hold
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    await fund_wallet(customer, "1.00")
    hold = (await _authorize(gql, token, customer.id, "1"))["hold"]
    # when events name a hold id that is not a hold's
    events = [event(customer.id, "VOICE_MINUTES", "1", holdId=h) for h in ("garbage", gid("Customer", customer.id))]
    response = await _ingest(client, token, json.dumps(events).encode())
    # then both are refused and nothing was charged or consumed
    assert response.json() == {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [
            {"index": 0, "code": "NOT_FOUND", "message": "Hold not found.", "field": "holdId"},
            {"index": 1, "code": "NOT_FOUND", "message": "Hold not found.", "field": "holdId"},
        ],
    }
    assert await UsageEvent.filter(customer_id=customer.id).count() == 0
    assert (await UsageHold.get(customer_id=customer.id)).status == "ACTIVE" and hold is not None


async def test_json_nested_too_deep_answers_a_coded_400(client, gql: GQL, factory: Factory) -> None:
    # given
    _, token = await _tenant(gql, factory)
    body = b"[" * 100_000 + b"]" * 100_000
    # when
    response = await _ingest(client, token, body)
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MALFORMED"


async def test_an_unexpected_failure_answers_json_with_the_request_id(
    client, gql: GQL, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a metering service that fails in a way nobody foresaw
    import server.ingest

    tenant, token = await _tenant(gql, factory)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(server.ingest, "usage_record", broken)
    # when
    response = await _ingest(client, token, json.dumps([event(tenant.customers[0].id)]).encode())
    # then the client gets JSON naming the request, never a plain-text 500 or the error itself
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "INTERNAL_SERVER_ERROR" and error["requestId"] == response.headers["x-request-id"]
    assert "boom" not in response.text


async def test_quantities_are_bounded_per_event_and_per_batch(client, gql: GQL, factory: Factory) -> None:
    # given a customer who reports absurd phone-number months (the review filled the partner's revenue with 49)
    tenant, token = await _tenant(gql, factory)
    noisy, sibling = tenant.customers
    other = await factory.tenant(customers=1)
    absurd = [event(noisy.id, "PHONE_NUMBER_MONTHS", "999999999999") for _ in range(49)]
    # when it sends them twice
    answers = [await _ingest(client, token, json.dumps(absurd).encode()) for _ in range(2)]
    # then every one is refused on its quantity, alone
    for response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["accepted"] == 0
        assert {(r["code"], r["field"]) for r in body["rejected"]} == {("INVALID", "quantity")}
        assert len(body["rejected"]) == 49
    # and a batch may carry at most 100,000 phone-number months per customer: the 101st thousand is refused alone
    big = [event(noisy.id, "PHONE_NUMBER_MONTHS", "1000") for _ in range(101)] + [event(sibling.id)]
    data = (await gql(RECORD, {"i": {"events": big}}, token))["usageRecord"]
    assert data["accepted"] == 101
    assert [(r["index"], r["code"], r["field"]) for r in data["rejected"]] == [(100, "LIMIT_EXCEEDED", "quantity")]
    # and siblings, and a platform batch mixing partners, keep recording
    mixed = [event(sibling.id, "PHONE_NUMBER_MONTHS", "1"), event(other.customers[0].id, "PHONE_NUMBER_MONTHS", "1")]
    assert (await _ingest(client, token, json.dumps(mixed).encode())).json()["accepted"] == 2
    assert (await ledger.verify())[1] == []


async def test_a_customer_whose_accounts_are_full_is_refused_alone(gql: GQL, factory: Factory) -> None:
    # given partner A's USD revenue (the sub-account its customer's charges land on) one dollar below the limit
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    other = await factory.tenant(customers=1)
    async with in_transaction():
        await ledger.post(
            ledger.external_funding(Currency.USD, customer.partner_id),
            ledger.revenue(Currency.USD, customer.partner_id, customer.id),
            ledger.BALANCE_LIMIT - 1,
            TransferKind.ADJUSTMENT,
        )
    full = event(customer.id, "PHONE_NUMBER_MONTHS", "1")  # $2
    # when a batch mixes A's customer with partner B's
    data = (await gql(RECORD, {"i": {"events": [full, event(other.customers[0].id)]}}, token))["usageRecord"]
    # then A's event is refused with a code, B's is recorded, and the books stay whole
    assert data["accepted"] == 1
    assert [(r["index"], r["code"]) for r in data["rejected"]] == [(0, "LIMIT_EXCEEDED")]
    assert await UsageEvent.filter(customer_id=customer.id).count() == 0
    assert await ledger.revenue_balance(Currency.USD, customer.partner_id) == ledger.BALANCE_LIMIT - 1
    assert (await ledger.verify())[1] == []
    # and its key was not spent: a retry is refused again, not counted as a duplicate
    again = (await gql(RECORD, {"i": {"events": [full]}}, token))["usageRecord"]
    assert (again["duplicates"], [r["code"] for r in again["rejected"]]) == (0, ["LIMIT_EXCEEDED"])


async def test_authorize_refuses_more_than_one_event_may_carry(gql: GQL, factory: Factory) -> None:
    tenant, token = await _tenant(gql, factory)
    answer = await _authorize(gql, token, tenant.customers[0].id, "999999999999", "PHONE_NUMBER_MONTHS")
    assert [e["code"] for e in answer["errors"]] == ["INVALID"] and answer["hold"] is None


@pytest.mark.postgres
async def test_first_batches_of_a_new_month_racing_do_not_deadlock_on_its_partition(gql: GQL, factory: Factory) -> None:
    # given this month's usage partition does not exist yet (no scheduler ran ahead of time)
    tenant, token = await _tenant(gql, factory)
    customer = tenant.customers[0]
    conn = connections.get("default")
    await conn.execute_script(f"DROP TABLE IF EXISTS usage_event_{datetime.now(UTC):%Y_%m}")
    store.forget_partitions()
    # when the month's first batches race, each needing the partition
    results = await asyncio.gather(
        *[gql(RECORD, {"i": {"events": [event(customer.id, "SMS_SEGMENTS", "1")]}}, token) for _ in range(8)]
    )
    # then every batch is recorded (none fails on a deadlock while creating the partition)
    assert [r["usageRecord"]["accepted"] for r in results] == [1] * 8


@pytest.mark.postgres
async def test_concurrent_first_batches_of_a_new_month_create_its_partition_once(factory: Factory) -> None:
    # given a month whose partition nobody created yet, and processes that have not seen it either
    month = date(datetime.now(UTC).year + 3, 2, 1)
    name = f"usage_event_{month:%Y_%m}"
    conn = connections.get("default")
    await conn.execute_script(f"DROP TABLE IF EXISTS {name}")
    store.forget_partitions()
    try:
        # when eight of them create it at the same moment (the race that raised DuplicateTableError)
        await asyncio.gather(*(store.ensure_partitions([month]) for _ in range(8)))
        store.forget_partitions()
        await asyncio.gather(*(store.ensure_partitions([month]) for _ in range(8)))
        # then it exists once, as a partition of usage_event
        rows = await conn.execute_query_dict(
            "SELECT count(*) AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = $1", [name]
        )
        assert rows[0]["n"] == 1
    finally:
        await conn.execute_script(f"DROP TABLE IF EXISTS {name}")
        store.forget_partitions()
