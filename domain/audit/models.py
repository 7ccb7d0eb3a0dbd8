"""The append-only, hash-chained audit log.

Each chain (one per partner, plus "platform") is a sequence: event n stores the hash of event n-1, and
`AuditChain` holds the head (last seq and hash) so deleting the newest event is detected too. Personal fields
(actor label, IP, user agent, details) enter the hash only through `personal_digest`, so retention can redact
them (setting `redacted_at`) without breaking the chain.

Writers append events without `seq`, `prev_hash` and `hash` (no lock on the chain head, so a partner's writes no
longer queue behind each other); the sequencer (`domain/audit/sequencer.py`) links committed events into their
chain right after commit. An event whose `seq` is null is not sequenced yet.
"""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.common.json import JsonObject


class AuditEventType(enum.StrEnum):
    LOGIN = "LOGIN"
    LOGIN_FAILED = "LOGIN_FAILED"
    LOGOUT = "LOGOUT"
    DATA_CHANGE = "DATA_CHANGE"
    SECURITY = "SECURITY"
    API_CALL = "API_CALL"
    INTEGRATION = "INTEGRATION"
    EXPORT = "EXPORT"
    BILLING = "BILLING"


class AuditEvent(models.Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.CharField(max_length=40)
    seq = fields.BigIntField(null=True)  # null until the sequencer links the event into its chain
    type = fields.CharEnumField(AuditEventType, max_length=16)
    action = fields.CharField(max_length=64)
    actor_user_id = fields.IntField(null=True)
    actor_api_key_id = fields.IntField(null=True)
    actor_label = fields.CharField(max_length=254, null=True)
    partner_id = fields.IntField(null=True)
    customer_id = fields.IntField(null=True)
    object_type = fields.CharField(max_length=40, default="")
    object_id = fields.CharField(max_length=64, default="")
    details: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    ip = fields.CharField(max_length=64, null=True)
    user_agent = fields.CharField(max_length=300, null=True)
    request_id = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField()
    personal_digest = fields.CharField(max_length=64)
    redacted_at = fields.DatetimeField(null=True)
    prev_hash = fields.CharField(max_length=64, null=True)
    hash = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "audit_event"
        unique_together = (("chain", "seq"),)
        indexes = (("partner_id", "id"), ("customer_id", "id"), ("actor_user_id", "id"), ("type", "id"))


class AuditChain(models.Model):
    key = fields.CharField(max_length=40, primary_key=True)
    seq = fields.BigIntField(default=0)
    last_hash = fields.CharField(max_length=64)

    class Meta:
        table = "audit_chain"
