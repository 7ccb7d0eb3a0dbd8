"""Stateful property test of the money core: random sequences of billing operations against a Python model.

How it runs. Hypothesis' stateful driver (`run_state_machine_as_test`) is synchronous, while every domain service
is a coroutine that must run on the session's event loop: Tortoise allows one global context per process and its
connections belong to that loop. So the test coroutine hands the driver to a worker thread
(`asyncio.to_thread`) and awaits it; the session loop stays free, and each rule submits its coroutine back to it
with `asyncio.run_coroutine_threadsafe(...).result()`. Everything touches the database on the one loop, through
the one Tortoise context, one operation at a time, and Hypothesis keeps full control of generation and shrinking
(a failure prints the shrunk step list). Each example starts from truncated tables, so ids are deterministic and
a failure replays from Hypothesis' example database.

The world: 2 partners × 2 customers. Operations: fund a partner pool, recharge and reclaim customer credits,
refill a wallet (all idempotent, through the services), burn credits and charge a wallet (usage, in a
transaction), change a refill threshold (INVALID above the refill amount), take a partner's funding account to the
ledger's limit or one micro-credit past it (LIMIT_EXCEEDED; later funding of that partner is refused the same way),
and replay an earlier idempotency key with the same input (same outcome, no new effect) or a different one
(IDEMPOTENCY_KEY_REUSED). The model predicts every outcome; refusals must leave it, and the database, unchanged.
After every step, against the database:
- `ledger.verify()` finds no problem: each balance equals credits − debits of its transfers, each currency sums to
  0, no non-negative account is below 0; and the transfer count is the model's (a replay writes nothing);
- no balance is beyond ±`ledger.BALANCE_LIMIT`;
- every account balance equals the model's (exact Decimals);
- each customer's grants (remaining, in id order) equal the model's, sum to its credit balance and are ≥ 0;
  assigned/used counters and the partners' assigned totals equal the model's;
- at most one OPEN refill request per customer, exactly when the model expects one, and one is open whenever
  a refill threshold is set and the wallet is below it.

The full machine (30 examples × up to 25 steps) runs on PostgreSQL; the embedded SQLite pass runs 10 examples.
"""

from __future__ import annotations

import asyncio
import enum
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from tortoise.transactions import in_transaction

from domain.billing.commands import (
    BillingPreferencesUpdate,
    CustomerCreditsRecharge,
    CustomerCreditsReclaim,
    PartnerCreditsAdd,
    WalletRefill,
)
from domain.billing.credits import (
    burn_credits,
    customer_credits_recharge,
    customer_credits_reclaim,
    partner_credits_add,
)
from domain.billing.models import CreditGrant, CustomerCredits, PartnerPool, RefillRequest, RefillRequestStatus
from domain.billing.preferences import billing_preferences_update
from domain.billing.wallet import charge_wallet, wallet_refill
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.ledger import services as ledger
from domain.ledger.models import Currency, LedgerAccount, TransferKind
from domain.partners.models import Partner
from tests.conftest import IS_POSTGRES, SYSTEM, Factory, truncate_all

T = TypeVar("T")
ZERO = Decimal(0)
CREDIT_UNIT = Decimal("0.000001")
CENT = Decimal("0.01")
REFILL_AMOUNT = Decimal(100)
STEP_TIMEOUT = 120.0
# Largest amount a step moves: far below what an input may carry (10^12), and within the 15 digits SQLite's
# floating-point `F()` updates of the credit counters keep exact.
LARGEST = Decimal(1_000_000)

SETTINGS = settings(max_examples=30, stateful_step_count=25, deadline=None)
EMBEDDED_SETTINGS = settings(SETTINGS, max_examples=10)


class Edge(enum.Enum):
    """Amounts at the boundary of the debited account's balance (resolved against the model at step time)."""

    HALF = "half"
    ALL = "all"
    ALL_PLUS_ONE = "all+1"


AmountSpec = Decimal | Edge


def _amounts(unit: Decimal, top: int) -> st.SearchStrategy[AmountSpec]:
    """Whole amounts, amounts to the last decimal place, and amounts relative to the balance (a third each)."""
    steps = int(1 / unit)
    return st.one_of(
        st.integers(1, top).map(Decimal),
        st.integers(1, top * steps).map(lambda n: Decimal(n) * unit),
        st.sampled_from(Edge),
    )


CREDITS = _amounts(CREDIT_UNIT, 100)
DOLLARS = _amounts(CENT, 100)
CUSTOMER = st.integers(0, 3)
PARTNER = st.integers(0, 1)
THRESHOLD = st.one_of(st.none(), st.integers(0, 30_000).map(lambda n: Decimal(n) * CENT))


