"""The per-call money path (issue 13): `usageAuthorize` and `usageRecord` on PostgreSQL read with one statement and
write with a few (domain/usage/lookup.py, domain/usage/store_pg.py) while the services decide everything, so the
statement counts stay fixed, the raw path writes exactly what the ORM path writes, pairs racing never commit more
than a balance holds, and a partner's revenue, split into sub-accounts chosen by customer, is summed on read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from domain.accounts.models import Role
from domain.alerts.models import Alert, AlertArm
from domain.audit import services as audit
from domain.audit.models import AuditEvent
from domain.audit.sequencer import sequence_pending
from domain.billing.commands import (
    BillingPreferencesUpdate,
    CustomerCreditsRecharge,
    CustomerCreditsReclaim,
    InvoiceMarkPaid,
    PartnerCreditsAdd,
)
from domain.billing.credits import (
    burn_credits,
    customer_credits_recharge,
    customer_credits_reclaim,
    partner_credits_add,
)
from domain.billing.models import BillingMode, CreditGrant, CustomerCredits, PartnerPool
from domain.billing.preferences import billing_preferences_update
from domain.common import rows as raw_path
from domain.customers.models import Customer
from domain.errors import DomainError
from domain.events.models import OutboxEvent
from domain.features.models import FeatureToggles
from domain.features.services import set_ai_credits
from domain.invoices.models import Invoice
from domain.invoices.services import CLOSE_GRACE, close_month, invoice_mark_paid
from domain.ledger import services as ledger
from domain.ledger.models import AccountKind, Currency, IdempotencyRecord, LedgerAccount, Transfer, TransferKind
from domain.partners.models import Partner
from domain.usage import store
from domain.usage.commands import UsageAuthorize, UsageEventIn, UsageRecord
from domain.usage.holds import usage_authorize
from domain.usage.models import (
    HoldStatus,
    MonthlySpend,
    UnitType,
    UsageEvent,
    UsageHold,
    UsageRollup,
    UsageRollupDetail,
)
from domain.usage.services import usage_record
from domain.viewer import Viewer
from tests.conftest import GQL, SYSTEM, Factory, count_queries, eventually, gid
from tests.funding import fund_credits, fund_wallet

postgres = pytest.mark.postgres

# What the two hot paths may send on PostgreSQL, BEGIN and COMMIT aside (bench/README.md, issue 13). Raise them only
# with a measurement that says why.
AUTHORIZE_STATEMENTS = 2  # read + claim + locks; hold + outcome with the state and live holds read under the locks
# a repeat reads the key's outcome and its hold; a refusal takes the hold back and keeps the refusal
REPLAYED_OR_REFUSED_AUTHORIZE_STATEMENTS = 3
RECORD_STATEMENTS = 4  # read, claim keys + lock accounts, live holds, one write of everything


def staff(partner: Partner) -> Viewer:
    return Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id, label="tests")


def key() -> str:
    return uuid.uuid4().hex


def event_in(customer: Customer, quantity: str = "1", unit: str = "VOICE_MINUTES", **extra: Any) -> UsageEventIn:
    return UsageEventIn(
        idempotency_key=extra.pop("idempotency_key", key()),
        customer_id=customer.id,
        unit_type=unit,
        quantity=quantity,
        occurred_at=extra.pop("occurred_at", datetime.now(UTC).isoformat()),
        **extra,
    )


async def authorize(viewer: Viewer, customer: Customer, quantity: str = "1", k: str | None = None) -> UsageHold:
    return await usage_authorize(
        viewer, UsageAuthorize(customer.id, UnitType.VOICE_MINUTES, Decimal(quantity), k or key())
    )


async def record(viewer: Viewer, events: list[UsageEventIn]) -> Any:
    return await usage_record(viewer, UsageRecord(events, source="graphql"))


@contextmanager
def orm_path(on: bool) -> Iterator[None]:
    """Runs the metering services through the ORM path even on PostgreSQL (`raw_path.RAW_SQL`)."""
    before = raw_path.RAW_SQL
    raw_path.RAW_SQL = not on
    try:
        yield
    finally:
        raw_path.RAW_SQL = before


# ---------------------------------------------------------------- statements per call


@postgres
async def test_authorize_and_record_send_a_fixed_handful_of_statements(factory: Factory) -> None:
    # given a partner with a wallet customer, a credits customer (two grants) and an invoice customer with a cap
    tenant = await factory.tenant(customers=3)
    viewer = staff(tenant.partner)
    wallet, credits, invoice = tenant.customers
    await fund_wallet(wallet, "100")  # no refill settings: their checks read and write alert state (a few more)
    await fund_credits(credits, "500", datetime.now(UTC) + timedelta(days=3))
    await fund_credits(credits, "500")
    await billing_preferences_update(SYSTEM, BillingPreferencesUpdate(invoice.id, monthly_spending_cap=Decimal(1000)))
    for customer in tenant.customers:  # warm: the month's partition, each customer's accounts and spend row
        hold = await authorize(viewer, customer)
        await record(viewer, [event_in(customer, hold_id=hold.id)])
    for customer in tenant.customers:
        # when one call is authorized, then recorded against its hold
        with count_queries() as authorizing:
            hold = await authorize(viewer, customer)
        with count_queries() as recording:
            result = await record(viewer, [event_in(customer, hold_id=hold.id)])
        # then each sends its fixed handful of statements, whatever pays
        assert result.accepted == 1
        assert len(authorizing.queries) <= AUTHORIZE_STATEMENTS, authorizing.queries
        assert len(recording.queries) <= RECORD_STATEMENTS, recording.queries
    # and a batch of 10 customers' events costs no more than one customer's
    ten = [(await factory.customer(tenant.partner))[0] for _ in range(7)] + tenant.customers
    for customer in ten[:7]:
        await fund_wallet(customer, "100")
    await record(viewer, [event_in(c) for c in ten])
    with count_queries() as batch:
        result = await record(viewer, [event_in(c) for c in ten for _ in range(3)])
    assert result.accepted == 30
    assert len(batch.queries) <= RECORD_STATEMENTS, batch.queries
    assert (await ledger.verify())[1] == []


@postgres
async def test_a_repeated_or_refused_authorization_is_still_a_fixed_handful(factory: Factory) -> None:
    tenant = await factory.tenant(customers=1)
    viewer, customer = staff(tenant.partner), tenant.customers[0]
    await fund_wallet(customer, "0.06")
    k = key()
    first = await authorize(viewer, customer, k=k)
    with count_queries() as repeating:
        again = await authorize(viewer, customer, k=k)
    assert again.id == first.id and again.amount == first.amount
    assert len(repeating.queries) <= REPLAYED_OR_REFUSED_AUTHORIZE_STATEMENTS, repeating.queries
    refusal = key()
    with count_queries() as refusing, pytest.raises(Exception) as refused:
        await authorize(viewer, customer, k=refusal)
    assert "INSUFFICIENT_BALANCE" in str(getattr(refused.value, "errors", refused.value))
    assert len(refusing.queries) <= REPLAYED_OR_REFUSED_AUTHORIZE_STATEMENTS, refusing.queries
    # the refusal was kept: the same key answers it again after the wallet was topped up
    await fund_wallet(customer, "10")
    with pytest.raises(Exception) as replayed:
        await authorize(viewer, customer, k=refusal)
    assert "INSUFFICIENT_BALANCE" in str(getattr(replayed.value, "errors", replayed.value))


# ---------------------------------------------------------------- the raw path writes what the ORM path writes


async def _scenario(factory: Factory) -> tuple[Partner, list[Customer]]:
    """A partner whose customers pay by wallet (running short, with refill and low-balance settings), by credits
    (an expiring grant and a lasting one, a low-credit threshold) and by invoice (a cap the batch takes past 80%),
    each with holds, a batch with repeats, a batch over the wallet and a second batch."""
    tenant = await factory.tenant(customers=3)
    viewer = staff(tenant.partner)
    wallet, credits, invoice = tenant.customers
    await fund_wallet(
        wallet, "1.00", refill_amount=Decimal(5), refill_threshold=Decimal("0.50"), low_balance_alert=True
    )
    await fund_credits(credits, "30", datetime.now(UTC) + timedelta(days=2))
    await fund_credits(credits, "40")
    await billing_preferences_update(SYSTEM, BillingPreferencesUpdate(credits.id, low_credit_threshold=Decimal(60)))
    await FeatureToggles.filter(customer_id=credits.id).update(low_credit_notifications=True)
    await billing_preferences_update(
        SYSTEM, BillingPreferencesUpdate(invoice.id, monthly_spending_cap=Decimal("1.00"), cap_alert_at_80=True)
    )
    when = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    holds = [await authorize(viewer, c, "2") for c in tenant.customers]
    repeated = key()
    first = [event_in(c, "2", hold_id=h.id, occurred_at=when) for c, h in zip(tenant.customers, holds, strict=True)]
    first += [event_in(c, "3", "SMS_SEGMENTS", occurred_at=when, idempotency_key=repeated) for c in tenant.customers]
    first += [event_in(invoice, "11", occurred_at=when, case_type="support")]
    await record(viewer, first)
    await authorize(viewer, wallet, "1")  # a live hold the next batch must leave alone
    second = [event_in(c, "12", occurred_at=when, case_type="sales") for c in tenant.customers]
    second += [event_in(wallet, "1", idempotency_key=repeated, unit="SMS_SEGMENTS", occurred_at=when)]
    second += [event_in(c, "50", "EMAILS", occurred_at=when) for c in tenant.customers]
    await record(viewer, second)
    return tenant.partner, tenant.customers


async def _snapshot(partner: Partner, customers: list[Customer]) -> dict[str, Any]:
    """What the scenario left behind, without ids, timestamps or which revenue sub-account took what."""
    out: dict[str, Any] = {}
    accounts = {a.id: a for a in await LedgerAccount.filter(partner_id=partner.id)}
    position = {c.id: n for n, c in enumerate(customers)}

    def name(account_id: int) -> str:
        a = accounts[account_id]
        return f"{a.kind}:{a.currency}:{position.get(a.customer_id, '-') if a.customer_id else '-'}"

    out["balances"] = sorted(
        (name(a.id), a.balance) for a in accounts.values() if a.kind != AccountKind.REVENUE and a.customer_id
    )
    out["revenue"] = [await ledger.revenue_balance(c, partner.id) for c in Currency]
    transfers = await Transfer.filter(kind=TransferKind.USAGE_CHARGE, debit_account_id__in=list(accounts)).order_by(
        "id"
    )
    index = {t.id: n for n, t in enumerate(transfers)}
    out["transfers"] = [
        (name(t.debit_account_id), name(t.credit_account_id), t.amount, t.debit_balance_after, t.metadata)
        for t in transfers
    ]
    ids = [c.id for c in customers]
    out["events"] = [
        (
            position[e.customer_id],
            e.unit_type,
            e.quantity,
            e.unit_price,
            e.cost,
            e.credits,
            e.funding,
            e.paid,
            e.case_type,
            e.hold_id is not None,
            index.get(e.transfer_id) if e.transfer_id else None,
            e.metadata,
        )
        for e in await UsageEvent.filter(customer_id__in=ids).order_by("id")
    ]
    out["rollups"] = sorted(
        (position[r.customer_id], str(r.day), r.unit_type, r.events, r.quantity, r.cost, r.credits, r.unpaid_cost)
        for r in await UsageRollup.filter(customer_id__in=ids)
    )
    out["details"] = sorted(
        (position[r.customer_id], r.unit_type, r.case_type, r.events, r.quantity, r.cost, r.credits, r.unpaid_cost)
        for r in await UsageRollupDetail.filter(customer_id__in=ids)
    )
    out["spend"] = sorted((position[s.customer_id], s.spent) for s in await MonthlySpend.filter(customer_id__in=ids))
    out["holds"] = sorted(
        (position[h.customer_id], h.status, h.amount, h.credits) for h in await UsageHold.filter(customer_id__in=ids)
    )
    out["grants"] = sorted(
        (position[g.customer_id], g.amount, g.remaining) for g in await CreditGrant.filter(customer_id__in=ids)
    )
    out["counters"] = sorted(
        (position[k.customer_id], k.assigned, k.used) for k in await CustomerCredits.filter(customer_id__in=ids)
    )
    out["outbox"] = sorted(
        (
            position[o.customer_id],
            o.topic,
            sorted((k, "<id>" if k.endswith("_id") else v) for k, v in o.payload.items()),
        )
        for o in await OutboxEvent.filter(customer_id__in=ids)
    )
    out["alerts"] = sorted((position[a.customer_id], a.kind, a.status) for a in await Alert.filter(customer_id__in=ids))
    out["audit"] = sorted(
        (e.type, e.action, str(e.details))
        for e in await AuditEvent.filter(partner_id=partner.id, action__startswith="usage")
    )
    out["states"] = [(await Customer.get(id=c.id)).service_state for c in customers]
    return out


@postgres
async def test_the_raw_path_writes_exactly_what_the_orm_path_writes(factory: Factory) -> None:
    # given the same scenario run once through each path on one database
    with orm_path(False):
        raw = await _snapshot(*await _scenario(factory))
    with orm_path(True):
        orm = await _snapshot(*await _scenario(factory))
    # then every row each left behind is the same (ids, instants and revenue sub-accounts aside)
    for part in orm:
        assert raw[part] == orm[part], part
    # and the scenario did reach what it is meant to cover
    assert {topic for _, topic, _ in raw["outbox"]} >= {"wallet.changed", "credits.changed", "spending_cap.changed"}
    assert {kind for _, kind, _ in raw["alerts"]} >= {"LOW_BALANCE", "LOW_CREDITS", "CAP_WARNING", "CAP_REACHED"}
    assert any(status == "CONSUMED" for _, status, _, _ in raw["holds"])
    assert any(status == "ACTIVE" for _, status, _, _ in raw["holds"])
    assert any(e[7] is False for e in raw["events"])  # the wallet ran short: the rest accrued unpaid
    assert (await ledger.verify())[1] == []
    # and the audit events the raw statements appended are chained by the sequencer like any other
    assert await sequence_pending() > 0
    assert (await audit.verify())[1] == []


# ---------------------------------------------------------------- racing pairs


@postgres
async def test_racing_pairs_and_recordings_never_commit_more_than_the_balance_holds(factory: Factory) -> None:
    # given a wallet of $1.20 and 100 credits, voice at $0.06 (6 credits) a minute: room for 20 one-minute calls
    tenant = await factory.tenant(customers=2)
    viewer = staff(tenant.partner)
    wallet, credits = tenant.customers
    await fund_wallet(wallet, "1.20")
    await fund_credits(credits, "70", datetime.now(UTC) + timedelta(days=1))
    await fund_credits(credits, "50")
    await store.ensure_partitions([store.month_start(datetime.now(UTC))])  # as the scheduler does ahead of time

    async def pair(customer: Customer) -> bool:
        try:
            hold = await authorize(viewer, customer)
        except Exception:
            return False
        result = await record(viewer, [event_in(customer, hold_id=hold.id)])
        assert result.accepted == 1
        return True

    # when 30 pairs per customer race 10 recordings without a hold per customer
    work = [pair(c) for c in tenant.customers for _ in range(30)]
    work += [record(viewer, [event_in(c)]) for c in tenant.customers for _ in range(10)]
    outcomes = await asyncio.gather(*work)
    # then no hold was granted beyond the balance, every pair's call was paid from it, and the books balance
    for customer, room, ref in (
        (wallet, Decimal("1.20"), ledger.customer_wallet(wallet.id, wallet.partner_id)),
        (credits, Decimal(120), ledger.customer_credits(credits.id, credits.partner_id)),
    ):
        left = await ledger.balance_of(ref)
        events = await UsageEvent.filter(customer_id=customer.id)
        taken = sum((e.credits if customer is credits else e.cost) for e in events if e.paid)
        held = await UsageHold.filter(customer_id=customer.id, status="ACTIVE").count()
        assert left >= 0 and held == 0
        assert room - left == taken, (room, left, taken)
        assert all(e.paid for e in events if e.hold_id is not None)
        pairs = outcomes[:30] if customer is wallet else outcomes[30:60]
        assert len(events) == sum(1 for ok in pairs if ok) + 10
    grants = sum((g.remaining for g in await CreditGrant.filter(customer_id=credits.id)), Decimal(0))
    assert grants == await ledger.balance_of(ledger.customer_credits(credits.id, credits.partner_id))
    assert (await ledger.verify())[1] == []


# ---------------------------------------------------------------- revenue sub-accounts


async def test_revenue_lands_on_sub_accounts_chosen_by_customer_and_is_summed_on_read(
    gql: GQL, factory: Factory
) -> None:
    # given a partner with 10 customers on invoice billing
    tenant = await factory.tenant(customers=10)
    viewer = staff(tenant.partner)
    # when one ingestion batch carries 3 events of each
    result = await record(viewer, [event_in(c, str(n % 3 + 1)) for c in tenant.customers for n in range(3)])
    # then all are accepted, and the partner's revenue is their cost, spread over several sub-accounts
    assert result.accepted == 30 and result.rejected == []
    cost = sum((e.cost for e in await UsageEvent.filter(customer_id__in=[c.id for c in tenant.customers])), Decimal(0))
    assert cost == Decimal("3.60")
    assert await ledger.revenue_balance(Currency.USD, tenant.partner.id) == cost
    subs = await LedgerAccount.filter(partner_id=tenant.partner.id, kind=AccountKind.REVENUE)
    assert len(subs) > 1
    assert all(a.customer_id is None for a in subs)  # the partner's alone: no customer owns (or sees) them
    assert {a.key for a in subs} == {
        ledger.revenue(Currency.USD, tenant.partner.id, c.id).key for c in tenant.customers
    }
    # and each customer's charges landed on its own sub-account
    for customer in tenant.customers:
        account = await LedgerAccount.get(key=ledger.revenue(Currency.USD, tenant.partner.id, customer.id).key)
        debit = await LedgerAccount.get(key=ledger.customer_invoice(customer.id, customer.partner_id).key)
        assert await Transfer.filter(debit_account_id=debit.id, credit_account_id=account.id).count() == 1
    # and a customer's user never sees a sub-account's balance on a transfer it can reach
    token = await gql.login(tenant.admins[0].email)
    invoice = await LedgerAccount.get(key=ledger.customer_invoice(tenant.customers[0].id, tenant.partner.id).key)
    transfer = await Transfer.get(debit_account_id=invoice.id)
    node = """query($id: ID!) { node(id: $id) { ... on LedgerTransfer { debitBalanceAfter creditBalanceAfter } } }"""
    seen = (await gql(node, {"id": gid("LedgerTransfer", transfer.id)}, token))["node"]
    assert seen["debitBalanceAfter"] is not None and seen["creditBalanceAfter"] is None
    staff_token = await gql.login(tenant.owner.email)
    seen = (await gql(node, {"id": gid("LedgerTransfer", transfer.id)}, staff_token))["node"]
    assert seen["creditBalanceAfter"] is not None
    assert (await ledger.verify())[1] == []


async def test_invoices_of_customers_on_different_sub_accounts_keep_their_figures(factory: Factory) -> None:
    # given two invoice customers of one partner whose charges land on different revenue sub-accounts
    partner, _ = await factory.partner()
    customers = [(await factory.customer(partner))[0]]
    while ledger.revenue_shard(customers[-1].id) == ledger.revenue_shard(customers[0].id):
        customers.append((await factory.customer(partner))[0])
    pair = [customers[0], customers[-1]]
    now = datetime.now(UTC)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_day = this_month - timedelta(hours=12)  # noon on the last day of last month
    viewer = staff(partner)
    for n, customer in enumerate(pair):
        await record(viewer, [event_in(customer, str(n + 2), occurred_at=last_day.isoformat())])
    before = await ledger.revenue_balance(Currency.USD, partner.id)
    assert before == Decimal("0.30")  # 2 and 3 minutes at $0.06
    # when the month is closed and both invoices are paid
    closing = max(now, this_month + CLOSE_GRACE) + timedelta(minutes=1)
    await close_month(last_day.date().replace(day=1), closing)
    made = await Invoice.filter(partner_id=partner.id).order_by("total")
    assert [i.total for i in made] == [Decimal("0.12"), Decimal("0.18")]
    for invoice in made:
        await invoice_mark_paid(viewer, InvoiceMarkPaid(invoice.id, key(), "wire"))
    # then the partner's revenue is what it earned, the accrual accounts are cleared and the books balance
    assert await ledger.revenue_balance(Currency.USD, partner.id) == before
    for customer in pair:
        assert await ledger.balance_of(ledger.customer_invoice(customer.id, partner.id)) == 0
    assert (await ledger.verify())[1] == []


@postgres
async def test_concurrent_ten_customer_batches_of_one_partner_do_not_wait_on_one_revenue_account(
    factory: Factory,
) -> None:
    # given 10 wallet customers of one partner
    tenant = await factory.tenant(customers=10)
    viewer = staff(tenant.partner)
    for customer in tenant.customers:
        await fund_wallet(customer, "100")
    await store.ensure_partitions([store.month_start(datetime.now(UTC))])
    # when 6 batches of 10 customers each race, in different customer orders
    orders = [tenant.customers[n:] + tenant.customers[:n] for n in range(6)]
    results = await asyncio.gather(
        *[record(viewer, [event_in(c) for c in order for _ in range(5)]) for order in orders]
    )
    # then all are accepted, charged once, and the revenue is their sum
    assert [r.accepted for r in results] == [50] * 6
    assert await ledger.revenue_balance(Currency.USD, tenant.partner.id) == Decimal("0.06") * 300
    assert (await ledger.verify())[1] == []


# ---------------------------------------------------------------- customerCreditsRecharge

RECHARGE_STATEMENTS = 2  # the customer + claim + locks + preferences + the transfer's id, one write of everything


async def _recharge_scenario(factory: Factory) -> tuple[Partner, list[Customer], list[Any]]:
    """A funded pool; one customer below a low-credit threshold after its recharge, one without settings; a
    repeat, a recharge the pool cannot cover (refused, kept), and a reclaim."""
    tenant = await factory.tenant(customers=2)
    viewer = staff(tenant.partner)
    low, plain = tenant.customers
    await billing_preferences_update(SYSTEM, BillingPreferencesUpdate(low.id, low_credit_threshold=Decimal(50)))
    await FeatureToggles.filter(customer_id=low.id).update(low_credit_notifications=True, ai_credits_enabled=True)
    await partner_credits_add(SYSTEM, PartnerCreditsAdd(tenant.partner.id, Decimal(100), key(), "seed"))
    answers: list[Any] = []
    k = key()
    for customer, credits, k_ in ((low, "20", k), (low, "20", k), (plain, "70", key()), (plain, "11", key())):
        try:
            t = await customer_credits_recharge(viewer, CustomerCreditsRecharge(customer.id, Decimal(credits), k_))
            fresh = await Transfer.get(id=t.id)
            assert (t.amount, t.debit_balance_after, t.credit_balance_after, t.metadata, t.created_at) == (
                fresh.amount,
                fresh.debit_balance_after,
                fresh.credit_balance_after,
                fresh.metadata,
                fresh.created_at,
            )
            answers.append((str(t.amount), str(t.debit_balance_after), str(t.credit_balance_after)))
        except DomainError as exc:
            answers.append([e.code for e in exc.errors])
    await customer_credits_reclaim(viewer, CustomerCreditsReclaim(plain.id, Decimal(5), key()))
    return tenant.partner, tenant.customers, answers


async def _credits_snapshot(partner: Partner, customers: list[Customer]) -> dict[str, Any]:
    ids = [c.id for c in customers]
    position = {c.id: n for n, c in enumerate(customers)}
    accounts = {a.id: a for a in await LedgerAccount.filter(partner_id=partner.id)}

    def name(account_id: int) -> str:
        a = accounts[account_id]
        return f"{a.kind}:{a.currency}:{position.get(a.customer_id, '-') if a.customer_id else '-'}"

    transfers = await Transfer.filter(debit_account_id__in=list(accounts)).order_by("id")
    index = {t.id: n for n, t in enumerate(transfers)}

    def plain(value: Any) -> Any:
        return "<id>" if isinstance(value, int) and not isinstance(value, bool) else value

    return {
        "balances": sorted((name(a.id), a.balance) for a in accounts.values()),
        "transfers": [
            (t.kind, name(t.debit_account_id), name(t.credit_account_id), t.amount, t.debit_balance_after, t.metadata)
            for t in transfers
        ],
        "grants": sorted(
            (position[g.customer_id], g.source, g.amount, g.remaining, index.get(g.transfer_id or 0))
            for g in await CreditGrant.filter(customer_id__in=ids)
        ),
        "counters": sorted(
            (position[k.customer_id], k.assigned, k.used) for k in await CustomerCredits.filter(customer_id__in=ids)
        ),
        "pool": [p.assigned for p in await PartnerPool.filter(partner_id=partner.id)],
        "outbox": sorted(
            (position[o.customer_id], o.topic, sorted((k, plain(v)) for k, v in o.payload.items()))
            for o in await OutboxEvent.filter(customer_id__in=ids)
        ),
        "alerts": sorted((position[a.customer_id], a.kind) for a in await Alert.filter(customer_id__in=ids)),
        "arms": sorted(
            (position[a.customer_id], a.kind, a.armed, a.crossings) for a in await AlertArm.filter(customer_id__in=ids)
        ),
        "audit": sorted(
            (e.action, e.type, sorted((k, plain(v)) for k, v in e.details.items()), e.customer_id in position)
            for e in await AuditEvent.filter(partner_id=partner.id, action__startswith="customer.credits")
        ),
        "outcomes": sorted(
            (r.operation, r.status, sorted(r.response))
            for r in await IdempotencyRecord.filter(scope_key__startswith=f"p{partner.id}:")
        ),
    }


@postgres
async def test_the_raw_recharge_writes_and_answers_exactly_what_the_orm_path_does(factory: Factory) -> None:
    with orm_path(False):
        partner, customers, raw_answers = await _recharge_scenario(factory)
        raw = await _credits_snapshot(partner, customers)
    with orm_path(True):
        partner, customers, orm_answers = await _recharge_scenario(factory)
        orm = await _credits_snapshot(partner, customers)
    assert raw_answers == orm_answers
    assert raw_answers[0] == raw_answers[1] and raw_answers[3] == ["POOL_EXHAUSTED"]
    for part in orm:
        assert raw[part] == orm[part], part
    assert [(kind, crossings) for _, kind, _, crossings in raw["arms"]] == [("LOW_CREDITS", 1)] and raw["grants"]
    assert (await ledger.verify())[1] == []
    assert await sequence_pending() > 0
    assert (await audit.verify())[1] == []


@postgres
async def test_a_recharge_sends_a_fixed_handful_of_statements(factory: Factory) -> None:
    tenant = await factory.tenant(customers=1)
    viewer, customer = staff(tenant.partner), tenant.customers[0]
    await partner_credits_add(SYSTEM, PartnerCreditsAdd(tenant.partner.id, Decimal(100), key(), "seed"))
    await customer_credits_recharge(viewer, CustomerCreditsRecharge(customer.id, Decimal(1), key()))  # accounts made
    with count_queries() as recharging:
        await customer_credits_recharge(viewer, CustomerCreditsRecharge(customer.id, Decimal(1), key()))
    assert len(recharging.queries) <= RECHARGE_STATEMENTS, recharging.queries


async def test_an_authorization_on_a_paying_account_never_used_creates_it_and_refuses_alone(factory: Factory) -> None:
    # given a wallet customer and a credits customer whose accounts were never used, and another partner's customer
    tenant = await factory.tenant(customers=2)
    other = await factory.tenant(customers=1)
    viewer = staff(tenant.partner)
    wallet, credits = tenant.customers
    await billing_preferences_update(
        SYSTEM, BillingPreferencesUpdate(wallet.id, billing_mode=BillingMode.REFILLABLE_WALLET)
    )
    await set_ai_credits(credits.id, True)
    # when each is authorized
    for customer, code in ((wallet, "INSUFFICIENT_BALANCE"), (credits, "INSUFFICIENT_CREDITS")):
        with pytest.raises(DomainError) as refused:
            await authorize(viewer, customer)
        # then it is refused for the empty account, which now exists
        assert [e.code for e in refused.value.errors] == [code]
    assert await LedgerAccount.filter(customer_id__in=[wallet.id, credits.id]).count() == 2
    # and a customer beyond the viewer's reach is NOT_FOUND, even with an invalid quantity
    for quantity in ("1", "-1"):
        with pytest.raises(DomainError) as missing:
            await usage_authorize(
                viewer, UsageAuthorize(other.customers[0].id, UnitType.VOICE_MINUTES, Decimal(quantity), key())
            )
        assert [e.code for e in missing.value.errors] == ["NOT_FOUND"]
    with pytest.raises(DomainError) as invalid:
        await usage_authorize(viewer, UsageAuthorize(wallet.id, UnitType.VOICE_MINUTES, Decimal(-1), key()))
    assert [e.code for e in invalid.value.errors] == ["INVALID"]
    assert (await ledger.verify())[1] == []


async def test_a_recharge_from_a_pool_never_funded_is_refused_and_an_unseen_customer_is_not_found(
    factory: Factory,
) -> None:
    tenant = await factory.tenant(customers=1)
    other = await factory.tenant(customers=1)
    viewer = staff(tenant.partner)
    # a pool never funded (neither it nor the customer's credits account exists yet)
    with pytest.raises(DomainError) as refused:
        await customer_credits_recharge(viewer, CustomerCreditsRecharge(tenant.customers[0].id, Decimal(1), key()))
    assert [e.code for e in refused.value.errors] == ["POOL_EXHAUSTED"]
    # another partner's customer: NOT_FOUND, also with an invalid amount
    for credits in ("1", "-1"):
        with pytest.raises(DomainError) as missing:
            await customer_credits_recharge(
                viewer, CustomerCreditsRecharge(other.customers[0].id, Decimal(credits), key())
            )
        assert [e.code for e in missing.value.errors] == ["NOT_FOUND"]
    with pytest.raises(DomainError) as invalid:
        await customer_credits_recharge(viewer, CustomerCreditsRecharge(tenant.customers[0].id, Decimal(-1), key()))
    assert [e.code for e in invalid.value.errors] == ["INVALID"]
    assert (await ledger.verify())[1] == []


@postgres
async def test_charges_racing_the_creation_of_their_accounts_do_not_deadlock(factory: Factory) -> None:
    # given customers whose credits and revenue accounts do not exist yet, and a funded pool
    tenant = await factory.tenant(customers=6)
    viewer = staff(tenant.partner)
    await partner_credits_add(SYSTEM, PartnerCreditsAdd(tenant.partner.id, Decimal(1000), key(), "seed"))

    async def burn(customer: Customer) -> bool:
        try:
            async with in_transaction():
                await burn_credits(customer, Decimal(1))
            return True
        except DomainError:  # INSUFFICIENT_CREDITS before the recharge lands: refused, never a deadlock
            return False

    # when, per customer, a recharge races charges that each may create the accounts it locks
    for customer in tenant.customers:
        work = [customer_credits_recharge(viewer, CustomerCreditsRecharge(customer.id, Decimal(10), key()))]
        outcomes = await asyncio.gather(*work, *[burn(customer) for _ in range(12)])
        # then every charge either burned or was refused for want of credits, and the books balance
        burned = sum(1 for ok in outcomes[1:] if ok)
        left = await ledger.balance_of(ledger.customer_credits(customer.id, customer.partner_id))
        assert left == Decimal(10) - burned
    assert (await ledger.verify())[1] == []


# ---------------------------------------------------------------- racing authorizations (the hold placed first)


@postgres
async def test_racing_authorizations_never_reserve_past_the_cap_and_repeats_answer_as_the_first(
    factory: Factory,
) -> None:
    # given an invoice-billed customer (no paying account) with a $0.60 cap: room for ten $0.06 holds
    tenant = await factory.tenant(customers=1)
    viewer, customer = staff(tenant.partner), tenant.customers[0]
    await billing_preferences_update(
        SYSTEM, BillingPreferencesUpdate(customer.id, monthly_spending_cap=Decimal("0.60"))
    )
    keys = [key() for _ in range(40)]
    # when 40 authorizations race, with 10 of them repeated under the same keys
    work = [authorize(viewer, customer, k=k) for k in keys] + [authorize(viewer, customer, k=k) for k in keys[:10]]
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    # then exactly ten holds stand, each answered to its request, and every other one was refused by the cap
    holds = await UsageHold.filter(customer_id=customer.id)
    assert len(holds) == 10 and all(h.status == HoldStatus.ACTIVE for h in holds)
    assert sum((h.amount for h in holds), Decimal(0)) <= Decimal("0.60")
    assert {o.id for o in outcomes if isinstance(o, UsageHold)} == {h.id for h in holds}
    refused = [o for o in outcomes if not isinstance(o, UsageHold)]
    assert refused and all("CAP_REACHED" in str(getattr(r, "errors", r)) for r in refused), refused
    # and a repeat answers what its first request answered
    for first, again in zip(outcomes[:10], outcomes[40:], strict=True):
        assert type(first) is type(again)
        if isinstance(first, UsageHold):
            assert isinstance(again, UsageHold) and first.id == again.id


@postgres
async def test_racing_authorizations_never_reserve_past_the_wallet_and_leave_no_refused_hold(factory: Factory) -> None:
    tenant = await factory.tenant(customers=1)
    viewer, customer = staff(tenant.partner), tenant.customers[0]
    await fund_wallet(customer, "0.60")
    outcomes = await asyncio.gather(*[authorize(viewer, customer) for _ in range(40)], return_exceptions=True)
    holds = await UsageHold.filter(customer_id=customer.id)  # refused ones too, were any left
    assert len(holds) == 10 and all(h.status == HoldStatus.ACTIVE for h in holds)
    assert sum(isinstance(o, UsageHold) for o in outcomes) == 10


@postgres
async def test_a_recording_counts_a_hold_committed_while_it_waited_for_the_wallet(factory: Factory) -> None:
    """The live holds are read after the paying accounts are locked, with a snapshot taken then: a hold committed by
    the transaction whose wallet lock the recording waited for counts. Read with the locking statement's snapshot
    (taken before the wait) it would not, and the wallet would pay past the hold (tried: a function reading them
    inside that statement with the caller's snapshot fails this test)."""
    tenant = await factory.tenant(customers=1)
    viewer, customer = staff(tenant.partner), tenant.customers[0]
    await fund_wallet(customer, "1.00")
    await record(viewer, [event_in(customer)])  # $0.06 from the wallet (0.94 left); every account of it now exists
    wallet = ledger.customer_wallet(customer.id, customer.partner_id)
    locked, release = asyncio.Event(), asyncio.Event()

    async def authorization_in_flight() -> None:  # what `usageAuthorize` does: lock the wallet, place a hold
        async with in_transaction():
            await ledger.lock_accounts(wallet)
            await UsageHold.create(
                customer_id=customer.id,
                unit_type=UnitType.VOICE_MINUTES,
                estimated_quantity=Decimal(15),
                amount=Decimal("0.90"),
                credits=Decimal(0),
                funding="WALLET",
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
            locked.set()
            await release.wait()

    holder = asyncio.create_task(authorization_in_flight())
    await locked.wait()
    recording = asyncio.create_task(record(viewer, [event_in(customer, quantity="2")]))  # $0.12

    async def waiting_on_a_lock() -> int:
        rows = await connections.get("default").execute_query_dict(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(rows[0]["n"])

    assert await eventually(waiting_on_a_lock, tries=200, pause=0.01), "the recording never waited on the wallet"
    release.set()
    await holder
    result = await recording
    assert result.accepted == 1
    # then the hold left $0.04 of the $0.94: the $0.12 event is not paid from the wallet but goes to the invoice
    event = await UsageEvent.get(customer_id=customer.id, quantity=Decimal(2))
    assert not event.paid and event.funding == "INVOICE"
    assert (await LedgerAccount.get(key=wallet.key)).balance == Decimal("0.94")
