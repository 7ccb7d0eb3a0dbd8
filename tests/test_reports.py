"""Usage reports end to end (seed 001): usageExportCreate through the ASGI app, the outbox relay and the export
job, the files themselves (CSV values, PDFs that open, one PDF per case type), signed downloads over HTTP, tenancy,
live status updates over graphql-transport-ws against real uvicorn, and scheduled reports emailed with their link."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import email
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from domain import config as domain_config
from domain.accounts.models import Role
from domain.audit.models import AuditEvent, AuditEventType
from domain.events.models import OutboxEvent
from domain.reports import links, schedules
from domain.reports import services as reports
from domain.reports.models import (
    ReportFormat,
    ReportFrequency,
    ReportSchedule,
    ReportSettings,
    ReportStatus,
    UsageReport,
)
from domain.reports.storage import LocalStorage, configure_storage
from domain.usage import services as usage
from domain.usage.commands import UsageEventIn
from domain.viewer import Viewer
from jobs import mailer
from jobs.broker import EmbeddedConsumer
from server.locks import Leases
from server.relay import Relay
from tests.conftest import GQL, IS_POSTGRES, Factory, Tenant, gid
from tests.servers import blocking, create_admin, fresh_database, live_server

CREATE = """mutation($i: UsageExportCreateInput!) { usageExportCreate(input: $i) {
  usageReport { id format from to status rowCount byteSize downloadUrl expiresAt createdAt completedAt error }
  errors { field code message } } }"""
REPORTS = """query($id: ID!, $first: Int, $after: String) { usageReports(customerId: $id, first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  nodes { id format from to status rowCount byteSize fileName downloadUrl expiresAt completedAt error } } }"""
NODE = """query($id: ID!) { node(id: $id) { ... on UsageReport { id status format } } }"""
SCHEDULE_CREATE = """mutation($i: ReportScheduleCreateInput!) { reportScheduleCreate(input: $i) {
  reportSchedule { id format frequency recipients lastPeriodTo } errors { field code message } } }"""
SCHEDULE_DELETE = """mutation($i: ReportScheduleDeleteInput!) { reportScheduleDelete(input: $i) {
  reportSchedule { id } errors { field code message } } }"""

TODAY = datetime.now(UTC).date()
DAY1 = TODAY - timedelta(days=10)  # the period is DAY1..DAY2; events stay inside the 35-day acceptance window
DAY2 = TODAY - timedelta(days=9)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


# (unit type, quantity, occurred at, case type) — default rates: voice $0.06/minute, SMS $0.01/segment
EVENTS = [
    ("VOICE_MINUTES", "2.5", at(DAY1, 9), "Intake"),
    ("VOICE_MINUTES", "1", at(DAY1, 9), "Follow-up"),  # same instant: ordered by id
    ("SMS_SEGMENTS", "3", at(DAY1, 10), "Intake"),
    ("VOICE_MINUTES", "4", at(DAY2, 23, 59), "=HYPERLINK()"),
    ("SMS_SEGMENTS", "2", at(DAY2, 8), ""),
    ("CHAT_TURNS", "5", at(DAY2, 12), "Intake"),
    ("VOICE_MINUTES", "7", at(DAY1 - timedelta(days=1), 23, 59), "Intake"),  # before the period
    ("SMS_SEGMENTS", "9", at(DAY2 + timedelta(days=1), 0, 0), "Intake"),  # after it
]


# ---------------------------------------------------------------- harness


@pytest.fixture(autouse=True)
def exports_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "exports"
    with domain_config.overridden(exports_dir=folder):
        yield folder
    configure_storage(None)


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


async def run_jobs(app: Any) -> EmbeddedConsumer:
    """What production does after a commit: the relay hands outbox events to the broker, a worker runs them."""
    await Relay(Leases(None)).drain_once()
    consumer = EmbeddedConsumer(app.state.broker)
    await consumer.drain()
    await Relay(Leases(None)).drain_once()  # what the jobs emitted (a scheduled report's delivery)
    await consumer.drain()
    return consumer


# call details of the first voice event and the first SMS (the others carry none)
CALL = {
    "direction": "OUTBOUND",
    "from_number": "+41445551234",
    "to_number": "+15551234567",
    "duration_seconds": 150,
    "call_id": "call-001",
}
MESSAGE = {"direction": "INBOUND", "from_number": "+15557654321", "to_number": "+41445551234", "segments": 3}


async def seed_usage(tenant: Tenant, customer_index: int = 0, campaign_id: int | None = None) -> None:
    staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=tenant.partner.id, label="tests")
    customer = tenant.customers[customer_index]
    events = []
    for i, (unit, quantity, occurred, case_type) in enumerate(EVENTS):
        details: dict[str, Any] = {0: CALL, 2: MESSAGE}.get(i, {})
        if details and campaign_id is not None:
            details = {**details, "campaign_id": campaign_id}
        events.append(UsageEventIn(uuid.uuid4().hex, customer.id, unit, quantity, occurred, case_type, **details))
    result = await usage.record_usage(staff, events)
    assert (result.accepted, result.rejected) == (len(EVENTS), []), result


async def create(
    gql: GQL, token: str, customer_id: int, fmt: str, since: date = DAY1, until: date = DAY2
) -> dict[str, Any]:
    data = await gql(
        CREATE,
        {
            "i": {
                "customerId": gid("Customer", customer_id),
                "format": fmt,
                "from": since.isoformat(),
                "to": until.isoformat(),
            }
        },
        token,
    )
    return data["usageExportCreate"]


async def listed(gql: GQL, token: str, customer_id: int, **args: Any) -> dict[str, Any]:
    return (await gql(REPORTS, {"id": gid("Customer", customer_id), **args}, token))["usageReports"]


async def build_one(app: Any, gql: GQL, token: str, customer_id: int, fmt: str) -> dict[str, Any]:
    created = await create(gql, token, customer_id, fmt)
    assert created["errors"] == [], created
    await run_jobs(app)
    (node,) = [n for n in (await listed(gql, token, customer_id))["nodes"] if n["id"] == created["usageReport"]["id"]]
    assert node["status"] == "READY", node
    return node


async def download(client: httpx.AsyncClient, url: str) -> httpx.Response:
    assert url.startswith(domain_config.config().public_url.rstrip("/") + "/exports/"), url
    return await client.get(httpx.URL(url).path)


def csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def pdf_text(data: bytes) -> tuple[int, str]:
    assert data.startswith(b"%PDF-"), data[:20]
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


# ---------------------------------------------------------------- formats


async def test_voice_csv_has_exactly_the_voice_events_of_the_period(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory
) -> None:
    # given a customer with voice, SMS and chat usage inside and around the period
    tenant = await factory.tenant(customers=1, name="BrightCall")
    customer = tenant.customers[0]
    await seed_usage(tenant)
    staff = await gql.login(tenant.owner.email)
    # when a voice CSV is requested
    created = await create(gql, staff, customer.id, "VOICE_CSV")
    # then it is queued, with no link yet
    report = created["usageReport"]
    assert created["errors"] == []
    assert (report["status"], report["format"], report["from"], report["to"]) == (
        "QUEUED",
        "VOICE_CSV",
        DAY1.isoformat(),
        DAY2.isoformat(),
    )
    assert report["downloadUrl"] is None and report["rowCount"] is None and report["completedAt"] is None
    # when the jobs run
    await run_jobs(app)
    node = (await listed(gql, staff, customer.id))["nodes"][0]
    # then the report is READY with a signed link, and the file holds the period's voice events, oldest first
    assert (node["status"], node["rowCount"], node["error"]) == ("READY", 3, None)
    assert node["fileName"] == f"usage-voice-{DAY1.isoformat()}_{DAY2.isoformat()}.csv"
    response = await download(client, node["downloadUrl"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="{node["fileName"]}"'
    assert len(response.content) == node["byteSize"]
    assert csv_rows(response.content) == [
        VOICE_HEADER,
        [
            at(DAY1, 9).isoformat(),
            "call-001",
            "OUTBOUND",
            "+41445551234",
            "+15551234567",
            "150",
            "",
            "",
            "Intake",
            "2.5",
            "0.06",
            "0.15",
            "USD",
            "0",
            "INVOICE",
            "false",
        ],
        [
            at(DAY1, 9).isoformat(),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "Follow-up",
            "1",
            "0.06",
            "0.06",
            "USD",
            "0",
            "INVOICE",
            "false",
        ],
        # a case type that a spreadsheet would run as a formula is quoted
        [
            at(DAY2, 23, 59).isoformat(),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "'=HYPERLINK()",
            "4",
            "0.06",
            "0.24",
            "USD",
            "0",
            "INVOICE",
            "false",
        ],
    ]


VOICE_HEADER = (
    "occurred_at call_id direction from_number to_number duration_seconds campaign_id campaign case_type quantity "
    "unit_price cost currency credits funding paid"
).split()
SMS_HEADER = (
    "occurred_at message_id direction from_number to_number segments campaign_id campaign case_type quantity "
    "unit_price cost currency credits funding paid"
).split()


async def test_sms_csv_streams_in_chunks_and_keeps_every_row_once(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory
) -> None:
    # given SMS events in the period
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await seed_usage(tenant)
    report = await UsageReport.create(
        customer_id=customer.id,
        partner_id=tenant.partner.id,
        format=ReportFormat.SMS_CSV,
        period_from=DAY1,
        period_to=DAY2,
    )
    # when read back one row per chunk (keyset pagination across chunks)
    chunks = [rows async for rows in reports.stream_events(report, chunk=1)]
    # then each event of the period comes once, in order
    assert [len(c) for c in chunks] == [1, 1, 1, 1, 1, 1]
    assert [row.unit_type for chunk in chunks for row in chunk] == [
        "VOICE_MINUTES",
        "VOICE_MINUTES",
        "SMS_SEGMENTS",
        "SMS_SEGMENTS",
        "CHAT_TURNS",
        "VOICE_MINUTES",
    ]
    # and the SMS report holds exactly the two SMS rows
    assert await reports.build(report.id) == "READY"
    await report.refresh_from_db()
    url = reports.download_url(report)
    assert url is not None
    rows = csv_rows((await download(client, url)).content)
    assert rows == [
        SMS_HEADER,
        [
            at(DAY1, 10).isoformat(),
            "",
            "INBOUND",
            "+15557654321",
            "+41445551234",
            "3",
            "",
            "",
            "Intake",
            "3",
            "0.01",
            "0.03",
            "USD",
            "0",
            "INVOICE",
            "false",
        ],
        [at(DAY2, 8).isoformat(), "", "", "", "", "", "", "", "", "2", "0.01", "0.02", "USD", "0", "INVOICE", "false"],
    ]
    assert report.row_count == 2


async def test_pdf_summary_opens_and_carries_the_partners_name_and_totals(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory
) -> None:
    # given
    tenant = await factory.tenant(customers=1, name="BrightCall Agency")
    customer = tenant.customers[0]
    await seed_usage(tenant)
    staff = await gql.login(tenant.owner.email)
    # when
    node = await build_one(app, gql, staff, customer.id, "PDF")
    response = await download(client, node["downloadUrl"])
    # then a PDF that opens, branded with the partner's name, with totals by unit type and usage by day
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert node["rowCount"] == 6
    pages, text = pdf_text(response.content)
    assert pages >= 1
    assert text.startswith("BrightCall Agency")
    assert customer.name in text
    assert f"Period: {DAY1.isoformat()} to {DAY2.isoformat()}" in text
    # voice 7.5 min = $0.45, SMS 5 = $0.05, chat 5 turns = $0.05: total $0.55
    for fragment in ("Voice minutes 3 7.5 0.45", "SMS segments 2 5 0.05", "Chat turns 1 5 0.05", "Total 6 0.55"):
        assert fragment in text, (fragment, text)
    assert f"{DAY1.isoformat()} Voice minutes 2 3.5 0.21" in text
    assert f"{DAY2.isoformat()} Voice minutes 1 4 0.24" in text


async def test_pdf_by_case_type_is_a_zip_with_one_pdf_per_case_type(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory
) -> None:
    # given usage under the case types Intake, Follow-up, "=HYPERLINK()" and none
    tenant = await factory.tenant(customers=1, name="BrightCall")
    customer = tenant.customers[0]
    await seed_usage(tenant)
    staff = await gql.login(tenant.owner.email)
    # when
    node = await build_one(app, gql, staff, customer.id, "PDF_BY_CASE_TYPE")
    response = await download(client, node["downloadUrl"])
    # then a zip of four PDFs, one per case type, each summarising only its own usage
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    stem = f"usage-by-case-type-{DAY1.isoformat()}_{DAY2.isoformat()}"
    assert archive.namelist() == [  # in case type order, the empty case type last
        f"{stem}-hyperlink.pdf",
        f"{stem}-follow-up.pdf",
        f"{stem}-intake.pdf",
        f"{stem}-uncategorized.pdf",
    ]
    texts = {name: pdf_text(archive.read(name))[1] for name in archive.namelist()}
    intake = texts[f"{stem}-intake.pdf"]
    assert intake.startswith("BrightCall") and "case type: Intake" in intake
    assert "Voice minutes 1 2.5 0.15" in intake and "SMS segments 1 3 0.03" in intake and "Total 3 0.23" in intake
    assert "Total 1 0.06" in texts[f"{stem}-follow-up.pdf"]
    assert "case type: Uncategorized" in texts[f"{stem}-uncategorized.pdf"]
    assert "Total 1 0.02" in texts[f"{stem}-uncategorized.pdf"]


async def test_a_period_without_usage_still_builds(app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory):
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    csv_node = await build_one(app, gql, staff, customer.id, "VOICE_CSV")
    pdf_node = await build_one(app, gql, staff, customer.id, "PDF")
    assert csv_node["rowCount"] == 0 and pdf_node["rowCount"] == 0
    assert csv_rows((await download(client, csv_node["downloadUrl"])).content) == [VOICE_HEADER]
    _, text = pdf_text((await download(client, pdf_node["downloadUrl"])).content)
    assert "No usage in this period." in text


# ---------------------------------------------------------------- rules and tenancy


@pytest.mark.parametrize(
    ("since", "until", "field", "code"),
    [
        (DAY2, DAY1, "to", "INVALID"),
        (TODAY - timedelta(days=366), TODAY, "to", "INVALID"),  # 367 days
        # the ends of the calendar: the build's day bounds would overflow (it failed in the worker, after queueing)
        (date(9999, 12, 30), date(9999, 12, 31), "from", "INVALID"),
        (date(1, 1, 1), date(1, 1, 2), "from", "INVALID"),
    ],
)
async def test_invalid_periods_are_refused(
    gql: GQL, factory: Factory, since: date, until: date, field: str, code: str
) -> None:
    tenant = await factory.tenant(customers=1)
    staff = await gql.login(tenant.owner.email)
    created = await create(gql, staff, tenant.customers[0].id, "PDF", since, until)
    assert created["usageReport"] is None
    assert [(e["field"], e["code"]) for e in created["errors"]] == [(field, code)]
    assert await UsageReport.all().count() == 0
    # 366 days is fine
    ok = await create(gql, staff, tenant.customers[0].id, "PDF", TODAY - timedelta(days=365), TODAY)
    assert ok["errors"] == []


async def test_another_tenants_customer_is_not_found(gql: GQL, factory: Factory) -> None:
    # given two partners, and a customer admin of the first partner's first customer
    mine, theirs = await factory.tenant(customers=2), await factory.tenant(customers=1)
    staff = await gql.login(mine.owner.email)
    customer_admin = await gql.login(mine.admins[0].email)
    mine_report = (await create(gql, staff, mine.customers[0].id, "PDF"))["usageReport"]
    # when exporting, listing or fetching beyond their reach
    for token, customer in ((staff, theirs.customers[0]), (customer_admin, mine.customers[1])):
        created = await create(gql, token, customer.id, "VOICE_CSV")
        assert [(e["field"], e["code"]) for e in created["errors"]] == [("customerId", "NOT_FOUND")]
        response = await gql.raw(REPORTS, {"id": gid("Customer", customer.id)}, token)
        assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    other_staff = await gql.login(theirs.owner.email)
    assert (await gql(NODE, {"id": mine_report["id"]}, other_staff))["node"] is None
    # then only the visible report exists, and the customer's own admin sees it
    assert await UsageReport.all().count() == 1
    assert (await gql(NODE, {"id": mine_report["id"]}, customer_admin))["node"]["format"] == "PDF"
    assert (await listed(gql, customer_admin, mine.customers[0].id))["totalCount"] == 1


async def test_usage_reports_lists_newest_first_with_pages(gql: GQL, factory: Factory) -> None:
    tenant = await factory.tenant(customers=2)
    staff = await gql.login(tenant.owner.email)
    made = [
        (await create(gql, staff, tenant.customers[0].id, fmt))["usageReport"]["id"]
        for fmt in ("VOICE_CSV", "SMS_CSV", "PDF", "PDF_BY_CASE_TYPE")
    ]
    await create(gql, staff, tenant.customers[1].id, "PDF")  # another customer's
    first = await listed(gql, staff, tenant.customers[0].id, first=3)
    assert first["totalCount"] == 4 and first["pageInfo"]["hasNextPage"] is True
    rest = await listed(gql, staff, tenant.customers[0].id, first=3, after=first["pageInfo"]["endCursor"])
    assert [n["id"] for n in first["nodes"] + rest["nodes"]] == made[::-1]
    assert [n["format"] for n in rest["nodes"]] == ["VOICE_CSV"]


# ---------------------------------------------------------------- the job: events, idempotency, failures


async def test_status_changes_are_committed_with_outbox_events_and_a_redelivered_job_does_nothing(
    app: Any, gql: GQL, factory: Factory
) -> None:
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    report_id = _pk((await create(gql, staff, customer.id, "SMS_CSV"))["usageReport"]["id"])
    requested = await OutboxEvent.filter(topic="usage_report.requested").values_list("customer_id", "payload")
    assert requested == [(customer.id, {"report_id": report_id})]
    # when the job runs, then runs again (at-least-once delivery)
    await run_jobs(app)
    assert await reports.build(report_id) == "READY"
    # then RUNNING (with the rows counted: progress 0 of them) and READY were each announced once, for the
    # customer's live views
    updates = (
        await OutboxEvent.filter(topic="usage_report.updated").order_by("id").values_list("customer_id", "payload")
    )
    assert updates == [
        (customer.id, {"report_id": report_id, "status": "RUNNING"}),
        (customer.id, {"report_id": report_id, "status": "RUNNING", "rows_done": 0}),
        (customer.id, {"report_id": report_id, "status": "READY"}),
    ]
    report = await UsageReport.get(id=report_id)
    assert report.attempts == 1
    assert report.expires_at is not None and report.completed_at is not None
    assert report.expires_at - report.completed_at == timedelta(hours=domain_config.config().export_retention_hours)


class BrokenStorage(LocalStorage):
    async def put(self, key: str, source: Path) -> int:
        raise OSError("disk full")


async def test_a_failed_build_is_reported_as_failed(app: Any, gql: GQL, factory: Factory, exports_dir: Path) -> None:
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    staff = await gql.login(tenant.owner.email)
    configure_storage(BrokenStorage(exports_dir))
    await create(gql, staff, customer.id, "PDF")
    await run_jobs(app)
    node = (await listed(gql, staff, customer.id))["nodes"][0]
    assert (node["status"], node["downloadUrl"], node["rowCount"]) == ("FAILED", None, 0)  # 0 rows counted
    assert (
        node["error"] == "Building the report failed; request it again, or quote the report id to support."
    )  # no internals
    assert node["completedAt"] is not None
    statuses = [
        p["status"] for p in await OutboxEvent.filter(topic="usage_report.updated").values_list("payload", flat=True)
    ]
    assert statuses == ["RUNNING", "RUNNING", "FAILED"]  # the second: its rows counted


async def test_a_stale_running_report_is_taken_over(factory: Factory) -> None:
    tenant = await factory.tenant(customers=1)
    now = datetime.now(UTC)
    common = {"customer_id": tenant.customers[0].id, "partner_id": tenant.partner.id, "format": ReportFormat.PDF}
    fresh = await UsageReport.create(
        **common, period_from=DAY1, period_to=DAY2, status=ReportStatus.RUNNING, started_at=now, attempts=1
    )
    stale = await UsageReport.create(
        **common,
        period_from=DAY1,
        period_to=DAY2,
        status=ReportStatus.RUNNING,
        started_at=now - timedelta(hours=1),
        attempts=1,
    )
    assert await reports.build(fresh.id) == "RUNNING"  # another worker is on it
    assert await reports.build(stale.id) == "READY"  # that worker died
    assert (await UsageReport.get(id=stale.id)).attempts == 2


# ---------------------------------------------------------------- downloads


async def test_tampered_and_expired_links_are_refused_and_downloads_are_audited(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory
) -> None:
    # given two READY reports of two customers
    tenant = await factory.tenant(customers=2)
    await seed_usage(tenant)
    staff = await gql.login(tenant.owner.email)
    mine = await build_one(app, gql, staff, tenant.customers[0].id, "VOICE_CSV")
    other = await build_one(app, gql, staff, tenant.customers[1].id, "VOICE_CSV")
    token = mine["downloadUrl"].rsplit("/", 1)[1]
    other_token = other["downloadUrl"].rsplit("/", 1)[1]
    report_id, expires, signature = token.split(".")
    # the link lives 24 hours
    assert int(expires) - datetime.now(UTC).timestamp() == pytest.approx(24 * 3600, abs=60)
    # when the link is altered: another report, a later expiry, a changed or borrowed signature, garbage
    other_id = other_token.split(".")[0]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (
        f"{other_id}.{expires}.{signature}",
        f"{report_id}.{int(expires) + 86400}.{signature}",
        f"{report_id}.{expires}.{flipped}",
        f"{report_id}.{expires}.{other_token.split('.')[2]}",
        "nonsense",
        f"{report_id}.{expires}",
    ):
        response = await client.get(f"/exports/{bad}")
        # then 403, with nothing of the file
        assert response.status_code == 403, (bad, response.status_code)
        assert "occurred_at" not in response.text
    # when an authentic link has expired
    past = links.sign(int(report_id), datetime.now(UTC) - timedelta(seconds=1))
    assert (await client.get(f"/exports/{past}")).status_code == 410
    # when the report itself expired (its file purged): 410 and no downloadUrl
    await UsageReport.filter(id=int(other_id)).update(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    assert (await client.get(f"/exports/{other_token}")).status_code == 410
    assert (await listed(gql, staff, tenant.customers[1].id))["nodes"][0]["downloadUrl"] is None
    assert await reports.purge_expired() == 1
    assert (await UsageReport.get(id=int(other_id))).storage_key == ""
    # and the valid link works, and every creation and the one download are export audit events
    assert (await client.head(f"/exports/{token}")).status_code == 200  # sends no file: not a download
    assert (await client.get(f"/exports/{token}", headers={"user-agent": "pytest-dl"})).status_code == 200
    events = await AuditEvent.filter(type=AuditEventType.EXPORT).order_by("id")
    assert [(e.action, e.object_id) for e in events] == [
        ("usage_report.create", report_id),
        ("usage_report.create", other_id),
        ("usage_report.download", report_id),
    ]
    download_event = events[-1]
    assert download_event.customer_id == tenant.customers[0].id
    assert download_event.partner_id == tenant.partner.id
    assert (download_event.ip, download_event.user_agent) == ("203.0.113.7", "pytest-dl")


# ---------------------------------------------------------------- live status over graphql-transport-ws

SUBSCRIBE = """subscription($id: ID!) { usageReportUpdated(id: $id) {
  id status rowCount downloadUrl error } }"""


def _e2e_sql(url: str, statement: str, *args: Any) -> Any:
    """One statement against the live server's database, from outside the server (as another process would)."""
    if IS_POSTGRES:
        import asyncpg

        async def run() -> Any:
            conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
            try:
                return await conn.fetchval(statement, *args)
            finally:
                await conn.close()

        return blocking(run())
    pg_style = statement
    for n in range(len(args), 0, -1):
        pg_style = pg_style.replace(f"${n}", "?")
    with sqlite3.connect(url.removeprefix("sqlite://")) as conn:
        cursor = conn.execute(pg_style.replace("::jsonb", "").replace("RETURNING id", ""), args)
        return cursor.lastrowid


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Any, str, tuple[str, str]]]:
    from tests.test_subscriptions import Api

    with fresh_database(tmp_path) as url:
        admin = create_admin(url)
        with live_server(url, tmp_path, EXPORTS_DIR=str(tmp_path / "exports"), WS_RECHECK_SECONDS="0.5") as base:
            yield Api(base), url, admin