@dataclass(frozen=True)
class Call:
    """One idempotent call as made, and what it answered (a transfer id, or the refusal codes)."""

    operation: str
    key: str
    target: int  # partner index for fund, else customer index
    amount: Decimal
    outcome: int | tuple[ErrorCode, ...]


def codes(exc: DomainError) -> tuple[ErrorCode, ...]:
    return tuple(e.code for e in exc.errors)


@dataclass
class Model:
    """What the books must say, in exact Decimals."""

    balances: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    grants: dict[int, list[Decimal]] = field(default_factory=lambda: defaultdict(list))  # remaining, in id order
    assigned: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    used: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    pool_assigned: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    thresholds: dict[int, Decimal | None] = field(default_factory=dict)
    open_request: dict[int, bool] = field(default_factory=lambda: defaultdict(bool))
    transfers: int = 0

    def move(self, debit: ledger.AccountRef, credit: ledger.AccountRef, amount: Decimal) -> None:
        self.balances[debit.key] -= amount
        self.balances[credit.key] += amount
        self.transfers += 1

    def take_from_grants(self, customer_id: int, amount: Decimal, *, newest_first: bool) -> None:
        grants = self.grants[customer_id]
        order = range(len(grants) - 1, -1, -1) if newest_first else range(len(grants))
        left = amount
        for i in order:
            take = min(grants[i], left)
            grants[i] -= take
            left -= take
        assert left == ZERO, "model: grants do not cover the balance"

    def maybe_open_request(self, customer_id: int, wallet: ledger.AccountRef) -> None:
        threshold = self.thresholds.get(customer_id)
        if threshold is not None and self.balances[wallet.key] < threshold:
            self.open_request[customer_id] = True

    def snapshot(self) -> tuple[Any, ...]:
        return (
            {k: v for k, v in self.balances.items() if v},
            {k: list(v) for k, v in self.grants.items()},
            dict(self.assigned),
            dict(self.used),
            dict(self.pool_assigned),
            dict(self.thresholds),
            {k: v for k, v in self.open_request.items() if v},
            self.transfers,
        )


class LedgerMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.model = Model()
        self.partners: list[Partner] = []
        self.customers: list[Customer] = []
        self.keys = 0

    # ------------------------------------------------------------ plumbing

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs `coro` on the session loop (this thread is Hypothesis' worker thread) and waits for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=STEP_TIMEOUT)

    def attempt(self, action: Callable[[], Awaitable[T]]) -> T | tuple[ErrorCode, ...]:
        """The action's result, or the codes of the DomainError it raised."""

        async def go() -> T | tuple[ErrorCode, ...]:
            try:
                return await action()
            except DomainError as exc:
                return codes(exc)

        return self.run(go())

    def next_key(self) -> str:
        self.keys += 1
        return f"key-{self.keys}"

    def customer(self, index: int) -> Customer:
        return self.customers[index]

    def pool(self, customer: Customer) -> ledger.AccountRef:
        return ledger.partner_pool(customer.partner_id)

    def credits(self, customer: Customer) -> ledger.AccountRef:
        return ledger.customer_credits(customer.id, customer.partner_id)

    def wallet(self, customer: Customer) -> ledger.AccountRef:
        return ledger.customer_wallet(customer.id, customer.partner_id)

    def resolve(self, spec: AmountSpec, debit: ledger.AccountRef, unit: Decimal) -> Decimal:
        """Concrete amount: a literal, or half, all, or all plus one unit of the debited account's balance, at most
        LARGEST (a pool filled to the ledger's limit holds more than any input may carry)."""
        if isinstance(spec, Decimal):
            return spec
        balance = self.model.balances[debit.key]
        if spec is Edge.HALF:
            amount = (balance / 2).quantize(unit)
        else:
            amount = balance + (unit if spec is Edge.ALL_PLUS_ONE else ZERO)
        return min(amount, LARGEST) if amount > ZERO else unit

    # ------------------------------------------------------------ setup

    @initialize(
        pools=st.lists(st.integers(0, 500), min_size=2, max_size=2),
        credits=st.lists(st.integers(0, 100), min_size=4, max_size=4),
        wallets=st.lists(st.integers(0, 100), min_size=4, max_size=4),
    )
    def setup(self, pools: list[int], credits: list[int], wallets: list[int]) -> None:
        """Fresh tables, 2 partners × 2 customers, and some opening balances (shrinking towards none)."""

        async def go() -> tuple[list[Partner], list[Customer]]:
            await truncate_all()
            factory = Factory()
            partners, customers = [], []
            for _ in range(2):
                partner, _owner = await factory.partner()
                partners.append(partner)
                for _ in range(2):
                    customer, _admin = await factory.customer(partner)
                    customers.append(customer)
                    await billing_preferences_update(
                        SYSTEM, BillingPreferencesUpdate(customer.id, refill_amount=REFILL_AMOUNT)
                    )
            return partners, customers

        self.partners, self.customers = self.run(go())
        for customer in self.customers:
            self.model.thresholds[customer.id] = None
        for index, amount in enumerate(pools):
            if amount:
                self._first_call("fund", index, Decimal(amount))
        for operation, amounts in (("recharge", credits), ("refill", wallets)):
            for index, amount in enumerate(amounts):
                if amount:
                    self._first_call(operation, index, Decimal(amount))

    # ------------------------------------------------------------ idempotent services

    def _call(self, operation: str, target: int, amount: Decimal, key: str) -> int | tuple[ErrorCode, ...]:
        """Calls the service behind `operation`; returns the transfer id or the refusal codes."""

        async def go() -> int:
            if operation == "fund":
                answer = await partner_credits_add(SYSTEM, PartnerCreditsAdd(self.partners[target].id, amount, key))
            elif operation == "recharge":
                answer = await customer_credits_recharge(
                    SYSTEM, CustomerCreditsRecharge(self.customer(target).id, amount, key)
                )
            elif operation == "reclaim":
                answer = await customer_credits_reclaim(
                    SYSTEM, CustomerCreditsReclaim(self.customer(target).id, amount, key)
                )
            elif operation == "refill":
                answer = await wallet_refill(SYSTEM, WalletRefill(self.customer(target).id, amount, key, "ref"))
            else:
                raise AssertionError(operation)
            return answer.id

        return self.attempt(go)

    def _apply(self, operation: str, target: int, amount: Decimal) -> tuple[ErrorCode, ...] | None:
        """Applies a first-time call to the model; returns the expected refusal codes, or None for success."""
        m = self.model
        if operation == "fund":
            partner_id = self.partners[target].id
            funding = ledger.external_funding(Currency.CREDITS, partner_id)
            if m.balances[funding.key] - amount < -ledger.BALANCE_LIMIT:
                return (ErrorCode.LIMIT_EXCEEDED,)
            m.move(funding, ledger.partner_pool(partner_id), amount)
            return None
        customer = self.customer(target)
        if operation == "recharge":
            if m.balances[self.pool(customer).key] < amount:
                return (ErrorCode.POOL_EXHAUSTED,)
            m.move(self.pool(customer), self.credits(customer), amount)
            m.grants[customer.id].append(amount)
            m.assigned[customer.id] += amount
            m.pool_assigned[customer.partner_id] += amount
            return None
        if operation == "reclaim":
            if m.balances[self.credits(customer).key] < amount:
                return (ErrorCode.INSUFFICIENT_CREDITS,)
            m.move(self.credits(customer), self.pool(customer), amount)
            m.take_from_grants(customer.id, amount, newest_first=True)
            m.assigned[customer.id] -= amount
            m.pool_assigned[customer.partner_id] -= amount
            return None
        assert operation == "refill"
        m.move(ledger.external_funding(Currency.USD, customer.partner_id), self.wallet(customer), amount)
        m.open_request[customer.id] = False
        m.maybe_open_request(customer.id, self.wallet(customer))
        return None

    def _first_call(self, operation: str, target: int, amount: Decimal) -> Call:
        before = self.model.snapshot()
        expected = self._apply(operation, target, amount)
        outcome = self._call(operation, target, amount, key := self.next_key())
        if expected is None:
            assert isinstance(outcome, int), f"{operation} {amount} was refused: {outcome}"
        else:
            assert outcome == expected, f"{operation} {amount}: expected {expected}, got {outcome}"
            assert self.model.snapshot() == before
        return Call(operation, key, target, amount, outcome)

    @rule(target=calls, partner=PARTNER, amount=CREDITS)
    def fund(self, partner: int, amount: AmountSpec) -> Call:
        concrete = amount if isinstance(amount, Decimal) else Decimal(50)
        return self._first_call("fund", partner, concrete)

    @rule(target=calls, customer=CUSTOMER, amount=CREDITS)
    def recharge(self, customer: int, amount: AmountSpec) -> Call:
        concrete = self.resolve(amount, self.pool(self.customer(customer)), CREDIT_UNIT)
        return self._first_call("recharge", customer, concrete)

    @rule(target=calls, customer=CUSTOMER, amount=CREDITS)
    def reclaim(self, customer: int, amount: AmountSpec) -> Call:
        concrete = self.resolve(amount, self.credits(self.customer(customer)), CREDIT_UNIT)
        return self._first_call("reclaim", customer, concrete)

    @rule(target=calls, customer=CUSTOMER, amount=DOLLARS)
    def refill(self, customer: int, amount: AmountSpec) -> Call:
        concrete = amount if isinstance(amount, Decimal) else Decimal(25)
        return self._first_call("refill", customer, concrete)

    @rule(partner=PARTNER, beyond=st.booleans())
    def fund_to_the_limit(self, partner: int, beyond: bool) -> None:
        """An adjustment that takes the partner's credit funding account exactly to the ledger's limit, or one
        micro-credit past it (refused, nothing written)."""
        partner_id = self.partners[partner].id
        funding, pool = ledger.external_funding(Currency.CREDITS, partner_id), ledger.partner_pool(partner_id)
        room = ledger.BALANCE_LIMIT + self.model.balances[funding.key]
        amount = room + CREDIT_UNIT if beyond or room <= ZERO else room
        before = self.model.snapshot()

        async def go() -> int:
            async with in_transaction():
                return (await ledger.post(funding, pool, amount, TransferKind.ADJUSTMENT)).id

        outcome = self.attempt(go)
        if amount > room:
            assert outcome == (ErrorCode.LIMIT_EXCEEDED,), outcome
            assert self.model.snapshot() == before
            return
        assert isinstance(outcome, int), f"adjustment of {amount} to the limit was refused: {outcome}"
        self.model.move(funding, pool, amount)

    @rule(call=calls)
    def replay_same_input(self, call: Call) -> None:
        before = self.model.snapshot()
        outcome = self._call(call.operation, call.target, call.amount, call.key)
        assert outcome == call.outcome, f"replay of {call} answered {outcome}"
        assert self.model.snapshot() == before

    @rule(call=calls, other_target=st.booleans())
    def replay_different_input(self, call: Call, other_target: bool) -> None:
        before = self.model.snapshot()
        if other_target:
            target, amount = (call.target + 1) % (2 if call.operation == "fund" else 4), call.amount
        else:
            target, amount = call.target, call.amount + 1
        outcome = self._call(call.operation, target, amount, call.key)
        assert outcome == (ErrorCode.IDEMPOTENCY_KEY_REUSED,), f"reuse of {call} answered {outcome}"
        assert self.model.snapshot() == before

    # ------------------------------------------------------------ usage (in the caller's transaction)

    @rule(customer=CUSTOMER, amount=CREDITS)
    def burn(self, customer: int, amount: AmountSpec) -> None:
        c = self.customer(customer)
        concrete = self.resolve(amount, self.credits(c), CREDIT_UNIT)
        before = self.model.snapshot()

        async def go() -> int:
            async with in_transaction():
                return (await burn_credits(c, concrete)).id

        outcome = self.attempt(go)
        m = self.model
        if m.balances[self.credits(c).key] < concrete:
            assert outcome == (ErrorCode.INSUFFICIENT_CREDITS,), outcome
            assert m.snapshot() == before
            return
        assert isinstance(outcome, int), f"burn {concrete} was refused: {outcome}"
        m.move(self.credits(c), ledger.revenue(Currency.CREDITS, c.partner_id, c.id), concrete)
        m.take_from_grants(c.id, concrete, newest_first=False)
        m.used[c.id] += concrete

    @rule(customer=CUSTOMER, amount=DOLLARS)
    def charge(self, customer: int, amount: AmountSpec) -> None:
        c = self.customer(customer)
        concrete = self.resolve(amount, self.wallet(c), CENT)
        before = self.model.snapshot()

        async def go() -> int:
            async with in_transaction():
                return (await charge_wallet(c, concrete)).id

        outcome = self.attempt(go)
        m = self.model
        if m.balances[self.wallet(c).key] < concrete:
            assert outcome == (ErrorCode.INSUFFICIENT_BALANCE,), outcome
            assert m.snapshot() == before
            return
        assert isinstance(outcome, int), f"charge {concrete} was refused: {outcome}"
        m.move(self.wallet(c), ledger.revenue(Currency.USD, c.partner_id, c.id), concrete)
        if not m.open_request[c.id]:
            m.maybe_open_request(c.id, self.wallet(c))

    @rule(customer=CUSTOMER, threshold=THRESHOLD)
    def set_refill_threshold(self, customer: int, threshold: Decimal | None) -> None:
        c = self.customer(customer)
        # two decimals: never textually equal to the stored 6-decimal value, so it always counts as a change
        value = None if threshold is None else Decimal(f"{threshold:.2f}")
        outcome = self.attempt(
            lambda: billing_preferences_update(SYSTEM, BillingPreferencesUpdate(c.id, refill_threshold=value))
        )
        if threshold is not None and threshold > REFILL_AMOUNT:
            assert outcome == (ErrorCode.INVALID,), outcome
            return
        assert not isinstance(outcome, tuple), outcome
        self.model.thresholds[c.id] = threshold
        self.model.maybe_open_request(c.id, self.wallet(c))

    # ------------------------------------------------------------ invariants

    @invariant()
    def books_agree_with_the_model(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        m = self.model
        count, problems = await ledger.verify()
        # every balance equals credits − debits of its transfers; currencies sum to 0; non-negatives are ≥ 0
        assert problems == [], problems
        assert count == m.transfers

        accounts = await LedgerAccount.all().values("key", "currency", "balance", "non_negative")
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for row in accounts:
            totals[row["currency"]] += row["balance"]
            assert not (row["non_negative"] and row["balance"] < ZERO), row
            assert abs(row["balance"]) <= ledger.BALANCE_LIMIT, row
        assert all(total == ZERO for total in totals.values()), totals
        in_db = {row["key"]: row["balance"] for row in accounts if row["balance"] != ZERO}
        assert in_db == {k: v for k, v in m.balances.items() if v != ZERO}

        for c in self.customers:
            grants = await CreditGrant.filter(customer_id=c.id).order_by("id").values_list("remaining", flat=True)
            assert list(grants) == m.grants[c.id], (c.id, grants)
            assert sum(grants, ZERO) == m.balances[self.credits(c).key]
            assert all(g >= ZERO for g in grants)
        counters = {r.customer_id: r for r in await CustomerCredits.all()}
        for c in self.customers:
            counter = counters.get(c.id)
            assert (counter.assigned if counter else ZERO) == m.assigned[c.id]
            assert (counter.used if counter else ZERO) == m.used[c.id]
        pools = {r.partner_id: r.assigned for r in await PartnerPool.all()}
        for p in self.partners:
            assert pools.get(p.id, ZERO) == m.pool_assigned[p.id]

        requests = await RefillRequest.all().values("customer_id", "open_customer_id", "status")
        for c in self.customers:
            mine = [r for r in requests if r["customer_id"] == c.id]
            open_ = [r for r in mine if r["status"] == RefillRequestStatus.OPEN]
            assert len(open_) <= 1, mine
            assert all((r["open_customer_id"] == c.id) == (r["status"] == RefillRequestStatus.OPEN) for r in mine)
            assert bool(open_) == m.open_request[c.id], (c.id, mine)
            threshold = m.thresholds[c.id]
            if threshold is not None and m.balances[self.wallet(c).key] < threshold:
                assert open_, f"wallet of customer {c.id} is below its threshold with no open refill request"


async def _run_machine(machine_settings: settings) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run_state_machine_as_test, lambda: LedgerMachine(loop), settings=machine_settings)


@pytest.mark.postgres
async def test_ledger_state_machine(database: str) -> None:
    await _run_machine(SETTINGS)


@pytest.mark.skipif(IS_POSTGRES, reason="the PostgreSQL pass runs the full machine")
async def test_ledger_state_machine_embedded(database: str) -> None:
    """The embedded default (SQLite) keeps the same books, in fewer examples."""
    await _run_machine(EMBEDDED_SETTINGS)


async def test_balances_with_16_significant_digits_stay_exact(database: str) -> None:
    # given a pool funded with an amount of 16 significant digits (MAX_AMOUNT allows up to 10^12 with 6 decimals)
    pool, revenue = ledger.partner_pool(1), ledger.revenue(Currency.CREDITS, 1)
    async with in_transaction():
        await ledger.post(
            ledger.external_funding(Currency.CREDITS, 1), pool, Decimal("1234567890.123456"), TransferKind.ADJUSTMENT
        )
    # when one micro-credit leaves it
    async with in_transaction():
        await ledger.post(pool, revenue, CREDIT_UNIT, TransferKind.ADJUSTMENT)
    # then the balance is exact (SQLite would compute `balance - ?` in floating point: 15 significant digits)
    assert await ledger.balance_of(pool) == Decimal("1234567890.123455")
    assert (await ledger.verify())[1] == []
