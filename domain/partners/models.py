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
    welcome_message = fields.TextField(default="", db_default="")
    sender_name = fields.CharField(max_length=100, null=True)  # the From name of its emails (else its name)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "partner"

    def __str__(self) -> str:
        return self.name


class PartnerDomain(models.Model):
    """A custom domain of a partner: its clients' portal, links in its emails, browser origins.

    It counts once verified: a DNS TXT record proves the partner controls it (domain/partners/domains.py)."""

    id = fields.IntField(primary_key=True)
    partner_id = fields.IntField()
    domain = fields.CharField(max_length=253)  # lower-case ASCII (IDNA), no scheme or port
    position = fields.IntField(default=0)  # the partner's order: links use its first verified domain
    verification_token = fields.CharField(max_length=64)
    verified_at = fields.DatetimeField(null=True)
    last_checked_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "partner_domain"
        # several partners may claim a name; only the one holding its DNS record verifies it, and only once
        unique_together = (("partner_id", "domain"),)
        indexes = (("partner_id", "position"), ("domain", "verified_at"))
