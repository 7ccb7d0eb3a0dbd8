"""Exports: one row per requested report (usage, self-healed contacts, the system log), from QUEUED to READY (a
stored file) or FAILED; report schedules; each customer's report settings (who else may receive its scheduled
reports); and the self-healed contacts the reports list."""

from __future__ import annotations

import enum

from tortoise import fields, models


class ReportFormat(enum.StrEnum):
    VOICE_CSV = "VOICE_CSV"  # the VOICE_MINUTES events of the period, one row each
    SMS_CSV = "SMS_CSV"  # the SMS_SEGMENTS events of the period, one row each
    PDF = "PDF"  # a summary by unit type and day, with totals
    PDF_BY_CASE_TYPE = "PDF_BY_CASE_TYPE"  # a .zip with one summary PDF per case type
    HEALED_CONTACTS_CSV = "HEALED_CONTACTS_CSV"  # the self-healed contacts confirmed in the period, chosen columns
    AUDIT_CSV = "AUDIT_CSV"  # the system log, filtered


USAGE_FORMATS = frozenset(
    {ReportFormat.VOICE_CSV, ReportFormat.SMS_CSV, ReportFormat.PDF, ReportFormat.PDF_BY_CASE_TYPE}
)


class HealedContactColumn(enum.StrEnum):
    """The columns a self-healed contacts CSV may hold, in the order the customer chooses."""

    EXTERNAL_ID = "EXTERNAL_ID"
    NEW_NUMBER = "NEW_NUMBER"
    OLD_NUMBER = "OLD_NUMBER"
    ENRICHED_AT = "ENRICHED_AT"
    CONFIRMED_AT = "CONFIRMED_AT"
    CALL_ID = "CALL_ID"


class ReportStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    READY = "READY"
    FAILED = "FAILED"


FINAL_STATUSES = frozenset({ReportStatus.READY, ReportStatus.FAILED})


class UsageReport(models.Model):
    """An export over inclusive days of `timezone` (a customer's usage or healed contacts, or the system log), and
    where its file is stored once built. `customer_id` is None for a partner-wide system log export."""

    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField(null=True)
    partner_id = fields.IntField()
    requested_by_user_id = fields.IntField(null=True)
    schedule_id = fields.IntField(null=True)
    format = fields.CharEnumField(ReportFormat, max_length=20)
    period_from = fields.DateField()
    period_to = fields.DateField()
    timezone = fields.CharField(max_length=64, default="UTC", db_default="UTC")
    # HEALED_CONTACTS_CSV: the chosen HealedContactColumn values, in order; AUDIT_CSV: the log's filter
    columns: fields.JSONField[list[str]] = fields.JSONField(null=True)
    filters: fields.JSONField[dict[str, str]] = fields.JSONField(null=True)
    status = fields.CharEnumField(ReportStatus, max_length=8, default=ReportStatus.QUEUED)
    attempts = fields.IntField(default=0)
    # rows to write (counted when the build starts) and written so far: the progress live views show
    row_count = fields.IntField(null=True)
    rows_done = fields.IntField(default=0, db_default=0)
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
    """A report emailed to recipients every day, week or month, covering the period that just ended, at its
    delivery time in its timezone. A customer's self-healed contacts report is its one HEALED_CONTACTS_CSV
    schedule."""

    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    created_by_user_id = fields.IntField(null=True)
    format = fields.CharEnumField(ReportFormat, max_length=20)
    frequency = fields.CharEnumField(ReportFrequency, max_length=8)
    recipients: fields.JSONField[list[str]] = fields.JSONField(default=list)
    # the last period end (inclusive day) a report was requested for: each period is sent once
    last_period_to = fields.DateField(null=True)
    delivery_time = fields.CharField(max_length=5, default="00:00", db_default="00:00")  # HH:MM in `timezone`
    timezone = fields.CharField(max_length=64, default="UTC", db_default="UTC")
    enabled = fields.BooleanField(default=True, db_default=True)
    columns: fields.JSONField[list[str]] = fields.JSONField(null=True)  # HEALED_CONTACTS_CSV only
    next_run_at = fields.DatetimeField(null=True)  # when the next period is due (None: work it out at the next pass)
    last_run_at = fields.DatetimeField(null=True)
    last_report_id = fields.IntField(null=True)
    last_status = fields.CharEnumField(ReportStatus, max_length=8, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "report_schedule"
        indexes = (("customer_id", "id"), ("next_run_at",))


class ReportSettings(models.Model):
    """Who else may receive a customer's scheduled reports, as set by its partner's admins.

    Entries are addresses (`cfo@example.com`) or domains (`@example.com`), on top of the customer's own users and
    its billing recipients (domain/reports/recipients.py)."""

    customer_id = fields.IntField(primary_key=True)
    allowed_recipients: fields.JSONField[list[str]] = fields.JSONField(default=list)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "report_settings"


class HealedContact(models.Model):
    """A phone number found by enrichment and confirmed by a successful call (seed 001): recorded once per
    (customer, external id, new number); a number later flagged as wrong stays recorded but leaves the reports."""

    id = fields.IntField(primary_key=True)
    customer_id = fields.IntField()
    partner_id = fields.IntField()
    external_id = fields.CharField(max_length=128)
    old_number = fields.CharField(max_length=32, default="")
    new_number = fields.CharField(max_length=32)
    enriched_at = fields.DatetimeField(null=True)
    confirmed_at = fields.DatetimeField()
    call_id = fields.CharField(max_length=64, default="")
    wrong_number = fields.BooleanField(default=False)
    flagged_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "healed_contact"
        unique_together = (("customer_id", "external_id", "new_number"),)
        indexes = (("customer_id", "confirmed_at"),)
