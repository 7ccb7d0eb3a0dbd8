"""Posting transfers and checking the books.

`post()` runs inside the caller's transaction: it locks both accounts (FOR UPDATE, in id order so opposite
transfers cannot deadlock), refuses to take a non-negative account below zero or any account beyond ±10^21
(`BALANCE_LIMIT`, LIMIT_EXCEEDED), moves the balances and writes the immutable transfer with both balances after.
Nothing is written when it refuses.

A partner's revenue is split into `REVENUE_SHARDS` sub-accounts per currency, each customer's charges landing on one
chosen by its id (`revenue(currency, partner_id, customer_id)`): every charge used to lock the one revenue account
of its partner, so a partner's customers queued behind each other. A sub-account is an account like any other
(Σ = 0 per currency still holds after every transfer); the partner's revenue is their sum (`revenue_balance`).
Sub-account 0 is the account that existed before the split, so its transfers and balance stay as they were.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal
from functools import cache
from typing import Any, NamedTuple, TypeVar

from tortoise.backends.asyncpg import AsyncpgDBClient
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from domain.common.json import JsonMapping, to_json
from domain.common.rows import columns, from_row, saved
from domain.errors import DomainError, ErrorCode, FieldError
from domain.ledger.models import NON_NEGATIVE_KINDS, AccountKind, Currency, LedgerAccount, Transfer, TransferKind

ZERO = Decimal(0)
# Every balance stays within ±BALANCE_LIMIT, so an account that fills up refuses further transfers with a code. The
# bound is Python's, not the column's (NUMERIC(38, 6) holds 10^32): the default decimal context computes 28
# significant digits, which with 6 decimals is exact below 10^22, for a balance and for the sum of two of them.
BALANCE_LIMIT = Decimal(10) ** 21
SHORTFALL_CODES = {
    AccountKind.PARTNER_POOL: (ErrorCode.POOL_EXHAUSTED, "The partner's credit pool does not hold enough credits."),
    AccountKind.CUSTOMER_CREDITS: (ErrorCode.INSUFFICIENT_CREDITS, "The customer does not have enough credits."),
    AccountKind.CUSTOMER_WALLET: (ErrorCode.INSUFFICIENT_BALANCE, "The wallet balance is too low."),
}


# Sub-accounts of each partner's revenue per currency (see the module docstring). Changing it only changes where new
# charges land: every sub-account ever used keeps counting in `revenue_balance`.
REVENUE_SHARDS = 16

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Names an account; it is created on first use. `shard`: which sub-account of a split account (revenue)."""

    kind: AccountKind
    currency: Currency
    partner_id: int | None = None
    customer_id: int | None = None
    shard: int = 0

    @property
    def key(self) -> str:
        key = f"{self.kind}:{self.currency}:{self.partner_id or '-'}:{self.customer_id or '-'}"
        return f"{key}:{self.shard}" if self.shard else key


def partner_pool(partner_id: int) -> AccountRef:
    return AccountRef(AccountKind.PARTNER_POOL, Currency.CREDITS, partner_id=partner_id)


def customer_credits(customer_id: int, partner_id: int) -> AccountRef:
    return AccountRef(AccountKind.CUSTOMER_CREDITS, Currency.CREDITS, partner_id=partner_id, customer_id=customer_id)


def customer_wallet(customer_id: int, partner_id: int) -> AccountRef:
    return AccountRef(AccountKind.CUSTOMER_WALLET, Currency.USD, partner_id=partner_id, customer_id=customer_id)


def customer_invoice(customer_id: int, partner_id: int) -> AccountRef:
    return AccountRef(AccountKind.CUSTOMER_INVOICE, Currency.USD, partner_id=partner_id, customer_id=customer_id)


def revenue_shard(customer_id: int) -> int:
    """The revenue sub-account a customer's charges land on: a multiplicative hash of its id (customers of one
    partner often have ids in arithmetic progression, which `id % n` would put on one sub-account)."""
    return ((customer_id * 0x9E3779B1) & 0xFFFFFFFF) * REVENUE_SHARDS >> 32


def revenue(currency: Currency, partner_id: int, customer_id: int | None = None) -> AccountRef:
    """The partner's revenue sub-account for this customer's charges (sub-account 0 without a customer). It belongs
    to the partner alone: its `customer_id` stays unset, so the customer never owns or sees it."""
    shard = revenue_shard(customer_id) if customer_id is not None else 0
    return AccountRef(AccountKind.REVENUE, currency, partner_id=partner_id, shard=shard)


async def revenue_balance(currency: Currency, partner_id: int) -> Decimal:
    """The partner's revenue in `currency`: the sum of its sub-accounts."""
    rows = await LedgerAccount.filter(kind=AccountKind.REVENUE, currency=currency, partner_id=partner_id).values_list(
        "balance", flat=True
    )
    total = ZERO
    for value in rows:
        total = _WIDE.add(total, Decimal(value))
    return total


