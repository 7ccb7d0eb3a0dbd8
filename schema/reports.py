"""Usage reports (exports), scheduled reports and a customer's report settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import strawberry
from strawberry import relay

from domain.reports import healed, recipients, schedules, services
from domain.reports.commands import (
    ContactsHealedExportCreate,
    CustomerReportSettingsUpdate,
    HealedContactsReportSet,
    ReportScheduleCreate,
    ReportScheduleDelete,
    ReportScheduleUpdate,
    UsageExportCreate,
)
from domain.reports.models import HealedContact as HealedContactRow
from domain.reports.models import HealedContactColumn as DomainHealedContactColumn
from domain.reports.models import ReportFormat as DomainReportFormat
from domain.reports.models import ReportFrequency as DomainReportFrequency
from domain.reports.models import ReportSchedule as ReportScheduleRow
from domain.reports.models import ReportSettings as ReportSettingsRow
from domain.reports.models import ReportStatus as DomainReportStatus
from domain.reports.models import UsageReport as UsageReportRow
from resolvers import reports as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import ErrorCode, ReportError
from schema.nodes import Connection, ModelNode, shows

ReportFormat = strawberry.enum(
    DomainReportFormat,
    name="ReportFormat",
    description="VOICE_CSV / SMS_CSV: one row per call or message; PDF: a summary by unit type and day; "
    "PDF_BY_CASE_TYPE: a .zip with one summary PDF per case type; HEALED_CONTACTS_CSV: self-healed contacts "
    "(contactsHealedExportCreate, healedContactsReportSet); AUDIT_CSV: the system log (auditExportCreate).",
)
HealedContactColumn = strawberry.enum(DomainHealedContactColumn, name="HealedContactColumn")
UsageReportStatus = strawberry.enum(DomainReportStatus, name="UsageReportStatus")
ReportFrequency = strawberry.enum(DomainReportFrequency, name="ReportFrequency")


@shows(UsageReportRow)
@strawberry.type(description="An export of a customer's usage: built by a job, then downloadable by signed link.")
class UsageReport(ModelNode):
    loader = "usage_report_by_id"
    renamed = {"from_": "period_from", "to": "period_to"}
    id: relay.NodeID[int]
    format: ReportFormat  # type: ignore[valid-type]
    from_: date = strawberry.field(name="from", description="First day covered (UTC, inclusive).")
    to: date = strawberry.field(description="Last day covered (UTC, inclusive).")
    status: UsageReportStatus  # type: ignore[valid-type]
    timezone: str = strawberry.field(description="The time zone of `from` and `to` (an IANA name).")
    row_count: int | None = strawberry.field(
        description="Rows the file holds: counted when the build starts, final once READY."
    )
    rows_done: int = strawberry.field(description="Rows written so far (pushed at least every second while RUNNING).")
    byte_size: int | None
    file_name: str | None
    expires_at: datetime | None = strawberry.field(description="After this the file is gone (READY reports).")
    created_at: datetime
    completed_at: datetime | None
    error: str | None
    model: strawberry.Private[Any]

    @classmethod
    def from_model(cls, model: Any) -> UsageReport:
        node = super().from_model(model)
        node.file_name = node.file_name or None
        node.error = node.error or None
        return node

    @strawberry.field(
        description="Whether the file shows prices and costs: decided when it was requested, by what its requester "
        "may see (a scheduled report: by the customer's pricing setting)."
    )
    def with_prices(self) -> bool:
        return bool(self.model.with_prices)

    @strawberry.field(
        description="A signed link valid for 24 hours (never beyond `expiresAt`); only when READY, and null for a "
        "customer's people when the file shows prices they may not see."
    )
    async def download_url(self, info: Info) -> str | None:
        customer_id = self.model.customer_id  # None: a partner-wide system log export, which carries no prices
        if (
            self.model.with_prices
            and customer_id is not None
            and not await info.context.loaders.prices_visible.load(customer_id)
        ):
            return None
        return services.download_url(self.model)


@shows(ReportScheduleRow)
@strawberry.type(description="A report emailed to recipients after each complete day, week or month (UTC).")
class ReportSchedule(ModelNode):
    loader = "report_schedule_by_id"
    id: relay.NodeID[int]
    format: ReportFormat  # type: ignore[valid-type]
    frequency: ReportFrequency  # type: ignore[valid-type]
    recipients: list[str]
    last_period_to: date | None = strawberry.field(description="End of the latest period already reported.")
    delivery_time: str = strawberry.field(description="HH:MM in `timezone`: when each period's report is requested.")
    timezone: str
    enabled: bool
    next_run_at: datetime | None = strawberry.field(description="When the next period's report will be requested.")
    last_run_at: datetime | None
    last_status: UsageReportStatus | None = strawberry.field(  # type: ignore[valid-type]
        description="Status of the last report this schedule requested."
    )
    created_at: datetime
    model: strawberry.Private[Any]

    @strawberry.field(description="HEALED_CONTACTS_CSV: the columns, in order.")
    def columns(self) -> list[HealedContactColumn] | None:  # type: ignore[valid-type]
        return [DomainHealedContactColumn(c) for c in self.model.columns] if self.model.columns else None


@shows(HealedContactRow)
@strawberry.type(description="A number found by enrichment and confirmed by a successful call (seed 001).")
class HealedContact(ModelNode):
    loader = "healed_contact_by_id"
    id: relay.NodeID[int]
    external_id: str
    old_number: str
    new_number: str
    enriched_at: datetime | None
    confirmed_at: datetime
    call_id: str
    wrong_number: bool
    model: strawberry.Private[Any]


@shows(ReportSettingsRow)
@strawberry.type(description="Who else may receive a customer's scheduled reports (set by the partner's admins).")
class ReportSettings:
    allowed_recipients: list[str] = strawberry.field(
        description="Addresses (`cfo@example.com`) or domains (`@example.com`) that schedules may email, besides "
        "the customer's users and its billing recipients."
    )

    @classmethod
    def from_model(cls, model: ReportSettingsRow) -> ReportSettings:
        return cls(allowed_recipients=list(model.allowed_recipients))

    @classmethod
    def maybe(cls, model: ReportSettingsRow | None) -> ReportSettings | None:
        return None if model is None else cls.from_model(model)


@strawberry.input
class UsageExportCreateInput:
    customer_id: strawberry.ID
    format: ReportFormat  # type: ignore[valid-type]
    from_: date = strawberry.field(name="from", description="First day (inclusive, in `timezone`).")
    to: date = strawberry.field(description="Last day (inclusive); at most 366 days after `from`.")
    timezone: str | None = strawberry.field(default=None, description="IANA time zone of the days; UTC when unset.")


@strawberry.type
class UsageExportCreatePayload:
    usage_report: UsageReport | None
    errors: list[ReportError]


@strawberry.input
class ReportScheduleCreateInput:
    customer_id: strawberry.ID
    format: ReportFormat  # type: ignore[valid-type]
    frequency: ReportFrequency  # type: ignore[valid-type]
    recipients: list[str]
    delivery_time: str | None = strawberry.field(default=None, description="HH:MM in `timezone`; 00:00 when unset.")
    timezone: str | None = strawberry.field(default=None, description="IANA time zone; UTC when unset.")


@strawberry.input
class ReportScheduleUpdateInput:
    report_schedule_id: strawberry.ID
    format: ReportFormat | None = strawberry.UNSET  # type: ignore[valid-type]
    frequency: ReportFrequency | None = strawberry.UNSET  # type: ignore[valid-type]
    recipients: list[str] | None = strawberry.UNSET
    delivery_time: str | None = strawberry.UNSET
    timezone: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


@strawberry.type
class ReportScheduleUpdatePayload:
    report_schedule: ReportSchedule | None
    errors: list[ReportError]


@strawberry.input
class HealedContactInput:
    customer_id: strawberry.ID
    external_id: str = strawberry.field(description="The contact's id in the customer's CRM or list.")
    new_number: str = strawberry.field(description="The number enrichment found and a successful call confirmed.")
    confirmed_at: datetime
    old_number: str | None = None
    enriched_at: datetime | None = None
    call_id: str | None = None
    wrong_number: bool | None = strawberry.field(
        default=None, description="True flags a recorded number as wrong: it leaves every list and report."
    )


@strawberry.input
class ContactsHealedRecordInput:
    events: list[HealedContactInput]


@strawberry.type
class IngestRejection:
    index: int
    code: ErrorCode  # type: ignore[valid-type]
    message: str
    field: str | None


@strawberry.type
class ContactsHealedRecordPayload:
    accepted: int
    duplicates: int
    rejected: list[IngestRejection]
    errors: list[ReportError]


@strawberry.input
class ContactsHealedFilter:
    from_: datetime | None = strawberry.field(default=None, name="from", description="Confirmed at or after.")
    to: datetime | None = strawberry.field(default=None, description="Confirmed before.")


@strawberry.input
class ContactsHealedExportCreateInput:
    customer_id: strawberry.ID
    columns: list[HealedContactColumn] = strawberry.field(  # type: ignore[valid-type]
        description="The CSV's columns, in this order."
    )
    from_: date | None = strawberry.field(default=None, name="from", description="First day confirmed (inclusive).")
    to: date | None = strawberry.field(default=None, description="Last day confirmed (inclusive); today when unset.")
    timezone: str | None = None


@strawberry.type
class ContactsHealedExportCreatePayload:
    usage_report: UsageReport | None
    errors: list[ReportError]


@strawberry.input
class HealedContactsReportSetInput:
    customer_id: strawberry.ID
    enabled: bool
    frequency: ReportFrequency  # type: ignore[valid-type]
    delivery_time: str = strawberry.field(description="HH:MM in `timezone`.")
    timezone: str
    recipients: list[str]
    columns: list[HealedContactColumn]  # type: ignore[valid-type]


@strawberry.type
class HealedContactsReportSetPayload:
    report_schedule: ReportSchedule | None
    errors: list[ReportError]


@strawberry.type
class ReportScheduleCreatePayload:
    report_schedule: ReportSchedule | None
    errors: list[ReportError]


@strawberry.input
class ReportScheduleDeleteInput:
    report_schedule_id: strawberry.ID


@strawberry.type
class ReportScheduleDeletePayload:
    report_schedule: ReportSchedule | None
    errors: list[ReportError]


@strawberry.input
class CustomerReportSettingsUpdateInput:
    customer_id: strawberry.ID
    allowed_recipients: list[str] = strawberry.field(description="Replaces the list; at most 50 entries.")


@strawberry.type
class CustomerReportSettingsUpdatePayload:
    report_settings: ReportSettings | None
    errors: list[ReportError]


@strawberry.type
class ReportQueries:
    @strawberry.field(description="A customer's usage reports, newest first.")
    async def usage_reports(
        self, info: Info, customer_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[UsageReport]:
        return Connection.of(await r.usage_reports(info.context, customer_id, first, after), UsageReport)

    @strawberry.field(description="A customer's scheduled reports.")
    async def report_schedules(
        self, info: Info, customer_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[ReportSchedule]:
        return Connection.of(await r.report_schedules(info.context, customer_id, first, after), ReportSchedule)

    @strawberry.field(description="Who else may receive the customer's scheduled reports (partner staff, its admins).")
    async def report_settings(self, info: Info, customer_id: strawberry.ID) -> ReportSettings:
        return ReportSettings.from_model(await r.report_settings(info.context, customer_id))

    @strawberry.field(description="The customer's self-healed contacts (wrong numbers left out), newest first.")
    async def contacts_healed(
        self,
        info: Info,
        customer_id: strawberry.ID,
        filter: ContactsHealedFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[HealedContact]:
        f = filter or ContactsHealedFilter()
        page = await r.contacts_healed(info.context, customer_id, f.from_, f.to, first, after)
        return Connection.of(page, HealedContact)

    @strawberry.field(description="The customer's scheduled self-healed contacts report; null until set.")
    async def healed_contacts_report(self, info: Info, customer_id: strawberry.ID) -> ReportSchedule | None:
        return ReportSchedule.maybe(await r.healed_contacts_report(info.context, customer_id))

    @strawberry.field(description="System log exports the viewer may download, newest first.")
    async def audit_exports(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[UsageReport]:
        return Connection.of(await r.audit_exports(info.context, first, after), UsageReport)


@strawberry.type
class ReportMutations:
    @strawberry.mutation(description="Requests a usage export: QUEUED, then built by a job (`usageReportUpdated`).")
    async def usage_export_create(self, info: Info, input: UsageExportCreateInput) -> UsageExportCreatePayload:
        outcome = await perform(info.context, services.usage_export_create, input, UsageExportCreate)
        return UsageExportCreatePayload(
            usage_report=UsageReport.maybe(outcome.value), errors=ReportError.list(outcome.errors)
        )

    @strawberry.mutation(description="Emails a report of each complete period to the recipients.")
    async def report_schedule_create(self, info: Info, input: ReportScheduleCreateInput) -> ReportScheduleCreatePayload:
        outcome = await perform(info.context, schedules.schedule_create, input, ReportScheduleCreate)
        return ReportScheduleCreatePayload(
            report_schedule=ReportSchedule.maybe(outcome.value), errors=ReportError.list(outcome.errors)
        )

    @strawberry.mutation(
        description="Partner admins: addresses or @domains the customer's scheduled reports may also go to."
    )
    async def customer_report_settings_update(
        self, info: Info, input: CustomerReportSettingsUpdateInput
    ) -> CustomerReportSettingsUpdatePayload:
        outcome = await perform(info.context, recipients.settings_update, input, CustomerReportSettingsUpdate)
        return CustomerReportSettingsUpdatePayload(
            report_settings=ReportSettings.maybe(outcome.value), errors=ReportError.list(outcome.errors)
        )

    @strawberry.mutation(description="Changes a schedule: only the fields sent.")
    async def report_schedule_update(self, info: Info, input: ReportScheduleUpdateInput) -> ReportScheduleUpdatePayload:
        outcome = await perform(info.context, schedules.schedule_update, input, ReportScheduleUpdate)
        return ReportScheduleUpdatePayload(
            report_schedule=ReportSchedule.maybe(outcome.value), errors=ReportError.list(outcome.errors)
        )

    @strawberry.mutation(description="Records self-healed contacts (up to 1,000; the answer of usageRecord).")
    async def contacts_healed_record(self, info: Info, input: ContactsHealedRecordInput) -> ContactsHealedRecordPayload:
        outcome = await r.contacts_healed_record(info.context, input.events)
        result = outcome.value
        return ContactsHealedRecordPayload(
            accepted=result.accepted if result else 0,
            duplicates=result.duplicates if result else 0,
            rejected=[
                IngestRejection(index=x.index, code=x.code, message=x.message, field=x.field)
                for x in (result.rejected if result else [])
            ],
            errors=ReportError.list(outcome.errors),
        )

    @strawberry.mutation(description="Exports self-healed contacts as a CSV of the chosen columns, in order.")
    async def contacts_healed_export_create(
        self, info: Info, input: ContactsHealedExportCreateInput
    ) -> ContactsHealedExportCreatePayload:
        outcome = await perform(info.context, healed.contacts_healed_export_create, input, ContactsHealedExportCreate)
        return ContactsHealedExportCreatePayload(
            usage_report=UsageReport.maybe(outcome.value), errors=ReportError.list(outcome.errors)
        )

    @strawberry.mutation(description="Turns the scheduled self-healed contacts report on or off and sets it up.")
    async def healed_contacts_report_set(
        self, info: Info, input: HealedContactsReportSetInput
    ) -> HealedContactsReportSetPayload:
        outcome = await perform(info.context, schedules.healed_contacts_report_set, input, HealedContactsReportSet)
        return HealedContactsReportSetPayload(
            report_schedule=ReportSchedule.maybe(outcome.value), errors=ReportError.list(outcome.errors)
        )

    @strawberry.mutation(description="Stops a scheduled report.")
    async def report_schedule_delete(self, info: Info, input: ReportScheduleDeleteInput) -> ReportScheduleDeletePayload:
        outcome = await perform(info.context, schedules.schedule_delete, input, ReportScheduleDelete)
        return ReportScheduleDeletePayload(
            report_schedule=ReportSchedule.maybe(outcome.value), errors=ReportError.list(outcome.errors)
        )
