"""Customer credits (grants, counters), partner pool counters, billing preferences and wallet refill requests."""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.ledger.models import MONEY_DIGITS


class BillingMode(enum.StrEnum):
    MONTHLY_INVOICE = "MONTHLY_INVOICE"
    REFILLABLE_WALLET = "REFILLABLE_WALLET"


class GrantSource(enum.StrEnum):
    RECHARGE = "RECHARGE"
    PACKAGE = "PACKAGE"
    ADJUSTMENT = "ADJUSTMENT"


class CreditGrant(models.Model):
    """A lot of credits with an optional expiry. Usage burns the earliest expiry first, then the oldest."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    source = fields.CharEnumField(GrantSource, max_length=12)
    amount = fields.DecimalField(max_digits=20, decimal_places=6)
    remaining = fields.DecimalField(max_digits=20, decimal_places=6)
    expires_at = fields.DatetimeField(null=True)
    transfer_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "credit_grant"
        indexes = (("customer_id", "expires_at", "id"),)


class CustomerCredits(models.Model):
    """Counters behind the available, used and assigned meter. The balance itself is the ledger account."""

    customer_id = fields.IntField(primary_key=True)
    assigned = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    used = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)
    expired = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)

    class Meta:
        table = "customer_credits"


class PartnerPool(models.Model):
    """Credits a partner has handed to its customers, net of reclaims."""

    partner_id = fields.IntField(primary_key=True)
    assigned = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6, default=0)

    class Meta:
        table = "partner_pool"


class BillingPreferences(models.Model):
    customer_id = fields.IntField(primary_key=True)
    billing_mode = fields.CharEnumField(BillingMode, max_length=20, default=BillingMode.MONTHLY_INVOICE)
    primary_contact_user_id = fields.IntField(null=True)
    monthly_spending_cap = fields.DecimalField(max_digits=20, decimal_places=6, null=True)
    cap_alert_at_80 = fields.BooleanField(default=True)
    refill_amount = fields.DecimalField(max_digits=20, decimal_places=6, null=True)
    refill_threshold = fields.DecimalField(max_digits=20, decimal_places=6, null=True)
    low_balance_alert = fields.BooleanField(default=True)
    refill_processed_alert = fields.BooleanField(default=True)
    low_credit_threshold = fields.DecimalField(max_digits=20, decimal_places=6, null=True)
    extra_alert_recipients: fields.JSONField[list[str]] = fields.JSONField(default=list)
    # charge the saved card for the refill amount when the balance crosses the refill threshold (card provider)
    auto_top_up = fields.BooleanField(default=False, db_default=False)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "billing_preferences"


class RefillRequestStatus(enum.StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class RefillRequest(models.Model):
    """The internal refill-needed workflow: at most one OPEN per customer (enforced by `open_customer_id`)."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField(db_index=True)
    # equals customer_id while open, NULL once closed: a unique column admits one open request per customer
    open_customer_id = fields.IntField(null=True, unique=True)
    status = fields.CharEnumField(RefillRequestStatus, max_length=8, default=RefillRequestStatus.OPEN)
    requested_amount = fields.DecimalField(max_digits=20, decimal_places=6, null=True)
    balance_at_open = fields.DecimalField(max_digits=MONEY_DIGITS, decimal_places=6)
    threshold = fields.DecimalField(max_digits=20, decimal_places=6)
    opened_at = fields.DatetimeField(auto_now_add=True)
    closed_at = fields.DatetimeField(null=True)
    closed_by_transfer_id = fields.BigIntField(null=True)
    notified_at = fields.DatetimeField(null=True)

    class Meta:
        table = "refill_request"
