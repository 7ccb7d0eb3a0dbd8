"""The write operations on usage reports, report schedules and a customer's report settings, as typed commands (see
domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from domain.common.commands import CustomerId, Ref
from domain.reports.models import ReportFormat, ReportFrequency

ReportScheduleId = Annotated[int, Ref("ReportSchedule")]


@dataclass(frozen=True, slots=True)
class UsageExportCreate:
    """An export of the customer's usage over inclusive UTC days. `from_` is the API's `from` (a Python keyword)."""

    customer_id: CustomerId
    format: ReportFormat
    from_: date
    to: date


@dataclass(frozen=True, slots=True)
class ReportScheduleCreate:
    customer_id: CustomerId
    format: ReportFormat
    frequency: ReportFrequency
    recipients: list[str]


@dataclass(frozen=True, slots=True)
class ReportScheduleDelete:
    report_schedule_id: ReportScheduleId


@dataclass(frozen=True, slots=True)
class CustomerReportSettingsUpdate:
    """Replaces the addresses and @domains the customer's scheduled reports may also go to."""

    customer_id: CustomerId
    allowed_recipients: list[str]
