"""Invoices (immutable once finalized: lines, totals, seller and customer details are kept as they were) and the
per-partner counter that numbers them without gaps."""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.common.json import JsonObject
from domain.ledger.models import MONEY_DIGITS


class InvoiceStatus(enum.StrEnum):
    DRAFT = "DRAFT"  # not finalized: no number, not sent (the monthly close finalizes at once)
    OPEN = "OPEN"  # finalized and sent, awaiting payment
    PAID = "PAID"
    VOID = "VOID"  # cancelled at the payment provider: nothing is owed


class Invoice(models.Model):
    id = fields.IntField(primary_key=True)
    partner_id = fields.IntField()
    customer_id = fields.IntField()
    period_start = fields.DateField()  # the first day of the calendar month
    period_end = fields.DateField()  # the first day of the next month (exclusive)
    sequence = fields.IntField()  # gapless per partner
    number = fields.CharField(max_length=40)
    status = fields.CharEnumField(InvoiceStatus, max_length=8)
    currency = fields.CharField(max_length=3, default="USD")
    # [{"unit_type", "quantity", "unit_price", "amount"}] as decimal strings
    lines: fields.JSONField[list[JsonObject]] = fields.JSONField(default=list)
    subtotal = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)  # exact: Σ of the rated usage
    total = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=2)  # what is owed, in cents
    seller: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    bill_to: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    # usage recorded up to this instant is in this invoice; later usage of the month goes into the next one
    usage_cutoff = fields.DatetimeField()
    provider = fields.CharField(max_length=20, default="manual")
    external_id = fields.CharField(max_length=100, null=True, unique=True)
    payment_reference = fields.CharField(max_length=200, default="")
    finalized_at = fields.DatetimeField(null=True)
    emailed_at = fields.DatetimeField(null=True)
    paid_at = fields.DatetimeField(null=True)
    voided_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "invoice"
        unique_together = (("customer_id", "period_start"), ("partner_id", "sequence"))
        indexes = (("customer_id", "id"),)


class InvoiceCounter(models.Model):
    """The last invoice number of a partner, locked in the transaction that numbers an invoice."""

    partner_id = fields.IntField(primary_key=True)
    last_sequence = fields.IntField(default=0)

    class Meta:
        table = "invoice_counter"
