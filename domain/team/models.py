"""Invitations to join a customer's team or a partner's staff (seeds 000, 002, 003)."""

from __future__ import annotations

import enum

from tortoise import fields, models

from domain.accounts.models import Role


class InvitationStatus(enum.StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


class Invitation(models.Model):
    """An emailed invitation, holding a seat while it is pending.

    Its token is derived from `nonce` under the secret key (never stored): a re-sent invitation gets a new nonce, so
    the older link stops working."""

    id = fields.IntField(primary_key=True)
    partner_id = fields.IntField()
    customer_id = fields.IntField(null=True)  # null: an invitation to the partner's staff
    email = fields.CharField(max_length=254)
    email_key = fields.CharField(max_length=254)
    role = fields.CharEnumField(Role, max_length=20)
    nonce = fields.CharField(max_length=64)
    invited_by_user_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    accepted_at = fields.DatetimeField(null=True)
    accepted_user_id = fields.IntField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    # "<organization>|<email>" while not accepted or revoked, else NULL: one open invitation per address and
    # organization (inviting the address again re-sends it)
    open_key = fields.CharField(max_length=300, null=True, unique=True)

    class Meta:
        table = "invitation"
        indexes = (("customer_id", "id"), ("partner_id", "id"))
