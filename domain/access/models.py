"""Machine access to one customer: API keys (seed 001) and read-only embed tokens. Secrets are stored hashed."""

from __future__ import annotations

import enum

from tortoise import fields, models


class ApiPermission(enum.StrEnum):
    READ = "READ"  # queries and subscriptions
    WRITE = "WRITE"  # create and update
    DELETE = "DELETE"  # revoke, remove, disable
    ADMIN = "ADMIN"  # everything, including managing API keys


class ApiTier(enum.StrEnum):
    STANDARD = "STANDARD"  # 100 requests/minute
    PREMIUM = "PREMIUM"  # 500 requests/minute
    ENTERPRISE = "ENTERPRISE"  # custom per-minute limit


class EmbedSection(enum.StrEnum):
    USAGE_DASHBOARD = "USAGE_DASHBOARD"
    WALLET = "WALLET"
    CREDITS = "CREDITS"
    SPENDING_CAP = "SPENDING_CAP"


class ApiKey(models.Model):
    """A customer's API key. Only the SHA-256 of its secret is kept, the full key is shown once."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    name = fields.CharField(max_length=100)
    prefix = fields.CharField(max_length=40)  # "pd_live_<id>_" plus the first secret characters, for display
    secret_hash = fields.CharField(max_length=64)
    permissions: fields.JSONField[list[str]] = fields.JSONField(default=list)  # ApiPermission values
    tier = fields.CharEnumField(ApiTier, max_length=12, default=ApiTier.STANDARD)
    rate_limit_per_minute = fields.IntField(null=True)  # ENTERPRISE only
    created_by_user_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_key"
        indexes = (("customer_id", "id"),)


class EmbedToken(models.Model):
    """A read-only token for embedding some dashboard sections of one customer. Only its hash is kept."""

    id = fields.BigIntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    secret_hash = fields.CharField(max_length=64)
    sections: fields.JSONField[list[str]] = fields.JSONField(default=list)  # EmbedSection values
    created_by_user_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "embed_token"
        indexes = (("customer_id", "id"),)