def _pk(global_id: str) -> int:
    import base64

    return int(base64.b64decode(global_id).decode().split(":")[1])


async def _record_sms(api: Any, token: str, customer: str) -> None:
    data = await api(
        "mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted } }",
        {
            "i": {
                "events": [
                    {
                        "idempotencyKey": uuid.uuid4().hex,
                        "customerId": customer,
                        "unitType": "SMS_SEGMENTS",
                        "quantity": "4",
                        "occurredAt": at(DAY1, 11).isoformat(),
                    }
                ]
            }
        },
        token,
    )
    assert data["usageRecord"]["accepted"] == 1


async def test_subscribers_see_a_queued_report_become_ready(live: tuple[Any, str, tuple[str, str]]) -> None:
    from gql import gql as document
    from gql.transport.exceptions import TransportQueryError

    from tests.test_subscriptions import client, setup_tenant

    api, url, admin = live
    tenant = await setup_tenant(api, *admin)
    other = await setup_tenant(api, *admin)
    customer = tenant["customers"][0]
    await _record_sms(api, tenant["staff"], customer)
    # given a QUEUED report whose build has not been requested yet (as if its request were still uncommitted)
    now = datetime.now(UTC)
    report_id = _e2e_sql(
        url,
        "INSERT INTO usage_report (customer_id, partner_id, format, period_from, period_to, status, attempts, "
        "storage_key, file_name, content_type, error, created_at) "
        "VALUES ($1, $2, 'SMS_CSV', $3, $4, 'QUEUED', 0, '', '', '', '', $5) RETURNING id",
        _pk(customer),
        _pk(tenant["partner"]),
        DAY1,
        DAY2,
        now,
    )
    report_gid = gid("UsageReport", report_id)
    received: list[dict[str, Any]] = []
    async with client(api, tenant["staff"]) as session:
        stream = session.subscribe(document(SUBSCRIBE), variable_values={"id": report_gid})
        # when a subscriber watches it: first the report as it is
        first = await asyncio.wait_for(anext(stream), 10)
        received.append(first["usageReportUpdated"])
        assert received[0]["status"] == "QUEUED" and received[0]["downloadUrl"] is None
        # and the build is requested (the relay of the server hands it to the job)
        _e2e_sql(
            url,
            "INSERT INTO outbox_event (topic, customer_id, partner_id, payload, created_at) "
            "VALUES ('usage_report.requested', $1, $2, $3::jsonb, $4) RETURNING id",
            _pk(customer),
            _pk(tenant["partner"]),
            json.dumps({"report_id": report_id}),
            now,
        )

        async def rest() -> None:
            async for update in stream:
                received.append(update["usageReportUpdated"])

        # then the changes arrive, and the subscription completes once the report is READY
        await asyncio.wait_for(rest(), 20)
    statuses = [r["status"] for r in received]
    changes = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    assert changes in (["QUEUED", "RUNNING", "READY"], ["QUEUED", "READY"]), statuses
    ready = received[-1]
    assert (ready["id"], ready["rowCount"], ready["error"]) == (report_gid, 1, None)
    async with httpx.AsyncClient() as http:
        body = (await http.get(ready["downloadUrl"].replace("http://127.0.0.1:8000", api.base))).content
    assert csv_rows(body)[1][9] == "4"
    # and another partner's staff cannot watch it
    async with client(api, other["staff"]) as session:
        with pytest.raises(TransportQueryError) as refused:
            async for _ in session.subscribe(document(SUBSCRIBE), variable_values={"id": report_gid}):
                pass
        assert "NOT_FOUND" in str(refused.value) or "not found" in str(refused.value).lower()


