"""Metering: rate cards, usage events (partitioned by month on PostgreSQL), daily rollups, monthly spend, holds,
cap crossings and phone numbers."""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.common.json import JsonObject
from domain.ledger.models import MONEY_DIGITS


class UnitType(enum.StrEnum):
    VOICE_MINUTES = "VOICE_MINUTES"
    SMS_SEGMENTS = "SMS_SEGMENTS"
    CHAT_TURNS = "CHAT_TURNS"
    EMAILS = "EMAILS"
    PHONE_NUMBER_MONTHS = "PHONE_NUMBER_MONTHS"
    STORAGE_MB = "STORAGE_MB"


class Funding(enum.StrEnum):
    """Where an event's cost went: burned credits, the wallet, or the month's invoice."""

    CREDITS = "CREDITS"
    WALLET = "WALLET"
    INVOICE = "INVOICE"


class RateCardEntry(models.Model):
    """A partner's price for a unit type from `effective_from` on (None until: current)."""

    id = fields.IntField(primary_key=True)
    partner_id = fields.IntField()
    unit_type = fields.CharEnumField(UnitType, max_length=24)
    price = fields.DecimalField(max_digits=20, decimal_places=6)
    credit_price = fields.DecimalField(max_digits=20, decimal_places=6)
    effective_from = fields.DatetimeField()
    effective_to = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "rate_card_entry"
        indexes = (("partner_id", "unit_type", "effective_from"),)


class Direction(enum.StrEnum):
    """Which way a call or message went."""

    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class UsageEvent(models.Model):
    """One metered event, rated at record time. On PostgreSQL the table is partitioned by month of occurred_at.

    Calls and messages may carry their details (direction, numbers, duration or segments, campaign, the platform's
    call id): the call-level CSVs list them."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    unit_type = fields.CharEnumField(UnitType, max_length=24)
    quantity = fields.DecimalField(max_digits=20, decimal_places=6)
    occurred_at = fields.DatetimeField()
    recorded_at = fields.DatetimeField()
    case_type = fields.CharField(max_length=64, default="")
    idempotency_key = fields.CharField(max_length=255)
    hold_id = fields.BigIntField(null=True)
    unit_price = fields.DecimalField(max_digits=20, decimal_places=6)
    cost = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    credits = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    funding = fields.CharEnumField(Funding, max_length=8)
    paid = fields.BooleanField()
    transfer_id = fields.BigIntField(null=True)
    metadata: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    direction = fields.CharEnumField(Direction, max_length=8, null=True)
    from_number = fields.CharField(max_length=32, null=True)
    to_number = fields.CharField(max_length=32, null=True)
    duration_seconds = fields.IntField(null=True)
    segments = fields.IntField(null=True)
    campaign_id = fields.IntField(null=True)
    call_id = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "usage_event"
        indexes = (("customer_id", "occurred_at"),)


class UsageDedup(models.Model):
    """Idempotency keys of accepted events. Events older than the acceptance window are refused anyway, so rows
    past it can be pruned. On PostgreSQL the table's key is (customer_id, idempotency_key) alone: `id` is filled by
    its sequence but not indexed (migration 0017; nothing reads a row by it)."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    idempotency_key = fields.CharField(max_length=255)
    created_at = fields.DatetimeField()

    class Meta:
        table = "usage_dedup"
        unique_together = (("customer_id", "idempotency_key"),)


class UsageRollup(models.Model):
    """Per customer, UTC day and unit type: what the dashboard and summaries read."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    day = fields.DateField()
    unit_type = fields.CharEnumField(UnitType, max_length=24)
    events = fields.IntField(default=0)
    quantity = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    cost = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    credits = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    unpaid_cost = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)

    class Meta:
        table = "usage_rollup"
        unique_together = (("customer_id", "day", "unit_type"),)


class UsageRollupDetail(models.Model):
    """Per customer, UTC day, unit type, case type and campaign (0: none): what summaries filtered by case type or
    campaign read, so they stay rollups rather than scans of the events."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    day = fields.DateField()
    unit_type = fields.CharEnumField(UnitType, max_length=24)
    case_type = fields.CharField(max_length=64, default="")
    campaign_id = fields.IntField(default=0)
    events = fields.IntField(default=0)
    quantity = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    cost = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    credits = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    unpaid_cost = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)

    class Meta:
        table = "usage_rollup_detail"
        unique_together = (("customer_id", "day", "unit_type", "case_type", "campaign_id"),)


class MonthlySpend(models.Model):
    """USD cost of a customer's usage in a calendar month (UTC), for the spending cap. The current month's row is
    also the lock that serialises authorizations."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    month = fields.DateField()
    spent = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)

    class Meta:
        table = "monthly_spend"
        unique_together = (("customer_id", "month"),)


class HoldStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    CONSUMED = "CONSUMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


class UsageHold(models.Model):
    """Pre-authorised cost that counts against the cap and the balance until consumed, released or expired."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    unit_type = fields.CharEnumField(UnitType, max_length=24)
    estimated_quantity = fields.DecimalField(max_digits=20, decimal_places=6)
    amount = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    credits = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    funding = fields.CharEnumField(Funding, max_length=8)
    status = fields.CharEnumField(HoldStatus, max_length=10, default=HoldStatus.ACTIVE)
    expires_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)
    closed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "usage_hold"
        indexes = (("customer_id", "status", "expires_at"),)


class CapLevel(enum.IntEnum):
    WARNING = 80
    REACHED = 100


class CapCrossing(models.Model):
    """A spending-cap threshold crossed, recorded once per customer, month, cap value and level (alerts read it)."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    month = fields.DateField()
    cap = fields.DecimalField(max_digits=20, decimal_places=6)
    level = fields.IntField()
    spent = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "cap_crossing"
        unique_together = (("customer_id", "month", "cap", "level"),)


class PhoneNumber(models.Model):
    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField(db_index=True)
    number = fields.CharField(max_length=24, unique=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "phone_number"
