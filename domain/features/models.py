"""Per-customer feature toggles (seed 000). Defaults apply until a partner changes them or assigns a package: a
customer nobody configured has nothing a package gives (no portal, no team beyond its first admin)."""

from __future__ import annotations

import enum

from tortoise import fields, models


class PortalSection(enum.StrEnum):
    """Sections a partner can show in the customer portal; `portal_sections` stores them in this order."""

    KNOWLEDGE_BASE = "KNOWLEDGE_BASE"
    INTEGRATION = "INTEGRATION"
    DOCS_AND_MEDIA = "DOCS_AND_MEDIA"
    SCHEDULE_MEETING = "SCHEDULE_MEETING"
    PHONE_NUMBERS = "PHONE_NUMBERS"
    API_KEYS = "API_KEYS"


class FeatureToggles(models.Model):
    customer_id = fields.IntField(primary_key=True)
    portal_enabled = fields.BooleanField(default=False)
    advanced_analytics = fields.BooleanField(default=False)
    detailed_call_analysis = fields.BooleanField(default=False)
    action_point_analysis = fields.BooleanField(default=False)
    api_access = fields.BooleanField(default=False)
    api_keys_menu = fields.BooleanField(default=False)
    ai_credits_enabled = fields.BooleanField(default=False)
    low_credit_notifications = fields.BooleanField(default=False)
    show_pricing = fields.BooleanField(default=True)
    portal_sections: fields.JSONField[list[str]] = fields.JSONField(default=list)
    embed_urls_enabled = fields.BooleanField(default=False)
    team_members_enabled = fields.BooleanField(default=False)
    # the seat limit (members + pending invites); a package's `user_count` sets it at assignment
    max_team_members = fields.IntField(default=1)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "feature_toggles"