async def test_a_report_created_through_the_api_is_pushed_until_ready(live: tuple[Any, str, tuple[str, str]]) -> None:
    from gql import gql as document

    from tests.test_subscriptions import client, setup_tenant

    api, _, admin = live
    tenant = await setup_tenant(api, *admin)
    customer = tenant["customers"][0]
    await _record_sms(api, tenant["staff"], customer)
    created = await api(
        CREATE,
        {"i": {"customerId": customer, "format": "PDF", "from": DAY1.isoformat(), "to": DAY2.isoformat()}},
        tenant["staff"],
    )
    report = created["usageExportCreate"]["usageReport"]
    order = ["QUEUED", "RUNNING", "READY"]
    async with client(api, tenant["staff"]) as session:
        received = [
            u["usageReportUpdated"]
            async for u in session.subscribe(document(SUBSCRIBE), variable_values={"id": report["id"]})
        ]
    statuses = [r["status"] for r in received]
    # whatever the subscriber joined in time for, it sees the statuses in order, ending READY (RUNNING again with
    # each progress push)
    changes = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    assert statuses[-1] == "READY" and changes == sorted(set(statuses), key=order.index), statuses
    assert received[-1]["downloadUrl"] and received[-1]["rowCount"] == 1


# ---------------------------------------------------------------- scheduled reports


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Path]:
    saved = (mailer._settings["smtp_url"], mailer._settings["outbox_dir"])
    folder = tmp_path / "mail"
    mailer.configure(None, folder)
    yield folder
    mailer.configure(saved[0], saved[1])  # type: ignore[arg-type]


