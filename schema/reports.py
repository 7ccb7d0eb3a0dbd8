"""Usage reports (exports), scheduled reports and a customer's report settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import strawberry
from strawberry import relay

from domain.reports import recipients, schedules, services
from domain.reports.commands import (
    CustomerReportSettingsUpdate,
    ReportScheduleCreate,
    ReportScheduleDelete,
    UsageExportCreate,
)
from domain.reports.models import ReportFormat as DomainReportFormat
from domain.reports.models import ReportFrequency as DomainReportFrequency
from domain.reports.models import ReportSchedule as ReportScheduleRow
from domain.reports.models import ReportSettings as ReportSettingsRow
from domain.reports.models import ReportStatus as DomainReportStatus
from domain.reports.models import UsageReport as UsageReportRow
from resolvers import reports as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import ReportError
from schema.nodes import Connection, ModelNode, shows

ReportFormat = strawberry.enum(
    DomainReportFormat,
    name="ReportFormat",
    description="VOICE_CSV / SMS_CSV: one row per event; PDF: a summary by unit type and day; PDF_BY_CASE_TYPE: a "
    ".zip with one summary PDF per case type.",
)
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
    row_count: int | None = strawberry.field(description="Usage events included, once READY.")
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
        if self.model.with_prices and not await info.context.loaders.prices_visible.load(self.model.customer_id):
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
    created_at: datetime
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
    from_: date = strawberry.field(name="from", description="First day (UTC, inclusive).")
    to: date = strawberry.field(description="Last day (UTC, inclusive); at most 366 days after `from`.")


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

    @strawberry.mutation(description="Stops a scheduled report.")
    async def report_schedule_delete(self, info: Info, input: ReportScheduleDeleteInput) -> ReportScheduleDeletePayload:
        outcome = await perform(info.context, schedules.schedule_delete, input, ReportScheduleDelete)
        return ReportScheduleDeletePayload(
            report_schedule=ReportSchedule.maybe(outcome.value), errors=ReportError.list(outcome.errors)
        )
