"""Billing alerts (seed 001) and the arming state that makes each fire once per crossing."""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.common.json import JsonObject


class AlertKind(enum.StrEnum):
    CAP_REACHED = "CAP_REACHED"  # always on
    PAYMENT_FAILED = "PAYMENT_FAILED"  # always on
    CAP_WARNING = "CAP_WARNING"  # 80% of the cap, optional
    LOW_BALANCE = "LOW_BALANCE"  # wallet below 30% of the refill amount, optional
    REFILL_PROCESSED = "REFILL_PROCESSED"  # optional
    LOW_CREDITS = "LOW_CREDITS"  # below the customer's low-credit threshold, optional


ALWAYS_ON = frozenset({AlertKind.CAP_REACHED, AlertKind.PAYMENT_FAILED})


class AlertStatus(enum.StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


class Alert(models.Model):
    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    kind = fields.CharEnumField(AlertKind, max_length=20)
    # what makes this alert unique: e.g. "2026-11:1000.00" for a cap, "3" for the third low-balance crossing
    crossing_key = fields.CharField(max_length=120)
    values: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    recipients: fields.JSONField[list[str]] = fields.JSONField(default=list)
    status = fields.CharEnumField(AlertStatus, max_length=8, default=AlertStatus.PENDING)
    attempts = fields.IntField(default=0)
    last_error = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "alert"
        unique_together = (("customer_id", "kind", "crossing_key"),)
        indexes = (("customer_id", "id"),)


class AlertArm(models.Model):
    """For threshold alerts that re-arm: `armed` until the value falls below, again once it recovers."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    kind = fields.CharEnumField(AlertKind, max_length=20)
    armed = fields.BooleanField(default=True)
    crossings = fields.IntField(default=0)

    class Meta:
        table = "alert_arm"
        unique_together = (("customer_id", "kind"),)
