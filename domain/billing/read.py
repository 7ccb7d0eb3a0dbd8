"""Read models of billing: credit meters, partner pools, wallets (with the low-balance rule) and preferences, each
for many customers or partners in a fixed number of queries (DataLoader batches, live views)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from tortoise import connections
from tortoise.expressions import Subquery
from tortoise.functions import Sum
from tortoise.queryset import QuerySet

from domain.billing.models import BillingPreferences, CustomerCredits, PartnerPool, RefillRequest
from domain.ledger import services as ledger
from domain.ledger.models import LedgerAccount, Transfer, TransferKind

ZERO = Decimal(0)
# The optional low-balance alert fires below this share of the refill amount.
LOW_BALANCE_RATIO = Decimal("0.30")
CRITICAL_RATIO = Decimal("0.10")


class CustomerKey(Protocol):
    """What the reads need of a customer: a Customer row, or the reference a live view keeps instead."""

    @property
    def id(self) -> int: ...

    @property
    def partner_id(self) -> int: ...


def low_balance_level(refill_amount: Decimal | None) -> Decimal | None:
    """The wallet balance below which the optional low-balance alert fires: 30% of the refill amount."""
    return refill_amount * LOW_BALANCE_RATIO if refill_amount is not None else None


@dataclass(frozen=True, slots=True)
class CreditState:
    customer_id: int
    available: Decimal
    used: Decimal
    assigned: Decimal
    expired: Decimal
    low_threshold: Decimal | None

    @property
    def health(self) -> str:
        """CRITICAL below 10% of assigned, LOW below the customer's low-credit threshold, else OK."""
        if self.assigned > ZERO and self.available < self.assigned * CRITICAL_RATIO:
            return "CRITICAL"
        if self.low_threshold is not None and self.available < self.low_threshold:
            return "LOW"
        return "OK"


async def credit_states(customers: Sequence[CustomerKey]) -> dict[int, CreditState]:
    """Credit meters of many customers in three queries (DataLoader batch)."""
    ids = [c.id for c in customers]
    refs = {c.id: ledger.customer_credits(c.id, c.partner_id) for c in customers}
    balances = await ledger.balances_of(list(refs.values()))
    counters = {row.customer_id: row for row in await CustomerCredits.filter(customer_id__in=ids)}
    prefs = {row.customer_id: row for row in await BillingPreferences.filter(customer_id__in=ids)}
    out = {}
    for c in customers:
        counter, pref = counters.get(c.id), prefs.get(c.id)
        out[c.id] = CreditState(
            customer_id=c.id,
            available=balances[refs[c.id].key],
            used=counter.used if counter else ZERO,
            assigned=counter.assigned if counter else ZERO,
            expired=counter.expired if counter else ZERO,
            low_threshold=pref.low_credit_threshold if pref else None,
        )
    return out


@dataclass(frozen=True, slots=True)
class PoolState:
    partner_id: int
    available: Decimal
    assigned: Decimal


async def pool_states(partner_ids: list[int]) -> dict[int, PoolState]:
    refs = {pid: ledger.partner_pool(pid) for pid in partner_ids}
    balances = await ledger.balances_of(list(refs.values()))
    assigned = {row.partner_id: row.assigned for row in await PartnerPool.filter(partner_id__in=partner_ids)}
    return {pid: PoolState(pid, balances[refs[pid].key], assigned.get(pid, ZERO)) for pid in partner_ids}


async def preferences_of(customer_ids: list[int]) -> dict[int, BillingPreferences]:
    """Stored preferences, or unsaved defaults for customers that never changed them."""
    found = {row.customer_id: row for row in await BillingPreferences.filter(customer_id__in=customer_ids)}
    return {cid: found.get(cid) or BillingPreferences(customer_id=cid) for cid in customer_ids}


async def _sums_by(queryset: QuerySet[Transfer], group: str, field: str) -> dict[Hashable, Decimal]:
    """Σ `field` per `group`: SQL on PostgreSQL (exact NUMERIC), Python on SQLite (whose SUM is inexact)."""
    totals: dict[Hashable, Decimal] = {}
    if connections.get("default").capabilities.dialect == "postgres":
        rows = await queryset.annotate(total=Sum(field)).group_by(group).values(group, "total")
        return {row[group]: Decimal(row["total"] or 0) for row in rows}
    for key, value in await queryset.values_list(group, field):
        totals[key] = totals.get(key, ZERO) + Decimal(value)
    return totals


@dataclass(frozen=True, slots=True)
class WalletState:
    customer_id: int
    balance: Decimal
    refill_amount: Decimal | None
    refill_threshold: Decimal | None
    average_daily_spend: Decimal | None
    refill_request: RefillRequest | None

    @property
    def low_balance_level(self) -> Decimal | None:
        return low_balance_level(self.refill_amount)

    @property
    def estimated_days_until_refill(self) -> Decimal | None:
        """(balance − threshold) ÷ trailing 7-day average daily spend; None without spend or threshold."""
        if not self.average_daily_spend or self.refill_threshold is None:
            return None
        days = (self.balance - self.refill_threshold) / self.average_daily_spend
        return max(days, ZERO).quantize(Decimal("0.1"))


async def wallet_states(customers: Sequence[CustomerKey], at: datetime | None = None) -> dict[int, WalletState]:
    """Wallets of many customers in four queries (DataLoader batch)."""
    ids = [c.id for c in customers]
    refs = {c.id: ledger.customer_wallet(c.id, c.partner_id) for c in customers}
    prefs = await preferences_of(ids)
    accounts = {
        a.key: a
        for a in await LedgerAccount.filter(key__in=[r.key for r in refs.values()]).only("id", "key", "balance")
    }
    since = (at or datetime.now(UTC)) - timedelta(days=7)
    account_ids = [a.id for a in accounts.values()]
    spend = (
        await _sums_by(
            Transfer.filter(debit_account_id__in=account_ids, kind=TransferKind.USAGE_CHARGE, created_at__gte=since),
            "debit_account_id",
            "amount",
        )
        if account_ids
        else {}
    )
    requests = {r.customer_id: r for r in await RefillRequest.filter(open_customer_id__in=ids)}
    out = {}
    for c in customers:
        account = accounts.get(refs[c.id].key)
        week = spend.get(account.id, ZERO) if account else ZERO
        out[c.id] = WalletState(
            c.id,
            account.balance if account else ZERO,
            prefs[c.id].refill_amount,
            prefs[c.id].refill_threshold,
            week / 7 if week > ZERO else None,
            requests.get(c.id),
        )
    return out


async def wallet_state(customer: CustomerKey, at: datetime | None = None) -> WalletState:
    return (await wallet_states([customer], at))[customer.id]


def refills_of(customer: CustomerKey) -> QuerySet[Transfer]:
    """Refill transfers into the customer's wallet (a queryset; newest first when paginated)."""
    ref = ledger.customer_wallet(customer.id, customer.partner_id)
    return Transfer.filter(
        credit_account_id__in=Subquery(LedgerAccount.filter(key=ref.key).values("id")), kind=TransferKind.WALLET_REFILL
    )
