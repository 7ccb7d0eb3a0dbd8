"""The write operations on usage reports, report schedules and a customer's report settings, as typed commands (see
domain/common/commands.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal

from domain.audit.models import AuditEventType
from domain.common.commands import UNSET, CustomerId, Patch, Ref
from domain.reports.models import HealedContactColumn, ReportFormat, ReportFrequency

ReportScheduleId = Annotated[int, Ref("ReportSchedule")]


@dataclass(frozen=True, slots=True)
class UsageExportCreate:
    """An export of the customer's usage over inclusive days of `timezone` (UTC when unset). `from_` is the API's
    `from` (a Python keyword)."""

    customer_id: CustomerId
    format: ReportFormat
    from_: date
    to: date
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class ReportScheduleCreate:
    customer_id: CustomerId
    format: ReportFormat
    frequency: ReportFrequency
    recipients: list[str]
    delivery_time: str | None = None  # HH:MM in `timezone`; midnight when unset
    timezone: str | None = None  # UTC when unset


@dataclass(frozen=True, slots=True)
class ReportScheduleUpdate:
    """Changes only what was sent; a new frequency, delivery time or time zone moves the next run."""

    report_schedule_id: ReportScheduleId
    format: Patch[ReportFormat] = UNSET
    frequency: Patch[ReportFrequency] = UNSET
    recipients: Patch[list[str]] = UNSET
    delivery_time: Patch[str] = UNSET
    timezone: Patch[str] = UNSET
    enabled: Patch[bool] = UNSET


@dataclass(frozen=True, slots=True)
class ReportScheduleDelete:
    report_schedule_id: ReportScheduleId


@dataclass(frozen=True, slots=True)
class CustomerReportSettingsUpdate:
    """Replaces the addresses and @domains the customer's scheduled reports may also go to."""

    customer_id: CustomerId
    allowed_recipients: list[str]


@dataclass(frozen=True, slots=True)
class HealedContactIn:
    """One self-healed contact as sent; checked by `contacts_healed_record`, which refuses bad ones one by one (so,
    as for usage events, the customer id comes decoded per item: None when it names no customer)."""

    customer_id: int | None
    external_id: object
    new_number: object
    confirmed_at: object
    old_number: object = None
    enriched_at: object = None
    call_id: object = None
    wrong_number: object = None
    malformed: bool = False  # the item was not a JSON object


@dataclass(frozen=True, slots=True)
class ContactsHealedRecord:
    """A batch of up to 1,000 contacts from one entry point (`contactsHealedRecord`, `POST /v1/contacts/healed`)."""

    events: Sequence[HealedContactIn]
    source: Literal["graphql", "ingest"]


@dataclass(frozen=True, slots=True)
class ContactsHealedExportCreate:
    """A CSV of the contacts confirmed on the inclusive days (all of them when unset), with only `columns`."""

    customer_id: CustomerId
    columns: list[HealedContactColumn]
    from_: date | None = None
    to: date | None = None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class HealedContactsReportSet:
    """The customer's scheduled self-healed contacts report (one per customer), created or replaced."""

    customer_id: CustomerId
    enabled: bool
    frequency: ReportFrequency
    delivery_time: str
    timezone: str
    recipients: list[str]
    columns: list[HealedContactColumn]


@dataclass(frozen=True, slots=True)
class AuditExportCreate:
    """A CSV of the system log as `auditEvents` shows it with the same filter. Ids are decoded primary keys."""

    format: ReportFormat
    type: AuditEventType | None = None
    user_id: int | None = None
    customer_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