def external_funding(currency: Currency, partner_id: int) -> AccountRef:
    """Where money or credits enter one partner's books from outside (one per partner: no tenant's volume can fill
    an account another tenant posts to)."""
    return AccountRef(AccountKind.EXTERNAL_FUNDING, currency, partner_id=partner_id)


def expired_credits(partner_id: int) -> AccountRef:
    return AccountRef(AccountKind.EXPIRED, Currency.CREDITS, partner_id=partner_id)


def partner_usd(partner_id: int) -> AccountRef:
    """What a partner owes the platform (negative) or has paid ahead: its purchases (storage) debit it."""
    return AccountRef(AccountKind.PARTNER_USD, Currency.USD, partner_id=partner_id)


def platform_revenue(partner_id: int) -> AccountRef:
    """The platform's revenue from one partner (its own account per partner, like every other)."""
    return AccountRef(AccountKind.PLATFORM_REVENUE, Currency.USD, partner_id=partner_id)


async def ensure_accounts(*refs: AccountRef) -> None:
    await LedgerAccount.bulk_create(
        [
            LedgerAccount(
                key=r.key,
                kind=r.kind,
                currency=r.currency,
                partner_id=r.partner_id,
                customer_id=r.customer_id,
                non_negative=r.kind in NON_NEGATIVE_KINDS,
                balance=ZERO,
            )
            for r in refs
        ],
        ignore_conflicts=True,
    )


class FirstUse(Exception):
    """Raised inside a transaction by a path that locks its accounts together with rows that must be locked after
    them (the month's spend, say) and then finds one of them missing: `with_accounts` rolls it back, creates the
    accounts (empty, committed on their own) and runs it again, so no account is created while those rows are held."""

    def __init__(self, *refs: AccountRef) -> None:
        super().__init__(", ".join(r.key for r in refs))
        self.refs = refs


async def with_accounts(attempt: Callable[[], Awaitable[T]]) -> T:
    """Runs `attempt` (which opens its own transaction), creating the accounts it reports missing (`FirstUse`)."""
    for _ in range(3):
        try:
            return await attempt()
        except FirstUse as first:
            async with in_transaction():
                await ensure_accounts(*first.refs)
    raise RuntimeError("accounts created for a transaction kept disappearing")


async def lock_accounts(*refs: AccountRef, locked: Sequence[LedgerAccount] | None = None) -> dict[str, LedgerAccount]:
    """Locks the accounts (creating missing ones) in id order; call inside a transaction. `locked`: what a caller's
    own statement read as `lock_accounts_sql()` does (missing ones are then created and all of them locked here).

    When any of them is missing, none is locked before the missing ones are created: a transaction that held some
    of them while it waited on another's uncommitted creation of one of the others, which in turn waited on one it
    held, deadlocked (two concurrent charges of a customer whose revenue sub-account was new, while its credits
    account had just been created by a third)."""
    keys = sorted({r.key for r in refs})
    rows = list(locked) if locked is not None else await _lock_rows(keys)
    if len(rows) < len(keys):
        found = {row.key for row in rows}
        await ensure_accounts(*(r for r in refs if r.key not in found))
        rows = await _lock_rows(keys)
    return {row.key: row for row in rows}


@cache
def lock_accounts_sql(keys: str = "$1") -> str:
    """The accounts whose keys the text array parameter `keys` names, locked in id order (all of their columns),
    only if all of them exist (else none is locked nor returned: see `lock_accounts`)."""
    return (
        f"SELECT {columns(LedgerAccount, 'a')} FROM ledger_account a WHERE key = ANY({keys}::text[]) "
        f"AND (SELECT count(*) FROM ledger_account e WHERE e.key = ANY({keys}::text[])) = cardinality({keys}::text[]) "
        "ORDER BY id FOR UPDATE"
    )


def _postgres(db: BaseDBAsyncClient) -> bool:
    return isinstance(db, AsyncpgDBClient)


async def _lock_rows(keys: list[str]) -> list[LedgerAccount]:
    """`SELECT … FOR UPDATE` in id order. On PostgreSQL one prepared statement with an array parameter, the rows
    built without Tortoise's query machinery (a third of the client CPU of a transfer went there); SQLite has no
    row locks and runs one write transaction at a time, so the ORM's read is as good."""
    db = LedgerAccount._meta.db  # the caller's transaction
    if _postgres(db):
        return [from_row(LedgerAccount, row) for row in await db.execute_query_dict(lock_accounts_sql(), [keys])]
    return await LedgerAccount.filter(key__in=keys).order_by("id").select_for_update()


async def balance_of(ref: AccountRef) -> Decimal:
    row = await LedgerAccount.filter(key=ref.key).only("balance").first()
    return row.balance if row else ZERO


