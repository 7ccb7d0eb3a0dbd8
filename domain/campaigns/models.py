"""Campaigns a customer runs (calls/SMS sequences); the spending cap pauses and resumes them."""

from __future__ import annotations

import enum

from tortoise import fields, models


class CampaignStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"


class PauseReason(enum.StrEnum):
    CAP = "CAP"
    MANUAL = "MANUAL"


class Campaign(models.Model):
    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField(db_index=True)
    name = fields.CharField(max_length=200)
    status = fields.CharEnumField(CampaignStatus, max_length=12, default=CampaignStatus.RUNNING)
    pause_reason = fields.CharEnumField(PauseReason, max_length=12, null=True)
    paused_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "campaign"