def mails(folder: Path) -> list[Any]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(folder.glob("*.eml"))]


def test_periods_are_the_last_complete_day_week_and_month() -> None:
    wednesday = date(2026, 3, 4)
    assert schedules.last_complete_period(ReportFrequency.DAILY, wednesday) == (date(2026, 3, 3), date(2026, 3, 3))
    assert schedules.last_complete_period(ReportFrequency.WEEKLY, wednesday) == (date(2026, 2, 23), date(2026, 3, 1))
    assert schedules.last_complete_period(ReportFrequency.MONTHLY, wednesday) == (date(2026, 2, 1), date(2026, 2, 28))
    monday = date(2026, 3, 2)
    assert schedules.last_complete_period(ReportFrequency.WEEKLY, monday) == (date(2026, 2, 23), date(2026, 3, 1))
    assert schedules.last_complete_period(ReportFrequency.MONTHLY, date(2026, 1, 1)) == (
        date(2025, 12, 1),
        date(2025, 12, 31),
    )


async def test_a_daily_schedule_emails_each_days_report_link_once(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory, outbox: Path
) -> None:
    # given a daily SMS schedule created DAY1 (so its first period is DAY1 itself), to addresses of a domain the
    # partner allowed
    tenant = await factory.tenant(customers=1, name="BrightCall")
    customer = tenant.customers[0]
    await seed_usage(tenant)
    await ReportSettings.create(customer_id=customer.id, allowed_recipients=["@example.com"])
    customer_admin = await gql.login(tenant.admins[0].email)
    created = await gql(
        SCHEDULE_CREATE,
        {
            "i": {
                "customerId": gid("Customer", customer.id),
                "format": "SMS_CSV",
                "frequency": "DAILY",
                "recipients": ["Finance@Example.com", "finance@example.com", "ops@example.com"],
            }
        },
        customer_admin,
    )
    assert created["reportScheduleCreate"]["errors"] == []
    schedule = created["reportScheduleCreate"]["reportSchedule"]
    assert schedule["recipients"] == ["Finance@example.com", "ops@example.com"]
    schedule_pk = _pk(schedule["id"])
    await ReportSchedule.filter(id=schedule_pk).update(last_period_to=DAY1 - timedelta(days=1), next_run_at=None)
    # when the scheduler runs on DAY1 + 1, twice (two schedulers, one slot), and the jobs run
    assert await schedules.run_due(DAY1 + timedelta(days=1)) == 1
    assert await schedules.run_due(DAY1 + timedelta(days=1)) == 0
    await run_jobs(app)
    await run_jobs(app)  # a redelivered delivery sends nothing more
    # then one report for DAY1, READY, and one email with its link, white-label, to the recipients
    report = await UsageReport.get(schedule_id=schedule_pk)
    assert (report.status, report.period_from, report.period_to, report.row_count) == ("READY", DAY1, DAY1, 1)
    assert report.delivered_at is not None
    exports = await AuditEvent.filter(type=AuditEventType.EXPORT).values_list("action", "object_id", "actor_label")
    assert exports == [("usage_report.create", str(report.id), "report schedules")]
    messages = mails(outbox)
    assert len(messages) == 1
    message = messages[0]
    assert message["To"] == "Finance@example.com, ops@example.com"
    assert message["Subject"] == f"BrightCall: daily usage report {DAY1.isoformat()} to {DAY1.isoformat()}"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = next(word for word in text.split() if "/exports/" in word)
    response = await download(client, link)
    assert response.status_code == 200
    assert [row[0] + " " + row[9] + " " + row[11] for row in csv_rows(response.content)[1:]] == [
        f"{at(DAY1, 10).isoformat()} 3 0.03"
    ]
    # the emailed link lives as long as the report, not 24 hours
    assert int(link.rsplit("/", 1)[1].split(".")[1]) == int(report.expires_at.timestamp())  # type: ignore[union-attr]


