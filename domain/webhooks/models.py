"""Webhook endpoints, the messages produced for them and each endpoint's delivery of a message (with its attempts).

A message is one event (`wallet.refilled` …) with its body fixed once, so every attempt of every endpoint sends the
same bytes under the same `webhook-id`: receivers dedupe on it. A delivery is one (endpoint, message) pair; its
`state` runs WAITING → DISPATCHED (a job was sent) → SENDING (an attempt is in flight) → WAITING again after a
failure, until SUCCEEDED or FAILED.
"""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.common.json import JsonObject


class EndpointStatus(enum.StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"  # by its owner, or after failing for 3 days (`disabled_reason`)


class WebhookEndpoint(models.Model):
    """A receiver: a partner's (customer_id None: every customer of the partner) or one customer's own."""

    id = fields.IntField(primary_key=True)
    partner_id = fields.IntField()
    customer_id = fields.IntField(null=True)
    url = fields.CharField(max_length=2000)
    description = fields.CharField(max_length=500, default="")
    event_types: fields.JSONField[list[str]] = fields.JSONField(default=list)
    secret = fields.CharField(max_length=100)
    # the secret before the last rotation, still signing (as a second signature) until it expires
    previous_secret = fields.CharField(max_length=100, null=True)
    previous_secret_expires_at = fields.DatetimeField(null=True)
    status = fields.CharEnumField(EndpointStatus, max_length=10, default=EndpointStatus.ENABLED)
    disabled_reason = fields.CharField(max_length=200, default="")
    # first failure since the last success: an endpoint failing for FAILING_DISABLES_AFTER is disabled
    failing_since = fields.DatetimeField(null=True)
    disabled_notice_sent_at = fields.DatetimeField(null=True)
    created_by_user_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_endpoint"
        indexes = (("partner_id", "status"), ("customer_id", "status"))


class WebhookMessage(models.Model):
    """One event as sent: `msg_id` is the `webhook-id` header, `body` the exact JSON bytes signed."""

    id = fields.BigIntField(primary_key=True)
    msg_id = fields.CharField(max_length=40, unique=True)
    # what makes the event unique (`alert.raised:alert:7`): a redelivered outbox event produces no second message
    dedupe_key = fields.CharField(max_length=200, unique=True)
    event_type = fields.CharField(max_length=40)
    partner_id = fields.IntField()
    customer_id = fields.IntField(null=True)
    body = fields.TextField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "webhook_message"


class DeliveryState(enum.StrEnum):
    WAITING = "WAITING"  # due at `next_attempt_at`, no job sent yet
    DISPATCHED = "DISPATCHED"  # a job was sent (`busy_until`: when to assume it was lost)
    SENDING = "SENDING"  # an attempt is in flight (`busy_until`: when to assume its worker died)
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # retries exhausted, or the endpoint went away


class WebhookDelivery(models.Model):
    id = fields.IntField(primary_key=True)
    endpoint_id = fields.IntField()
    message_id = fields.BigIntField()
    partner_id = fields.IntField()
    customer_id = fields.IntField(null=True)
    event_type = fields.CharField(max_length=40)
    state = fields.CharEnumField(DeliveryState, max_length=10, default=DeliveryState.WAITING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    busy_until = fields.DatetimeField(null=True)
    # when the current retry schedule began (creation, or a manual redelivery)
    schedule_started_at = fields.DatetimeField()
    last_attempt_at = fields.DatetimeField(null=True)
    response_status = fields.IntField(null=True)
    response_body = fields.CharField(max_length=1000, default="")
    latency_ms = fields.IntField(null=True)
    last_error = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_delivery"
        unique_together = (("endpoint_id", "message_id"),)
        indexes = (("endpoint_id", "state", "next_attempt_at"), ("state", "next_attempt_at"), ("endpoint_id", "id"))


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery and what came of it."""

    id = fields.BigIntField(primary_key=True)
    delivery_id = fields.BigIntField()
    attempt = fields.IntField()
    started_at = fields.DatetimeField()
    request_headers: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    response_status = fields.IntField(null=True)
    response_body = fields.CharField(max_length=1000, default="")
    latency_ms = fields.IntField(null=True)
    error = fields.CharField(max_length=500, default="")

    class Meta:
        table = "webhook_attempt"
        indexes = (("delivery_id", "attempt"),)
