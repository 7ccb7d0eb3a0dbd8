"""Outbox rows, written in the transaction of the change they announce."""

from __future__ import annotations

from tortoise import fields, models

from domain.common.json import JsonObject


class OutboxEvent(models.Model):
    id = fields.BigIntField(primary_key=True)
    topic = fields.CharField(max_length=64)
    customer_id = fields.IntField(null=True)
    partner_id = fields.IntField(null=True)
    payload: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    published_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_event"
        indexes = (("published_at", "id"),)
