"""Partners: white-label agencies reselling the platform."""

from __future__ import annotations

import enum

from tortoise import fields, models


class PartnerStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class Partner(models.Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    status = fields.CharEnumField(PartnerStatus, default=PartnerStatus.ACTIVE, max_length=16)
    sender_email = fields.CharField(max_length=254, null=True)
    logo_url = fields.CharField(max_length=500, null=True)
    primary_color = fields.CharField(max_length=7, default="#2563EB", db_default="#2563EB")
    secondary_color = fields.CharField(max_length=7, default="#0F172A", db_default="#0F172A")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "partner"

    def __str__(self) -> str:
        return self.name
