"""Money core: ledger transfers, idempotency, credits, wallet refills and billing preferences."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from domain.accounts.models import Role
from domain.billing.commands import BillingPreferencesUpdate, WalletRefill
from domain.billing.credits import burn_credits, grant_credits
from domain.billing.models import CreditGrant, GrantSource, RefillRequest
from domain.billing.preferences import billing_preferences_update
from domain.billing.read import preferences_of, wallet_state
from domain.billing.wallet import charge_wallet, wallet_refill
from domain.errors import DomainError, ErrorCode
from domain.ledger import services as ledger
from domain.ledger.models import AccountKind, Currency, LedgerAccount, Transfer, TransferKind
from domain.viewer import Viewer
from tests.conftest import GQL, SYSTEM, Factory, gid, run_cli

FUND = """mutation($i: PartnerCreditsAddInput!) { partnerCreditsAdd(input: $i) {
  transfer { id amount } creditPool { available assigned } errors { field code message } } }"""
RECHARGE = """mutation($i: CustomerCreditsRechargeInput!) { customerCreditsRecharge(input: $i) {
  transfer { id amount debitBalanceAfter creditBalanceAfter } credits { available used assigned health }
  errors { field code message } } }"""
RECLAIM = """mutation($i: CustomerCreditsReclaimInput!) { customerCreditsReclaim(input: $i) {
  transfer { id } credits { available assigned } errors { field code message } } }"""
REFILL = """mutation($i: WalletRefillInput!) { walletRefill(input: $i) {
  refill { amount { amount currency } balanceAfter { amount } reference }
  wallet { balance { amount } refillRequest { status } } errors { field code message } } }"""
PREFS = """mutation($i: BillingPreferencesUpdateInput!) { billingPreferencesUpdate(input: $i) {
  billing { billingMode monthlySpendingCap { amount } refillAmount { amount } refillThreshold { amount }
            lowBalanceLevel { amount } capReachedAlert paymentFailedAlert extraAlertRecipients primaryContact { email } }
  errors { field code message } } }"""


def key() -> str:
    return uuid.uuid4().hex


async def _setup(gql: GQL, factory: Factory, pool: str = "100"):
    tenant = await factory.tenant(customers=2)
    admin = await factory.admin()
    admin_token = await gql.login(admin.email)
    staff_token = await gql.login(tenant.owner.email)
    if pool:
        data = await gql(
            FUND,
            {"i": {"partnerId": gid("Partner", tenant.partner.id), "credits": pool, "idempotencyKey": key()}},
            admin_token,
        )
        assert data["partnerCreditsAdd"]["errors"] == []
    return tenant, admin_token, staff_token


async def sums_to_zero() -> None:
    for currency in Currency:
        balances = await LedgerAccount.filter(currency=currency).values_list("balance", flat=True)
        assert sum(balances, Decimal(0)) == 0, currency


async def test_recharge_and_reclaim_move_credits_between_pool_and_customer(gql: GQL, factory: Factory) -> None:
    # given
    tenant, _, staff = await _setup(gql, factory, pool="100")
    customer = gid("Customer", tenant.customers[0].id)
    # when
    charged = await gql(RECHARGE, {"i": {"customerId": customer, "credits": "40", "idempotencyKey": key()}}, staff)
    back = await gql(RECLAIM, {"i": {"customerId": customer, "credits": "15", "idempotencyKey": key()}}, staff)
    # then
    assert (
        charged["customerCreditsRecharge"]["credits"]
        == {"available": "40.000000", "used": "0", "assigned": "40.000000", "health": "OK"}
        or Decimal(charged["customerCreditsRecharge"]["credits"]["available"]) == 40
    )
    assert back["customerCreditsReclaim"]["errors"] == []
    assert Decimal(back["customerCreditsReclaim"]["credits"]["available"]) == 25
    assert Decimal(back["customerCreditsReclaim"]["credits"]["assigned"]) == 25
    pool = await gql(
        "query($id: ID!) { partner(id: $id) { creditPool { available assigned } } }",
        {"id": gid("Partner", tenant.partner.id)},
        staff,
    )
    assert {k: Decimal(v) for k, v in pool["partner"]["creditPool"].items()} == {"available": 75, "assigned": 25}
    await sums_to_zero()


async def test_recharge_beyond_pool_is_refused_and_writes_nothing(gql: GQL, factory: Factory) -> None:
    # given
    tenant, _, staff = await _setup(gql, factory, pool="10")
    before = await Transfer.all().count()
    # when
    data = await gql(
        RECHARGE,
        {"i": {"customerId": gid("Customer", tenant.customers[0].id), "credits": "10.5", "idempotencyKey": key()}},
        staff,
    )
    # then
    assert [e["code"] for e in data["customerCreditsRecharge"]["errors"]] == ["POOL_EXHAUSTED"]
    assert data["customerCreditsRecharge"]["transfer"] is None
    assert await Transfer.all().count() == before


async def test_reclaim_never_takes_more_than_available(gql: GQL, factory: Factory) -> None:
    tenant, _, staff = await _setup(gql, factory, pool="10")
    customer = gid("Customer", tenant.customers[0].id)
    await gql(RECHARGE, {"i": {"customerId": customer, "credits": "5", "idempotencyKey": key()}}, staff)
    data = await gql(RECLAIM, {"i": {"customerId": customer, "credits": "5.000001", "idempotencyKey": key()}}, staff)
    assert [e["code"] for e in data["customerCreditsReclaim"]["errors"]] == ["INSUFFICIENT_CREDITS"]


@pytest.mark.parametrize(
    ("credits", "field"),
    [
        ("-5", "credits"),
        ("0", "credits"),
        ("NaN", "credits"),
        ("1.0000001", "credits"),
        ("1e15", "credits"),
        ("Infinity", "credits"),
        ("1e-9999999999", "credits"),
    ],
)
async def test_bad_amounts_get_a_coded_error_and_no_transfer(
    gql: GQL, factory: Factory, credits: str, field: str
) -> None:
    tenant, _, staff = await _setup(gql, factory)
    before = await Transfer.all().count()
    data = await gql(
        RECHARGE,
        {"i": {"customerId": gid("Customer", tenant.customers[0].id), "credits": credits, "idempotencyKey": key()}},
        staff,
    )
    errors = data["customerCreditsRecharge"]["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [(field, "INVALID")]
    assert await Transfer.all().count() == before


@pytest.mark.parametrize("bad_key", ["", "has space", "x" * 256, "ünïcode"])
async def test_malformed_idempotency_keys_are_refused(gql: GQL, factory: Factory, bad_key: str) -> None:
    tenant, _, staff = await _setup(gql, factory)
    data = await gql(
        RECHARGE,
        {"i": {"customerId": gid("Customer", tenant.customers[0].id), "credits": "1", "idempotencyKey": bad_key}},
        staff,
    )
    assert [(e["field"], e["code"]) for e in data["customerCreditsRecharge"]["errors"]] == [
        ("idempotencyKey", "INVALID")
    ]


async def test_same_key_same_input_returns_first_result_and_other_input_is_refused(gql: GQL, factory: Factory) -> None:
    # given
    tenant, _, staff = await _setup(gql, factory)
    customer = gid("Customer", tenant.customers[0].id)
    k = key()
    # when
    first = await gql(RECHARGE, {"i": {"customerId": customer, "credits": "7", "idempotencyKey": k}}, staff)
    again = await gql(RECHARGE, {"i": {"customerId": customer, "credits": "7", "idempotencyKey": k}}, staff)
    other = await gql(RECHARGE, {"i": {"customerId": customer, "credits": "8", "idempotencyKey": k}}, staff)
    # then
    assert again["customerCreditsRecharge"]["transfer"] == first["customerCreditsRecharge"]["transfer"]
    assert [e["code"] for e in other["customerCreditsRecharge"]["errors"]] == ["IDEMPOTENCY_KEY_REUSED"]
    assert await Transfer.filter(kind=TransferKind.CREDITS_RECHARGE).count() == 1


async def test_a_replayed_money_mutation_answers_exactly_as_the_first(gql: GQL, factory: Factory) -> None:
    # given a refill under a key (the first answer shows the transfer as written, never read back)
    tenant, _, staff = await _setup(gql, factory)
    query = """mutation($i: WalletRefillInput!) { walletRefill(input: $i) {
      transfer { id kind currency amount metadata createdAt debitBalanceAfter creditBalanceAfter }
      refill { id amount { amount } balanceAfter { amount } reference createdAt } errors { code } } }"""
    variables = {
        "i": {
            "customerId": gid("Customer", tenant.customers[0].id),
            "amount": "12.5",
            "reference": "R-1",
            "idempotencyKey": key(),
        }
    }
    first = await gql(query, variables, staff)
    # when the same request is sent again
    again = await gql(query, variables, staff)
    # then the answer is the same, field for field (amounts at the column's scale both times)
    assert first["walletRefill"]["errors"] == []
    assert again["walletRefill"] == first["walletRefill"]
    assert first["walletRefill"]["transfer"]["amount"] == "12.500000"


async def test_a_failed_outcome_never_flips(gql: GQL, factory: Factory) -> None:
    # given a key whose first attempt hit an empty pool
    tenant, admin, staff = await _setup(gql, factory, pool="")
    customer = gid("Customer", tenant.customers[0].id)
    k = key()
    first = await gql(RECHARGE, {"i": {"customerId": customer, "credits": "5", "idempotencyKey": k}}, staff)
    assert [e["code"] for e in first["customerCreditsRecharge"]["errors"]] == ["POOL_EXHAUSTED"]
    # when the pool is funded and the same request is retried
    await gql(
        FUND, {"i": {"partnerId": gid("Partner", tenant.partner.id), "credits": "50", "idempotencyKey": key()}}, admin
    )
    retry = await gql(RECHARGE, {"i": {"customerId": customer, "credits": "5", "idempotencyKey": k}}, staff)
    # then the answer is the first one
    assert [e["code"] for e in retry["customerCreditsRecharge"]["errors"]] == ["POOL_EXHAUSTED"]
    assert await Transfer.filter(kind=TransferKind.CREDITS_RECHARGE).count() == 0


async def test_invalid_input_is_not_stored_under_the_key(gql: GQL, factory: Factory) -> None:
    tenant, _, staff = await _setup(gql, factory)
    customer = gid("Customer", tenant.customers[0].id)
    k = key()
    bad = await gql(RECHARGE, {"i": {"customerId": customer, "credits": "-1", "idempotencyKey": k}}, staff)
    assert bad["customerCreditsRecharge"]["errors"][0]["code"] == "INVALID"
    good = await gql(RECHARGE, {"i": {"customerId": customer, "credits": "1", "idempotencyKey": k}}, staff)
    assert good["customerCreditsRecharge"]["errors"] == []


async def test_cross_tenant_recharge_is_not_found(gql: GQL, factory: Factory) -> None:
    # given two partners
    tenant_a, _, staff_a = await _setup(gql, factory)
    tenant_b = await factory.tenant(customers=1)
    # when A's staff recharges B's customer
    data = await gql(
        RECHARGE,
        {"i": {"customerId": gid("Customer", tenant_b.customers[0].id), "credits": "1", "idempotencyKey": key()}},
        staff_a,
    )
    # then it does not exist for them
    assert [e["code"] for e in data["customerCreditsRecharge"]["errors"]] == ["NOT_FOUND"]
    customer_token = await gql.login(tenant_a.admins[0].email)
    data = await gql(
        RECHARGE,
        {"i": {"customerId": gid("Customer", tenant_a.customers[0].id), "credits": "1", "idempotencyKey": key()}},
        customer_token,
    )
    assert [e["code"] for e in data["customerCreditsRecharge"]["errors"]] == ["FORBIDDEN"]


async def test_burn_order_is_earliest_expiry_first_then_oldest(factory: Factory) -> None:
    # given grants: no expiry (oldest), expiring in 10 days, expiring in 2 days
    partner, _ = await factory.partner()
    customer, _ = await factory.customer(partner)
    from tortoise.transactions import in_transaction

    async with in_transaction():
        t = await ledger.post(
            ledger.external_funding(Currency.CREDITS, partner.id),
            ledger.customer_credits(customer.id, partner.id),
            Decimal(30),
            TransferKind.CREDITS_GRANT,
        )
        now = datetime.now(UTC)
        forever = await grant_credits(customer, Decimal(10), GrantSource.ADJUSTMENT, t)
        later = await grant_credits(customer, Decimal(10), GrantSource.PACKAGE, t, now + timedelta(days=10))
        soon = await grant_credits(customer, Decimal(10), GrantSource.PACKAGE, t, now + timedelta(days=2))
    # when 15 credits are burned
    async with in_transaction():
        await burn_credits(customer, Decimal(15))
    # then the soonest-expiring grant is empty, the next half used, the permanent one untouched
    remaining = {g.id: g.remaining for g in await CreditGrant.filter(customer_id=customer.id)}
    assert remaining == {forever.id: 10, later.id: 5, soon.id: 0}


async def test_credit_health_follows_thresholds(gql: GQL, factory: Factory) -> None:
    tenant, _, staff = await _setup(gql, factory, pool="100")
    customer = tenant.customers[0]
    await gql(
        RECHARGE, {"i": {"customerId": gid("Customer", customer.id), "credits": "100", "idempotencyKey": key()}}, staff
    )
    await gql(PREFS, {"i": {"customerId": gid("Customer", customer.id), "lowCreditThreshold": "50"}}, staff)
    from tortoise.transactions import in_transaction

    async def health() -> str:
        q = "query($id: ID!) { customer(id: $id) { credits { available health } } }"
        return (await gql(q, {"id": gid("Customer", customer.id)}, staff))["customer"]["credits"]["health"]

    assert await health() == "OK"
    async with in_transaction():
        await burn_credits(customer, Decimal(60))
    assert await health() == "LOW"
    async with in_transaction():
        await burn_credits(customer, Decimal("30.5"))
    assert await health() == "CRITICAL"


async def test_primary_contact_must_be_an_active_admin_of_the_customer(gql: GQL, factory: Factory) -> None:
    # given
    tenant, _, staff = await _setup(gql, factory)
    customer = tenant.customers[0]
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    other_admin = tenant.admins[1]
    # when / then: a member, and another customer's admin, are refused with an explanation
    for user in (member, other_admin):
        data = await gql(
            PREFS,
            {"i": {"customerId": gid("Customer", customer.id), "primaryContactUserId": gid("User", user.id)}},
            staff,
        )
        errors = data["billingPreferencesUpdate"]["errors"]
        assert [(e["field"], e["code"]) for e in errors] == [("primaryContactUserId", "INVALID")]
        assert "active admin" in errors[0]["message"]
    # and the customer's own admin is accepted
    data = await gql(
        PREFS,
        {"i": {"customerId": gid("Customer", customer.id), "primaryContactUserId": gid("User", tenant.admins[0].id)}},
        staff,
    )
    assert data["billingPreferencesUpdate"]["billing"]["primaryContact"]["email"] == tenant.admins[0].email


async def test_billing_preferences_update_validates_and_keeps_always_on_alerts(gql: GQL, factory: Factory) -> None:
    tenant, _, staff = await _setup(gql, factory)
    cid = gid("Customer", tenant.customers[0].id)
    bad = await gql(PREFS, {"i": {"customerId": cid, "refillAmount": "-3", "extraAlertRecipients": ["nope"]}}, staff)
    assert {(e["field"], e["code"]) for e in bad["billingPreferencesUpdate"]["errors"]} == {
        ("refillAmount", "INVALID"),
        ("extraAlertRecipients", "INVALID"),
    }
    good = await gql(
        PREFS,
        {
            "i": {
                "customerId": cid,
                "billingMode": "REFILLABLE_WALLET",
                "refillAmount": "200",
                "refillThreshold": "50",
                "monthlySpendingCap": "1000",
                "extraAlertRecipients": ["Finance@Example.com"],
            }
        },
        staff,
    )
    billing_view = good["billingPreferencesUpdate"]["billing"]
    assert billing_view["billingMode"] == "REFILLABLE_WALLET"
    assert billing_view["lowBalanceLevel"] == {"amount": "60.00"}
    assert billing_view["capReachedAlert"] is True and billing_view["paymentFailedAlert"] is True
    assert billing_view["extraAlertRecipients"] == ["finance@example.com"]


async def test_wallet_refill_request_opens_once_and_the_next_refill_closes_it(gql: GQL, factory: Factory) -> None:
    # given a wallet customer with a threshold of $50
    tenant, _, staff = await _setup(gql, factory, pool="")
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    await gql(
        PREFS,
        {"i": {"customerId": cid, "billingMode": "REFILLABLE_WALLET", "refillAmount": "100", "refillThreshold": "50"}},
        staff,
    )
    first = await gql(
        REFILL, {"i": {"customerId": cid, "amount": "100.00", "reference": "INV-1", "idempotencyKey": key()}}, staff
    )
    assert first["walletRefill"]["refill"] == {
        "amount": {"amount": "100.00", "currency": "USD"},
        "balanceAfter": {"amount": "100.00"},
        "reference": "INV-1",
    }
    # when usage takes the balance below the threshold twice
    from tortoise.transactions import in_transaction

    for amount in ("60", "10"):
        async with in_transaction():
            await charge_wallet(customer, Decimal(amount))
    # then exactly one request is open
    assert await RefillRequest.filter(customer_id=customer.id, status="OPEN").count() == 1
    # and the next refill closes it
    second = await gql(REFILL, {"i": {"customerId": cid, "amount": "100", "idempotencyKey": key()}}, staff)
    assert second["walletRefill"]["wallet"]["refillRequest"] is None
    assert second["walletRefill"]["refill"]["balanceAfter"] == {"amount": "130.00"}
    history = await gql(
        "query($id: ID!) { customer(id: $id) { wallet { refills { totalCount nodes { "
        "amount { amount } balanceAfter { amount } } } } } }",
        {"id": cid},
        staff,
    )
    assert history["customer"]["wallet"]["refills"]["nodes"] == [
        {"amount": {"amount": "100.00"}, "balanceAfter": {"amount": "130.00"}},
        {"amount": {"amount": "100.00"}, "balanceAfter": {"amount": "100.00"}},
    ]


async def test_estimated_days_until_refill_arithmetic(factory: Factory) -> None:
    # given balance 200, threshold 50 and $70 of usage over the trailing 7 days (avg $10/day)
    partner, _ = await factory.partner()
    customer, _ = await factory.customer(partner)
    await billing_preferences_update(
        SYSTEM, BillingPreferencesUpdate(customer.id, refill_threshold=Decimal(50), refill_amount=Decimal(100))
    )
    from tortoise.transactions import in_transaction

    async with in_transaction():
        await ledger.post(
            ledger.external_funding(Currency.USD, partner.id),
            ledger.customer_wallet(customer.id, partner.id),
            Decimal(270),
            TransferKind.WALLET_REFILL,
        )
        for _ in range(7):
            await charge_wallet(customer, Decimal(10))
    # an old charge outside the window does not count
    async with in_transaction():
        old = await charge_wallet(customer, Decimal("0.5"))
    await Transfer.filter(id=old.id).update(created_at=datetime.now(UTC) - timedelta(days=8))
    # when
    state = await wallet_state(customer)
    # then (199.5 − 50) ÷ 10 = 14.95 → 15.0 (one decimal)
    assert state.balance == Decimal("199.5")
    assert state.average_daily_spend == Decimal(10)
    assert state.estimated_days_until_refill == Decimal("15.0")


async def test_ledger_verify_catches_a_hand_edited_balance(gql: GQL, factory: Factory) -> None:
    # given a clean ledger
    tenant, _, staff = await _setup(gql, factory)
    await gql(
        RECHARGE,
        {"i": {"customerId": gid("Customer", tenant.customers[0].id), "credits": "5", "idempotencyKey": key()}},
        staff,
    )
    clean = run_cli("ledger", "verify", check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # when someone edits a balance by hand
    await connections.get("default").execute_script(
        "UPDATE ledger_account SET balance = balance + 1 WHERE kind = 'CUSTOMER_CREDITS'"
    )
    # then verify names it
    tampered = run_cli("ledger", "verify", check=False)
    assert tampered.returncode == 1
    assert "CUSTOMER_CREDITS" in tampered.stdout


async def test_every_transfer_mutation_is_audited_with_balances_after(gql: GQL, factory: Factory) -> None:
    tenant, _, staff = await _setup(gql, factory)
    await gql(
        RECHARGE,
        {"i": {"customerId": gid("Customer", tenant.customers[0].id), "credits": "5", "idempotencyKey": key()}},
        staff,
    )
    events = await gql("{ auditEvents(filter: {type: BILLING}) { nodes { action details } } }", token=staff)
    by_action = {e["action"]: e["details"] for e in events["auditEvents"]["nodes"]}
    assert by_action["customer.credits_recharge"]["customer_balance_after"] == "5.000000"
    assert by_action["customer.credits_recharge"]["pool_balance_after"] == "95.000000"
    assert "partner.credits_add" in by_action


# ---------------------------------------------------------------- concurrency (PostgreSQL)


@pytest.mark.postgres
async def test_64_concurrent_recharges_and_burns_end_exact(gql: GQL, factory: Factory) -> None:
    # given a pool of 100 credits and one customer
    tenant, _, staff = await _setup(gql, factory, pool="100")
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    from tortoise.transactions import in_transaction

    async def recharge() -> str | None:
        data = await gql(RECHARGE, {"i": {"customerId": cid, "credits": "3", "idempotencyKey": key()}}, staff)
        errors = data["customerCreditsRecharge"]["errors"]
        return errors[0]["code"] if errors else None

    async def burn() -> bool:
        try:
            async with in_transaction():
                await burn_credits(customer, Decimal(2))
            return True
        except Exception:
            return False

    # when 64 recharges race with 64 burns on the same accounts
    results = await asyncio.gather(*[recharge() for _ in range(64)], *[burn() for _ in range(64)])
    # then every credit is accounted for
    recharged = sum(1 for r in results[:64] if r is None)
    burned = sum(1 for r in results[64:] if r)
    assert set(results[:64]) <= {None, "POOL_EXHAUSTED"}
    assert recharged == 33  # 33 × 3 = 99 ≤ 100
    pool = await ledger.balance_of(ledger.partner_pool(tenant.partner.id))
    credits = await ledger.balance_of(ledger.customer_credits(customer.id, tenant.partner.id))
    assert pool == Decimal(100) - 3 * recharged
    assert credits == 3 * recharged - 2 * burned
    assert credits >= 0 and pool >= 0
    await sums_to_zero()
    assert (await ledger.verify())[1] == []


@pytest.mark.postgres
async def test_100_concurrent_calls_with_one_key_give_one_effect_and_identical_answers(
    gql: GQL, factory: Factory
) -> None:
    # given
    tenant, _, staff = await _setup(gql, factory, pool="100")
    k = key()
    variables = {"i": {"customerId": gid("Customer", tenant.customers[0].id), "credits": "1", "idempotencyKey": k}}
    # when
    answers = await asyncio.gather(*[gql(RECHARGE, variables, staff) for _ in range(100)])
    # then
    transfers = {
        a["customerCreditsRecharge"]["transfer"]["id"] for a in answers if a["customerCreditsRecharge"]["transfer"]
    }
    codes = {e["code"] for a in answers for e in a["customerCreditsRecharge"]["errors"]}
    assert len(transfers) == 1
    assert codes <= {"IDEMPOTENCY_KEY_IN_USE"}
    assert await Transfer.filter(kind=TransferKind.CREDITS_RECHARGE).count() == 1
    first = answers[0]["customerCreditsRecharge"]["transfer"]
    assert all(a["customerCreditsRecharge"]["transfer"] in (first, None) for a in answers)


# ---------------------------------------------------------------- hardening (issue 11)


@pytest.mark.postgres
async def test_one_partners_refills_cannot_fill_an_account_another_partner_needs(gql: GQL, factory: Factory) -> None:
    # given partner A's staff refilling a wallet 100 times with the largest amount accepted (the review's sequence)
    tenant, _, _ = await _setup(gql, factory, pool="")
    a_staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=tenant.partner.id, label="tests")
    for _ in range(100):
        await wallet_refill(a_staff, WalletRefill(tenant.customers[0].id, Decimal("999999999999.99"), key()))
    # when partner B refills its customer's wallet
    other = await factory.tenant(customers=1)
    b_staff = await gql.login(other.owner.email)
    data = await gql(
        REFILL,
        {"i": {"customerId": gid("Customer", other.customers[0].id), "amount": "10.00", "idempotencyKey": key()}},
        b_staff,
    )
    # then it goes through: each partner's money enters through its own funding account
    assert data["walletRefill"]["errors"] == [], data
    assert await ledger.balance_of(ledger.external_funding(Currency.USD, tenant.partner.id)) == Decimal(
        "-99999999999999"
    )
    assert await ledger.balance_of(ledger.external_funding(Currency.USD, other.partner.id)) == Decimal("-10")
    assert not await LedgerAccount.filter(kind=AccountKind.EXTERNAL_FUNDING, partner_id=None).exists()
    assert (await ledger.verify())[1] == []


async def test_a_transfer_past_the_ledger_limit_is_refused_with_a_code(gql: GQL, factory: Factory) -> None:
    # given partner A's funding account at the ledger's limit
    tenant, _, staff = await _setup(gql, factory, pool="")
    customer = tenant.customers[0]
    funding = ledger.external_funding(Currency.USD, tenant.partner.id)
    async with in_transaction():
        await ledger.post(
            funding, ledger.revenue(Currency.USD, tenant.partner.id), ledger.BALANCE_LIMIT, TransferKind.ADJUSTMENT
        )
    transfers = await Transfer.all().count()
    # when one more dollar would enter through it
    data = await gql(
        REFILL, {"i": {"customerId": gid("Customer", customer.id), "amount": "1", "idempotencyKey": key()}}, staff
    )
    # then the refill is refused with a code on the amount, and nothing is written
    assert [(e["field"], e["code"]) for e in data["walletRefill"]["errors"]] == [("amount", "LIMIT_EXCEEDED")]
    assert await Transfer.all().count() == transfers
    assert await ledger.balance_of(funding) == -ledger.BALANCE_LIMIT
    with pytest.raises(DomainError) as refused:
        async with in_transaction():
            await ledger.post(
                funding,
                ledger.customer_wallet(customer.id, customer.partner_id),
                Decimal("0.000001"),
                TransferKind.ADJUSTMENT,
            )
    assert [e.code for e in refused.value.errors] == [ErrorCode.LIMIT_EXCEEDED]
    assert (await ledger.verify())[1] == []


async def test_a_shared_funding_account_from_before_per_partner_accounts_is_left_as_it_was(
    gql: GQL, factory: Factory
) -> None:
    # given a database whose shared (partner-less) USD funding account paid for a refill, as before migration 0009
    tenant, _, staff = await _setup(gql, factory, pool="")
    customer = tenant.customers[0]
    shared = ledger.AccountRef(AccountKind.EXTERNAL_FUNDING, Currency.USD)
    async with in_transaction():
        await ledger.post(
            shared, ledger.customer_wallet(customer.id, customer.partner_id), Decimal(40), TransferKind.WALLET_REFILL
        )
    # when the partner records a refill now
    data = await gql(
        REFILL, {"i": {"customerId": gid("Customer", customer.id), "amount": "2.50", "idempotencyKey": key()}}, staff
    )
    # then it enters through the partner's own account; the shared one keeps its balance; the books still agree
    assert data["walletRefill"]["wallet"]["balance"] == {"amount": "42.50"}
    assert await ledger.balance_of(shared) == Decimal(-40)
    assert await ledger.balance_of(ledger.external_funding(Currency.USD, tenant.partner.id)) == Decimal("-2.5")
    assert (await ledger.verify())[1] == []


async def test_a_refill_of_an_amount_that_rounds_to_nothing_is_invalid(gql: GQL, factory: Factory) -> None:
    # given
    tenant, _, staff = await _setup(gql, factory, pool="")
    customer = tenant.customers[0]
    # when
    data = await gql(
        REFILL,
        {"i": {"customerId": gid("Customer", customer.id), "amount": "1e-9999999999", "idempotencyKey": key()}},
        staff,
    )
    # then nothing is recorded (on SQLite the review saw a $0.00 refill recorded and alerted)
    assert [(e["field"], e["code"]) for e in data["walletRefill"]["errors"]] == [("amount", "INVALID")]
    assert await Transfer.filter(kind=TransferKind.WALLET_REFILL).count() == 0


async def test_a_refill_threshold_above_the_refill_amount_is_invalid(gql: GQL, factory: Factory) -> None:
    # given a wallet customer refilled with $100 at a time
    tenant, _, staff = await _setup(gql, factory, pool="")
    customer = tenant.customers[0]
    cid = gid("Customer", customer.id)
    await gql(PREFS, {"i": {"customerId": cid, "billingMode": "REFILLABLE_WALLET", "refillAmount": "100"}}, staff)
    # when the threshold is set above the refill amount, or the amount below the threshold
    above = await gql(PREFS, {"i": {"customerId": cid, "refillThreshold": "100.01"}}, staff)
    await gql(PREFS, {"i": {"customerId": cid, "refillThreshold": "100"}}, staff)
    below = await gql(PREFS, {"i": {"customerId": cid, "refillAmount": "99"}}, staff)
    # then each is refused on the field sent, and no refill request opened
    assert [(e["field"], e["code"]) for e in above["billingPreferencesUpdate"]["errors"]] == [
        ("refillThreshold", "INVALID")
    ]
    assert [(e["field"], e["code"]) for e in below["billingPreferencesUpdate"]["errors"]] == [
        ("refillAmount", "INVALID")
    ]
    prefs = (await preferences_of([customer.id]))[customer.id]
    assert (prefs.refill_amount, prefs.refill_threshold) == (Decimal(100), Decimal(100))
    assert await RefillRequest.filter(customer_id=customer.id).count() == 1  # threshold 100 on an empty wallet
