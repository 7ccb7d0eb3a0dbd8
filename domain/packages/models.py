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


class Package(models.Model):
    """A partner's plan. Every change increments `version`, and assignments keep the version they got."""

    id = fields.IntField(primary_key=True)
    partner_id = fields.IntField()
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    features: fields.JSONField[list[str]] = fields.JSONField(default=list)
    max_team_members = fields.IntField(default=5)
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

    class Meta:
        table = "package_assignment"
        indexes = (("customer_id", "id"), ("package_id", "current_customer_id"))
