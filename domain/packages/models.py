"""Agency packages (seed 004): the plans a partner builds for its customers, and their assignments."""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.access.models import ApiTier
from domain.common.json import JsonObject


class FeatureKey(enum.StrEnum):
    """Features a package switches on; `Package.features` stores them in this order."""

    CUSTOMER_PORTAL = "CUSTOMER_PORTAL"
    ADVANCED_ANALYTICS = "ADVANCED_ANALYTICS"
    DETAILED_CALL_ANALYSIS = "DETAILED_CALL_ANALYSIS"
    ACTION_POINT_ANALYSIS = "ACTION_POINT_ANALYSIS"
    API_ACCESS = "API_ACCESS"
    AI_CREDITS = "AI_CREDITS"
    TEAM_MEMBERS = "TEAM_MEMBERS"
    KNOWLEDGE_BASE = "KNOWLEDGE_BASE"
    EMBEDS = "EMBEDS"


class EndReason(enum.StrEnum):
    """Why an assignment is no longer the customer's current one."""

    REPLACED = "REPLACED"  # another package was assigned
    EXPIRED = "EXPIRED"  # its `expires_at` passed (the expiry job ended it)
    PURGED = "PURGED"  # the customer was deleted (retention)


class NoticeKind(enum.StrEnum):
    EXPIRING = "EXPIRING"  # 7 days before `expires_at`
    EXPIRED = "EXPIRED"  # at `expires_at`


class NoticeAudience(enum.StrEnum):
    CUSTOMER = "CUSTOMER"  # the customer's primary billing contact (or its active admins without one)
    PARTNER = "PARTNER"  # the partner's active admins


class NoticeStatus(enum.StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


class Package(models.Model):
    """A partner's plan. Every change increments `version`, and assignments keep the version they got."""

    id = fields.IntField(primary_key=True)
    partner_id = fields.IntField()
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    features: fields.JSONField[list[str]] = fields.JSONField(default=list)
    user_count = fields.IntField(default=5)  # users a client may have (seed 004): its seat limit once assigned
    storage_mb = fields.IntField(default=0)
    api_rate_tier = fields.CharEnumField(ApiTier, max_length=12, default=ApiTier.STANDARD)
    monthly_spending_cap = fields.DecimalField(max_digits=20, decimal_places=6, null=True)
    ai_credits = fields.DecimalField(max_digits=20, decimal_places=6, default=0)
    expiry_days = fields.IntField(null=True)
    restricted_emails: fields.JSONField[list[str]] = fields.JSONField(default=list)
    version = fields.IntField(default=1)
    archived = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "package"
        indexes = (("partner_id", "id"),)


class PackageAssignment(models.Model):
    """One assignment of a package to a customer, kept as history (the current one has `current_customer_id`)."""

    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    package_id = fields.IntField()
    # equals customer_id while current, NULL once replaced: a unique column admits one current assignment per customer
    current_customer_id = fields.IntField(null=True, unique=True)
    version = fields.IntField()
    snapshot: fields.JSONField[JsonObject] = fields.JSONField(default=dict)
    assigned_at = fields.DatetimeField()
    expires_at = fields.DatetimeField(null=True)
    assigned_by_user_id = fields.IntField(null=True)
    ended_at = fields.DatetimeField(null=True)
    end_reason = fields.CharEnumField(EndReason, max_length=12, null=True)

    class Meta:
        table = "package_assignment"
        indexes = (("customer_id", "id"), ("package_id", "current_customer_id"), ("expires_at", "current_customer_id"))


class PackageNotice(models.Model):
    """One expiry email of one assignment to one audience: created once (the unique key), sent once (`deliver`)."""

    id = fields.IntField(primary_key=True)
    assignment_id = fields.IntField()
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    kind = fields.CharEnumField(NoticeKind, max_length=10)
    audience = fields.CharEnumField(NoticeAudience, max_length=10)
    status = fields.CharEnumField(NoticeStatus, max_length=8, default=NoticeStatus.PENDING)
    recipients: fields.JSONField[list[str]] = fields.JSONField(default=list)
    attempts = fields.IntField(default=0)
    last_error = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "package_notice"
        unique_together = (("assignment_id", "kind", "audience"),)
        indexes = (("customer_id", "id"),)
