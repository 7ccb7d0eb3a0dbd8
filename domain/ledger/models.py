"""The double-entry ledger: accounts per currency and immutable transfers between them (TigerBeetle-like).

balance = credits − debits. A transfer debits one account and credits another by the same positive amount, so
the sum of all balances per currency is always zero. System accounts (external funding, revenue, invoice
accrual) may go negative; customer- and partner-owned stores of value are flagged `non_negative` and the posting
code refuses to take them below zero (with a CHECK constraint as the last line of defence on PostgreSQL).

Every account belongs to one partner (and maybe one customer), so no tenant's volume can fill an account another
tenant posts to. Databases from before migration 0009 keep one shared EXTERNAL_FUNDING account per currency (no
partner): it is left as it was, with its transfers, and receives no new ones.

Balances, amounts and running totals are NUMERIC(38, 6) (`MONEY_DIGITS`): `ledger.post` keeps every balance
within ±10^21 (`BALANCE_LIMIT`), far inside what the column holds, so a limit is reached as a coded refusal, never
as a database error, and running totals of usage have room beyond it.
"""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.common.json import JsonObject

# digits of balances, amounts and running totals, 6 of them decimals (up to 10^32)
MONEY_DIGITS = 38


class Currency(enum.StrEnum):
    CREDITS = "CREDITS"
    USD = "USD"


class AccountKind(enum.StrEnum):
    PARTNER_POOL = "PARTNER_POOL"  # a partner's AI-credit pool
    CUSTOMER_CREDITS = "CUSTOMER_CREDITS"  # a customer's AI credits
    CUSTOMER_WALLET = "CUSTOMER_WALLET"  # a customer's prepaid USD wallet
    CUSTOMER_INVOICE = "CUSTOMER_INVOICE"  # USD a monthly-invoice customer owes (negative = owed)
    REVENUE = "REVENUE"  # where usage lands (per currency)
    EXTERNAL_FUNDING = "EXTERNAL_FUNDING"  # the outside world: money and credits enter a partner from here
    EXPIRED = "EXPIRED"  # credits that expired unused
    PARTNER_USD = "PARTNER_USD"  # a partner's USD account with the platform: purchases debit it (negative = owed)
    PLATFORM_REVENUE = "PLATFORM_REVENUE"  # what the platform earned from one partner (storage purchases)


NON_NEGATIVE_KINDS = frozenset({AccountKind.PARTNER_POOL, AccountKind.CUSTOMER_CREDITS, AccountKind.CUSTOMER_WALLET})


class TransferKind(enum.StrEnum):
    PARTNER_CREDITS_ADD = "PARTNER_CREDITS_ADD"
    CREDITS_RECHARGE = "CREDITS_RECHARGE"
    CREDITS_RECLAIM = "CREDITS_RECLAIM"
    CREDITS_GRANT = "CREDITS_GRANT"
    CREDITS_EXPIRY = "CREDITS_EXPIRY"
    WALLET_REFILL = "WALLET_REFILL"
    USAGE_CHARGE = "USAGE_CHARGE"
    INVOICE_PAYMENT = "INVOICE_PAYMENT"
    ADJUSTMENT = "ADJUSTMENT"
    STORAGE_PURCHASE = "STORAGE_PURCHASE"


class LedgerAccount(models.Model):
    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=80, unique=True)
    kind = fields.CharEnumField(AccountKind, max_length=24)
    currency = fields.CharEnumField(Currency, max_length=8)
    partner_id = fields.IntField(null=True)
    customer_id = fields.IntField(null=True)
    non_negative = fields.BooleanField(default=False)
    balance = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ledger_account"
        indexes = (("customer_id", "kind"), ("partner_id", "kind"))


class Transfer(models.Model):
    """Immutable. `debit_balance_after` / `credit_balance_after` snapshot both sides at posting time."""

    id = fields.BigIntField(primary_key=True)
    debit_account: fields.ForeignKeyRelation[LedgerAccount] = fields.ForeignKeyField(
        "models.LedgerAccount", related_name="debits", on_delete=fields.RESTRICT
    )
    credit_account: fields.ForeignKeyRelation[LedgerAccount] = fields.ForeignKeyField(
        "models.LedgerAccount", related_name="credits", on_delete=fields.RESTRICT
    )
    amount = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    currency = fields.CharEnumField(Currency, max_length=8)
    kind = fields.CharEnumField(TransferKind, max_length=24)
    debit_balance_after = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    credit_balance_after = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    idempotency_key = fields.CharField(max_length=300, null=True, unique=True)
    metadata: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    debit_account_id: int
    credit_account_id: int

    class Meta:
        table = "ledger_transfer"
        indexes = (("debit_account_id", "id"), ("credit_account_id", "id"), ("kind", "created_at"))


class IdempotencyStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class IdempotencyRecord(models.Model):
    """One per (scope, key), inserted in the transaction of the effect. The first outcome is replayed forever."""

    id = fields.BigIntField(primary_key=True)
    scope_key = fields.CharField(max_length=400, unique=True)
    operation = fields.CharField(max_length=64)
    request_hash = fields.CharField(max_length=64)
    claim = fields.CharField(max_length=32)
    status = fields.CharEnumField(IdempotencyStatus, max_length=12, default=IdempotencyStatus.PENDING)
    response: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "idempotency_record"
