"""A customer's portal (seed 001): its settings beyond the on/off switch (which is the `portal_enabled` feature
toggle), and the customer's own branding over its partner's."""

from __future__ import annotations

import enum

from tortoise import fields, models


class CaseVisibility(enum.StrEnum):
    """Which cases the customer's users see in the portal."""

    ALL = "ALL"  # every case of the company
    ASSIGNED = "ASSIGNED"  # only cases assigned to the user
    NONE = "NONE"  # cases are hidden from the portal


class PortalSettings(models.Model):
    """Stored once changed: customers never configured show the defaults (an unsaved row)."""

    customer_id = fields.IntField(primary_key=True)
    auto_invite = fields.BooleanField(default=False)
    chat_enabled = fields.BooleanField(default=True)
    document_upload = fields.BooleanField(default=True)
    case_visibility = fields.CharEnumField(CaseVisibility, max_length=12, default=CaseVisibility.ALL)
    # when the customer's admins were invited to the portal (auto-invite): they are invited once
    invited_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "portal_settings"


class CustomerBranding(models.Model):
    """A customer's own look: a null field shows the partner's."""

    customer_id = fields.IntField(primary_key=True)
    logo_url = fields.CharField(max_length=500, null=True)
    primary_color = fields.CharField(max_length=7, null=True)
    secondary_color = fields.CharField(max_length=7, null=True)
    welcome_message = fields.TextField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "customer_branding"
