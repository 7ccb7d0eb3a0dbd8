"""Users, their memberships in organizations (platform, partners, customers), sessions and recovery codes."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from tortoise import fields, models

if TYPE_CHECKING:
    from domain.customers.models import Customer
    from domain.partners.models import Partner


class Role(enum.StrEnum):
    PLATFORM_ADMIN = "PLATFORM_ADMIN"
    PARTNER_ADMIN = "PARTNER_ADMIN"
    PARTNER_MEMBER = "PARTNER_MEMBER"
    CUSTOMER_ADMIN = "CUSTOMER_ADMIN"
    CUSTOMER_MEMBER = "CUSTOMER_MEMBER"


PARTNER_ROLES = frozenset({Role.PARTNER_ADMIN, Role.PARTNER_MEMBER})
CUSTOMER_ROLES = frozenset({Role.CUSTOMER_ADMIN, Role.CUSTOMER_MEMBER})


class Theme(enum.StrEnum):
    LIGHT = "LIGHT"
    DARK = "DARK"
    SYSTEM = "SYSTEM"


class User(models.Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=50)
    # lower-cased copies carry the uniqueness: logins and emails are case-insensitive
    username_key = fields.CharField(max_length=50, unique=True)
    email = fields.CharField(max_length=254)
    email_key = fields.CharField(max_length=254, unique=True)
    first_name = fields.CharField(max_length=100, default="")
    last_name = fields.CharField(max_length=100, default="")
    display_name = fields.CharField(max_length=200, default="")
    phone = fields.CharField(max_length=32, default="")
    job_title = fields.CharField(max_length=100, default="")
    avatar_url = fields.CharField(max_length=500, null=True)
    password_hash = fields.CharField(max_length=255)
    is_active = fields.BooleanField(default=True)
    theme = fields.CharEnumField(Theme, default=Theme.SYSTEM, max_length=8)
    notification_preferences: fields.JSONField[dict[str, bool]] = fields.JSONField(default=dict)
    totp_secret = fields.CharField(max_length=64, null=True)
    totp_enabled = fields.BooleanField(default=False)
    # the last TOTP time step a code was accepted for: each code works once
    totp_last_step = fields.IntField(null=True)
    last_login_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "app_user"

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.display_name or self.username


class Membership(models.Model):
    """A user's role in one organization: the platform (no partner/customer), a partner or a customer."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(Role, max_length=20)
    partner: fields.ForeignKeyNullableRelation[Partner] = fields.ForeignKeyField(
        "models.Partner", related_name="memberships", null=True, on_delete=fields.CASCADE
    )
    customer: fields.ForeignKeyNullableRelation[Customer] = fields.ForeignKeyField(
        "models.Customer", related_name="memberships", null=True, on_delete=fields.CASCADE
    )
    # "platform", "partner:<id>" or "customer:<id>": one membership per user and organization
    org_key = fields.CharField(max_length=40)
    created_at = fields.DatetimeField(auto_now_add=True)

    user_id: int
    partner_id: int | None
    customer_id: int | None

    class Meta:
        table = "membership"
        unique_together = (("user_id", "org_key"),)
        indexes = (("customer_id", "user_id"), ("partner_id", "user_id"))


class Session(models.Model):
    """An opaque bearer token (only its SHA-256 is stored) acting in one organization."""

    id = fields.IntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    membership: fields.ForeignKeyNullableRelation[Membership] = fields.ForeignKeyField(
        "models.Membership", related_name="sessions", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    ip = fields.CharField(max_length=64, default="")
    user_agent = fields.CharField(max_length=300, default="")

    user_id: int
    membership_id: int | None

    class Meta:
        table = "session"
        indexes = (("user_id", "revoked_at"),)


class RecoveryCode(models.Model):
    """A single-use stand-in for a TOTP code (only its SHA-256 is stored), marked used when it is burned."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="recovery_codes", on_delete=fields.CASCADE
    )
    code_hash = fields.CharField(max_length=64)
    used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    user_id: int

    class Meta:
        table = "recovery_code"
        unique_together = (("user_id", "code_hash"),)