async def test_schedules_need_a_manager_and_valid_recipients_and_can_be_deleted(gql: GQL, factory: Factory) -> None:
    tenant, other = await factory.tenant(customers=1), await factory.tenant(customers=1)
    customer = tenant.customers[0]
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    staff = await gql.login(tenant.owner.email)
    variables = {"customerId": gid("Customer", customer.id), "format": "PDF", "frequency": "WEEKLY"}

    async def attempt(token: str, recipients: list[str]) -> dict[str, Any]:
        data = await gql(SCHEDULE_CREATE, {"i": {**variables, "recipients": recipients}}, token)
        return data["reportScheduleCreate"]

    codes = lambda payload: [(e["field"], e["code"]) for e in payload["errors"]]  # noqa: E731
    a_user = tenant.admins[0].email
    assert codes(await attempt(await gql.login(member.email), [a_user])) == [(None, "FORBIDDEN")]
    assert codes(await attempt(await gql.login(other.owner.email), [a_user])) == [("customerId", "NOT_FOUND")]
    assert codes(await attempt(staff, [])) == [("recipients", "REQUIRED")]
    assert codes(await attempt(staff, ["not-an-email"])) == [("recipients", "INVALID")]
    made = await attempt(staff, [a_user])
    assert made["errors"] == [] and made["reportSchedule"]["frequency"] == "WEEKLY"
    schedule_id = made["reportSchedule"]["id"]
    refused = await gql(SCHEDULE_DELETE, {"i": {"reportScheduleId": schedule_id}}, await gql.login(other.owner.email))
    assert codes(refused["reportScheduleDelete"]) == [("reportScheduleId", "NOT_FOUND")]
    deleted = await gql(SCHEDULE_DELETE, {"i": {"reportScheduleId": schedule_id}}, staff)
    assert deleted["reportScheduleDelete"]["errors"] == []
    assert await ReportSchedule.all().count() == 0
    actions = await AuditEvent.filter(object_type="ReportSchedule").order_by("id").values_list("action", flat=True)
    assert actions == ["report_schedule.create", "report_schedule.delete"]