async def balances_of(refs: list[AccountRef]) -> dict[str, Decimal]:
    rows = await LedgerAccount.filter(key__in=[r.key for r in refs]).only("key", "balance")
    found = {row.key: row.balance for row in rows}
    return {r.key: found.get(r.key, ZERO) for r in refs}


def shortfall(account: LedgerAccount) -> DomainError:
    code, message = SHORTFALL_CODES.get(account.kind, (ErrorCode.INSUFFICIENT_BALANCE, "Insufficient balance."))
    return DomainError.single(code, message)


class LimitExceeded(DomainError):
    """A transfer would take an account beyond ±BALANCE_LIMIT (LIMIT_EXCEEDED); raised before anything is written."""


def check_limits(
    locked: Mapping[str, LedgerAccount],
    moves: Sequence[tuple[AccountRef, AccountRef, Decimal]],
    error_field: str | None = None,
) -> None:
    """Raises LIMIT_EXCEEDED when these (debit, credit, amount) moves, applied in order to the locked balances,
    would take an account beyond ±BALANCE_LIMIT. Writes nothing: a caller checks a whole batch before posting."""
    after: dict[str, Decimal] = {}
    for debit, credit, amount in moves:
        if debit.key == credit.key:
            continue
        for ref, delta in ((debit, -amount), (credit, amount)):
            balance = after.get(ref.key, locked[ref.key].balance) + delta
            if abs(balance) > BALANCE_LIMIT:
                raise LimitExceeded(
                    FieldError(
                        error_field,
                        "This would take an account of the ledger beyond its limit.",
                        ErrorCode.LIMIT_EXCEEDED,
                    )
                )
            after[ref.key] = balance


def _check_amount(debit: AccountRef, credit: AccountRef, amount: Decimal, error_field: str | None) -> None:
    """A transfer moves a positive amount of one currency (checked before any account is locked)."""
    if debit.currency != credit.currency:
        raise ValueError("a transfer moves one currency")
    if not amount.is_finite() or amount <= ZERO:
        raise DomainError.single(ErrorCode.INVALID, "Amount must be positive.", error_field)


def _guarded(
    accounts: Mapping[str, LedgerAccount],
    debit: AccountRef,
    credit: AccountRef,
    amount: Decimal,
    error_field: str | None,
) -> tuple[LedgerAccount, LedgerAccount]:
    """The locked (source, target) of a transfer, once a guarded source would not go below zero and neither
    balance would pass ±BALANCE_LIMIT; the rules of `post` and `Postings.add` alike."""
    source, target = accounts[debit.key], accounts[credit.key]
    if source.non_negative and source.balance - amount < ZERO:
        error = shortfall(source)
        raise DomainError.single(error.errors[0].code, error.errors[0].message, error_field)
    check_limits(accounts, [(debit, credit, amount)], error_field)
    return source, target


async def post(
    debit: AccountRef,
    credit: AccountRef,
    amount: Decimal,
    kind: TransferKind,
    *,
    metadata: JsonMapping | None = None,
    idempotency_key: str | None = None,
    locked: Mapping[str, LedgerAccount] | None = None,
    error_field: str | None = None,
) -> Transfer:
    """Moves `amount` from `debit` to `credit`. Must run inside a transaction; raises before writing anything."""
    _check_amount(debit, credit, amount, error_field)
    accounts = (
        dict(locked) if locked and debit.key in locked and credit.key in locked else await lock_accounts(debit, credit)
    )
    source, target = _guarded(accounts, debit, credit, amount, error_field)
    moves = source.id != target.id  # a transfer to itself moves nothing
    row: dict[str, Any] = {
        "debit_account_id": source.id,
        "credit_account_id": target.id,
        "amount": amount,
        "currency": debit.currency,
        "kind": kind,
        "debit_balance_after": source.balance - amount if moves else source.balance,
        "credit_balance_after": target.balance + amount if moves else target.balance,
        "idempotency_key": idempotency_key,
        "metadata": dict(metadata or {}),
    }
    db = LedgerAccount._meta.db  # the caller's transaction
    if _postgres(db):
        transfer = await _move_and_write(db, row)
    else:
        if moves:
            # SQLite computes `balance - ?` in floating point (15 significant digits: 1234567890.123456 - 0.000001
            # gave 1234567890.12346), so write the exact results instead; the balances were read in this
            # transaction, and SQLite runs one write transaction at a time.
            await LedgerAccount.filter(id=source.id).update(balance=source.balance - amount)
            await LedgerAccount.filter(id=target.id).update(balance=target.balance + amount)
        transfer = await Transfer.create(**row)
    source.balance -= amount
    target.balance += amount
    return transfer


