"""Payments taken through a provider, the provider's customer behind each of ours, and the provider events
already handled (each exactly once)."""

from __future__ import annotations

import enum

from tortoise import fields, models


class ProviderCustomer(models.Model):
    """Our customer at the provider (a Stripe customer), created on first use and remembered."""

    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField()
    provider = fields.CharField(max_length=20)
    external_id = fields.CharField(max_length=100)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "provider_customer"
        unique_together = (("customer_id", "provider"),)


class PaymentPurpose(enum.StrEnum):
    WALLET_TOP_UP = "WALLET_TOP_UP"  # the customer paid through a checkout page
    AUTO_TOP_UP = "AUTO_TOP_UP"  # the saved card, charged when the balance crossed the refill threshold
    INVOICE = "INVOICE"  # a monthly invoice collected by the provider


class PaymentStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Payment(models.Model):
    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    provider = fields.CharField(max_length=20)
    purpose = fields.CharEnumField(PaymentPurpose, max_length=16)
    status = fields.CharEnumField(PaymentStatus, max_length=10, default=PaymentStatus.PENDING)
    amount = fields.DecimalField(max_digits=20, decimal_places=6)
    currency = fields.CharField(max_length=3, default="USD")
    # the checkout session, payment intent or invoice at the provider
    external_id = fields.CharField(max_length=100, null=True, unique=True)
    checkout_url = fields.CharField(max_length=2000, null=True)
    # an automatic top-up answers one refill request (one crossing of the threshold): at most one per request
    refill_request_id = fields.BigIntField(null=True, unique=True)
    invoice_id = fields.BigIntField(null=True)
    transfer_id = fields.BigIntField(null=True)
    failure_reason = fields.CharField(max_length=300, default="")
    created_by_user_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "payment"
        indexes = (("customer_id", "id"),)


class ProviderEvent(models.Model):
    """A provider event handled: inserted in the transaction of its effect, so a replayed or concurrent duplicate
    finds it and changes nothing."""

    id = fields.BigIntField(primary_key=True)
    provider = fields.CharField(max_length=20)
    external_id = fields.CharField(max_length=100)
    type = fields.CharField(max_length=100)
    outcome = fields.CharField(max_length=100, default="")
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "provider_event"
        unique_together = (("provider", "external_id"),)