@pytest.mark.redis
async def test_a_worker_process_builds_the_report_and_another_process_pushes_it(tmp_path: Path) -> None:
    # given an API process on Redis (jobs queued there, not run in-process) and no worker yet
    from gql import gql as document

    from tests.conftest import REDIS_URL, ROOT
    from tests.servers import base_env
    from tests.test_subscriptions import Api, client, setup_tenant

    namespace = f"pd-reports-{uuid.uuid4().hex[:6]}"
    shared = {"REDIS_URL": REDIS_URL or "", "DRAMATIQ_NAMESPACE": namespace, "EXPORTS_DIR": str(tmp_path / "exports")}
    with fresh_database(tmp_path) as url:
        admin = create_admin(url)
        with live_server(url, tmp_path, **shared) as base:
            api = Api(base)
            tenant = await setup_tenant(api, *admin)
            customer = tenant["customers"][0]
            await _record_sms(api, tenant["staff"], customer)
            created = await api(
                CREATE,
                {"i": {"customerId": customer, "format": "SMS_CSV", "from": DAY1.isoformat(), "to": DAY2.isoformat()}},
                tenant["staff"],
            )
            report_id = created["usageExportCreate"]["usageReport"]["id"]
            async with client(api, tenant["staff"]) as session:
                stream = session.subscribe(document(SUBSCRIBE), variable_values={"id": report_id})
                first = await asyncio.wait_for(anext(stream), 10)
                assert first["usageReportUpdated"]["status"] == "QUEUED"  # nobody builds it yet
                # when a `dramatiq` worker process starts
                with subprocess_worker(ROOT, base_env(DATABASE_URL=url, **shared)):
                    received = [first["usageReportUpdated"]]
                    received += [u["usageReportUpdated"] async for u in _within(stream, 30)]
            # then its changes reached the subscriber of the API process, and the API serves its file
            assert [r["status"] for r in received][-1] == "READY", received
            async with httpx.AsyncClient() as http:
                response = await http.get(received[-1]["downloadUrl"].replace("http://127.0.0.1:8000", base))
            assert response.status_code == 200
            assert csv_rows(response.content)[1][9] == "4"


async def _within(stream: Any, seconds: float) -> AsyncIterator[Any]:
    async with asyncio.timeout(seconds):
        async for item in stream:
            yield item


@contextlib.contextmanager
def subprocess_worker(root: Path, env: dict[str, str]) -> Iterator[None]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "server.worker", "--processes", "1", "--threads", "2"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        # the master relays SIGTERM to its worker processes; signalling the whole group too gives each worker a
        # second one, on which dramatiq exits without stopping its consumer threads (and hangs until SIGKILL)
        os.kill(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