class PlannedTransfer(NamedTuple):
    """A transfer `Postings` planned: the row `post` would have written."""

    debit_account_id: int
    credit_account_id: int
    amount: Decimal
    currency: Currency
    kind: TransferKind
    debit_balance_after: Decimal
    credit_balance_after: Decimal
    metadata: JsonMapping


@dataclass(slots=True)
class Postings:
    """Transfers planned against accounts the caller locked, for a writer that puts them in one statement with its
    other writes (the metering path on PostgreSQL). `add` applies `post`'s rules (positive amount, one currency,
    guarded accounts, ±BALANCE_LIMIT) and keeps the locked balances current as `post` does; the caller writes
    `transfers` (in order) and moves each account by `deltas` in its transaction. Nothing is written here."""

    locked: Mapping[str, LedgerAccount]
    transfers: list[PlannedTransfer] = field(default_factory=list)
    deltas: dict[int, Decimal] = field(default_factory=dict)

    def add(
        self,
        debit: AccountRef,
        credit: AccountRef,
        amount: Decimal,
        kind: TransferKind,
        *,
        metadata: JsonMapping | None = None,
        error_field: str | None = None,
    ) -> PlannedTransfer:
        _check_amount(debit, credit, amount, error_field)
        source, target = _guarded(self.locked, debit, credit, amount, error_field)
        if source.id != target.id:
            self.deltas[source.id] = self.deltas.get(source.id, ZERO) - amount
            self.deltas[target.id] = self.deltas.get(target.id, ZERO) + amount
        source.balance -= amount
        target.balance += amount
        planned = PlannedTransfer(
            source.id,
            target.id,
            amount,
            debit.currency,
            kind,
            source.balance,
            target.balance,
            dict(metadata or {}),
        )
        self.transfers.append(planned)
        return planned


# Both balances and the transfer in one statement on PostgreSQL (the rows are already locked by `lock_accounts`):
# two round trips fewer than two ORM updates and an ORM insert, and no query building (bench/ledger.py).
_MOVE_AND_WRITE_SQL = (
    "WITH moved AS (UPDATE ledger_account SET balance = balance + "
    "CASE WHEN id = $1 THEN -$3::numeric ELSE $3::numeric END WHERE id IN ($1, $2) AND $1 <> $2) "
    "INSERT INTO ledger_transfer (debit_account_id, credit_account_id, amount, currency, kind, debit_balance_after, "
    "credit_balance_after, idempotency_key, metadata, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10) RETURNING id"
)


async def _move_and_write(db: BaseDBAsyncClient, row: dict[str, Any]) -> Transfer:
    """The moves and the transfer row; returns the Transfer as `Transfer.create` would have."""
    created_at = datetime.now(UTC)
    found = await db.execute_query_dict(
        _MOVE_AND_WRITE_SQL,
        [
            row["debit_account_id"],
            row["credit_account_id"],
            row["amount"],
            str(row["currency"]),
            str(row["kind"]),
            row["debit_balance_after"],
            row["credit_balance_after"],
            row["idempotency_key"],
            to_json(row["metadata"]),
            created_at,
        ],
    )
    return saved(Transfer, id=found[0]["id"], created_at=created_at, **row)


# Sums over all accounts may pass the 28 digits of the default context (which would round them): these stay exact.
_WIDE = Context(prec=60)


@dataclass(frozen=True, slots=True)
class LedgerProblem:
    account_key: str | None
    message: str


async def verify() -> tuple[int, list[LedgerProblem]]:
    """Recomputes every balance from the transfers; reports mismatches and currencies that do not sum to zero."""
    expected: dict[int, Decimal] = defaultdict(Decimal)
    count = 0
    last = 0
    while True:
        batch = (
            await Transfer.filter(id__gt=last)
            .order_by("id")
            .limit(5000)
            .values("id", "debit_account_id", "credit_account_id", "amount")
        )
        if not batch:
            break
        for row in batch:
            expected[row["debit_account_id"]] = _WIDE.subtract(expected[row["debit_account_id"]], row["amount"])
            expected[row["credit_account_id"]] = _WIDE.add(expected[row["credit_account_id"]], row["amount"])
        count += len(batch)
        last = batch[-1]["id"]
    problems: list[LedgerProblem] = []
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for account in await LedgerAccount.all().order_by("id"):
        totals[account.currency] = _WIDE.add(totals[account.currency], account.balance)
        if account.balance != expected.get(account.id, ZERO):
            problems.append(
                LedgerProblem(
                    account.key, f"balance {account.balance} but transfers say {expected.get(account.id, ZERO)}"
                )
            )
        if account.non_negative and account.balance < ZERO:
            problems.append(LedgerProblem(account.key, f"non-negative account is at {account.balance}"))
    for currency, total in sorted(totals.items()):
        if total != ZERO:
            problems.append(LedgerProblem(None, f"{currency} balances sum to {total}, not 0"))
    return count, problems
