"""Usage reports: one row per requested export, from QUEUED to READY (a stored file) or FAILED; report schedules;
and each customer's report settings (who else may receive its scheduled reports)."""

from __future__ import annotations

import enum

from tortoise import fields, models


class ReportFormat(enum.StrEnum):
    VOICE_CSV = "VOICE_CSV"  # the VOICE_MINUTES events of the period, one row each
    SMS_CSV = "SMS_CSV"  # the SMS_SEGMENTS events of the period, one row each
    PDF = "PDF"  # a summary by unit type and day, with totals
    PDF_BY_CASE_TYPE = "PDF_BY_CASE_TYPE"  # a .zip with one summary PDF per case type


class ReportStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    READY = "READY"
    FAILED = "FAILED"


FINAL_STATUSES = frozenset({ReportStatus.READY, ReportStatus.FAILED})


class UsageReport(models.Model):
    """An export of a customer's usage over inclusive UTC days, and where its file is stored once built."""

    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    requested_by_user_id = fields.IntField(null=True)
    schedule_id = fields.IntField(null=True)
    format = fields.CharEnumField(ReportFormat, max_length=20)
    period_from = fields.DateField()
    period_to = fields.DateField()
    status = fields.CharEnumField(ReportStatus, max_length=8, default=ReportStatus.QUEUED)
    attempts = fields.IntField(default=0)
    row_count = fields.IntField(null=True)
    byte_size = fields.BigIntField(null=True)
    storage_key = fields.CharField(max_length=255, default="")
    file_name = fields.CharField(max_length=255, default="")
    content_type = fields.CharField(max_length=100, default="")
    error = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    # the QUEUED rows are the export queue: a report gets a build slot (and its build message) when dispatched
    dispatched_at = fields.DatetimeField(null=True)
    # the running build's last sign of life: a RUNNING report whose heartbeat is older than the lease is dead
    heartbeat_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    delivered_at = fields.DatetimeField(null=True)  # a scheduled report emailed to its recipients
    # prices and costs in the file: decided when requested (domain/features/pricing.py), for whoever may open it
    with_prices = fields.BooleanField(default=True, db_default=True)

    class Meta:
        table = "usage_report"
        indexes = (("customer_id", "id"), ("status", "expires_at"), ("partner_id", "status"))


class ReportFrequency(enum.StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


class ReportSchedule(models.Model):
    """A report emailed to recipients every day, week or month, covering the period that just ended."""

    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    created_by_user_id = fields.IntField(null=True)
    format = fields.CharEnumField(ReportFormat, max_length=20)
    frequency = fields.CharEnumField(ReportFrequency, max_length=8)
    recipients: fields.JSONField[list[str]] = fields.JSONField(default=list)
    # the last period end (inclusive day) a report was requested for: each period is sent once
    last_period_to = fields.DateField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "report_schedule"
        indexes = (("customer_id", "id"),)


class ReportSettings(models.Model):
    """Who else may receive a customer's scheduled reports, as set by its partner's admins.

    Entries are addresses (`cfo@example.com`) or domains (`@example.com`), on top of the customer's own users and
    its billing recipients (domain/reports/recipients.py)."""

    customer_id = fields.IntField(primary_key=True)
    allowed_recipients: fields.JSONField[list[str]] = fields.JSONField(default=list)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "report_settings"
