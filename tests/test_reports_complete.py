"""Issue 16 (seed 001): self-healed contacts (recorded over GraphQL and HTTP, idempotent, wrong numbers left out,
exported with chosen columns, scheduled at a delivery time), call details in usage, the usage dashboard and filters,
Unicode PDFs, the system log's search, detail and export, report progress over a real websocket, and isolation of
every new query."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.accounts.models import Role
from domain.audit.models import AuditEvent, AuditEventType
from domain.campaigns.models import Campaign
from domain.features.models import FeatureToggles
from domain.reports import schedules
from domain.reports.models import HealedContact, ReportFormat, ReportSchedule, ReportSettings, UsageReport
from domain.usage import services as usage
from domain.usage.commands import UsageEventIn
from domain.viewer import Viewer
from tests.conftest import GQL, Factory, gid
from tests.servers import create_admin, fresh_database, live_server
from tests.test_reports import (  # noqa: F401  (fixtures)
    DAY1,
    build_one,
    download,
    empty_queues,
    exports_dir,
    mails,
    outbox,
    pdf_text,
    run_jobs,
)

NOW = datetime.now(UTC).replace(microsecond=0)
RECORD = """mutation($i: ContactsHealedRecordInput!) { contactsHealedRecord(input: $i) {
  accepted duplicates rejected { index code field } errors { code } } }"""
HEALED = """query($id: ID!, $f: ContactsHealedFilter) { contactsHealed(customerId: $id, filter: $f) {
  totalCount nodes { externalId oldNumber newNumber callId wrongNumber confirmedAt } } }"""
EXPORT = """mutation($i: ContactsHealedExportCreateInput!) { contactsHealedExportCreate(input: $i) {
  usageReport { id status format } errors { field code } } }"""
REPORT_SET = """mutation($i: HealedContactsReportSetInput!) { healedContactsReportSet(input: $i) {
  reportSchedule { id enabled frequency deliveryTime timezone columns nextRunAt lastRunAt lastStatus }
  errors { field code message } } }"""


def contact(customer_id: int, external_id: str, new: str, **extra: Any) -> dict[str, Any]:
    return {
        "customerId": gid("Customer", customer_id),
        "externalId": external_id,
        "newNumber": new,
        "oldNumber": "+15550000000",
        "confirmedAt": (NOW - timedelta(hours=1)).isoformat(),
        "enrichedAt": (NOW - timedelta(days=1)).isoformat(),
        "callId": f"call-{external_id}",
        **extra,
    }


def rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


async def _node(gql: GQL, token: str, customer_id: int, report_id: str) -> dict[str, Any]:
    query = (
        """query($id: ID!) { usageReports(customerId: $id) { nodes { id status rowCount rowsDone downloadUrl } } }"""
    )
    nodes = (await gql(query, {"id": gid("Customer", customer_id)}, token))["usageReports"]["nodes"]
    return next(n for n in nodes if n["id"] == report_id)


# ---------------------------------------------------------------- self-healed contacts


async def test_healed_contacts_are_idempotent_and_wrong_numbers_leave_the_reports(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory
) -> None:
    # given a partner admin and a customer
    tenant = await factory.tenant(customers=1)
    cid = tenant.customers[0].id
    staff = await gql.login(tenant.owner.email)
    batch = [contact(cid, "crm-1", "+15551110001"), contact(cid, "crm-2", "+15551110002"), {"externalId": "x"}]
    # when the same contacts arrive over GraphQL and again over HTTP
    first = (await gql(RECORD, {"i": {"events": batch[:2]}}, staff))["contactsHealedRecord"]
    response = await client.post("/v1/contacts/healed", json=batch, headers={"authorization": f"Bearer {staff}"})
    # then they are recorded once; a contact without its customer is refused alone
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (2, 0, [])
    assert response.status_code == 200, response.text
    assert response.json() == {
        "accepted": 0,
        "duplicates": 2,
        "rejected": [{"index": 2, "code": "NOT_FOUND", "message": "Customer not found.", "field": "customerId"}],
    }
    assert await HealedContact.all().count() == 2
    # when one number is later flagged as wrong (twice: the second changes nothing)
    flag = [contact(cid, "crm-2", "+15551110002", wrongNumber=True)]
    flagged = (await gql(RECORD, {"i": {"events": flag}}, staff))["contactsHealedRecord"]
    again = (await gql(RECORD, {"i": {"events": flag}}, staff))["contactsHealedRecord"]
    assert (flagged["accepted"], again["accepted"], again["duplicates"]) == (1, 0, 1)
    # then it leaves the list and the export
    listed = (await gql(HEALED, {"id": gid("Customer", cid)}, staff))["contactsHealed"]
    assert [n["externalId"] for n in listed["nodes"]] == ["crm-1"] and listed["totalCount"] == 1
    created = (
        await gql(EXPORT, {"i": {"customerId": gid("Customer", cid), "columns": ["NEW_NUMBER", "EXTERNAL_ID"]}}, staff)
    )["contactsHealedExportCreate"]
    assert created["errors"] == [] and created["usageReport"]["format"] == "HEALED_CONTACTS_CSV"
    await run_jobs(app)
    node = await _node(gql, staff, cid, created["usageReport"]["id"])
    body = (await download(client, node["downloadUrl"])).content
    # and the CSV has exactly the chosen columns, in the chosen order
    assert rows(body) == [["new_number", "external_id"], ["+15551110001", "crm-1"]]
    # each batch is an INTEGRATION event (a sync from another system), the export an EXPORT event
    types = await AuditEvent.filter(action="contacts_healed.sync").values_list("type", flat=True)
    assert set(types) == {AuditEventType.INTEGRATION} and len(types) == 4
    assert await AuditEvent.filter(type=AuditEventType.EXPORT, action="healed_contacts_report.create").count() == 1


async def test_healed_export_neutralises_formula_cells_and_checks_columns(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory
) -> None:
    tenant = await factory.tenant(customers=1)
    cid = tenant.customers[0].id
    staff = await gql.login(tenant.owner.email)
    await gql(RECORD, {"i": {"events": [contact(cid, '=HYPERLINK("http://x")', "+15551110003")]}}, staff)
    for columns, code in (([], "REQUIRED"), (["CALL_ID", "CALL_ID"], "INVALID")):
        refused = (await gql(EXPORT, {"i": {"customerId": gid("Customer", cid), "columns": columns}}, staff))[
            "contactsHealedExportCreate"
        ]
        assert [(e["field"], e["code"]) for e in refused["errors"]] == [("columns", code)]
    all_columns = ["EXTERNAL_ID", "OLD_NUMBER", "NEW_NUMBER", "ENRICHED_AT", "CONFIRMED_AT", "CALL_ID"]
    created = (await gql(EXPORT, {"i": {"customerId": gid("Customer", cid), "columns": all_columns}}, staff))[
        "contactsHealedExportCreate"
    ]
    await run_jobs(app)
    node = await _node(gql, staff, cid, created["usageReport"]["id"])
    header, row = rows((await download(client, node["downloadUrl"])).content)
    assert header == ["external_id", "old_number", "new_number", "enriched_at", "confirmed_at", "call_id"]
    # the formula is quoted; the E.164 numbers stay exact
    assert row[0] == '\'=HYPERLINK("http://x")' and row[1:3] == ["+15550000000", "+15551110003"]
    assert row[5] == 'call-=HYPERLINK("http://x")'  # no formula: it does not begin with one


async def test_the_scheduled_healed_report_fires_once_per_period_at_the_delivery_time(
    app: Any,
    gql: GQL,
    factory: Factory,
    outbox: Path,  # noqa: F811  (the fixture)
) -> None:
    # given a daily report at 08:30 Tokyo time (23:30 UTC the day before)
    tenant = await factory.tenant(customers=1, name="東京ボイス")
    cid = tenant.customers[0].id
    await ReportSettings.create(customer_id=cid, allowed_recipients=["@example.com"])
    staff = await gql.login(tenant.owner.email)
    made = (
        await gql(
            REPORT_SET,
            {
                "i": {
                    "customerId": gid("Customer", cid),
                    "enabled": True,
                    "frequency": "DAILY",
                    "deliveryTime": "08:30",
                    "timezone": "Asia/Tokyo",
                    "recipients": ["crm@example.com"],
                    "columns": ["EXTERNAL_ID", "NEW_NUMBER"],
                }
            },
            staff,
        )
    )["healedContactsReportSet"]
    assert made["errors"] == [], made
    schedule = await ReportSchedule.get(customer_id=cid)
    # a frozen clock: the schedule was set up on Tokyo day D, and contacts were confirmed on D
    day = date(2026, 3, 10)
    schedule.last_period_to, schedule.next_run_at = day - timedelta(days=1), None
    await schedule.save()
    await HealedContact.create(
        customer_id=cid,
        partner_id=tenant.partner.id,
        external_id="crm-9",
        new_number="+81355550000",
        confirmed_at=datetime(2026, 3, 10, 1, 0, tzinfo=UTC),  # 10:00 Tokyo on D
        created_at=NOW,
    )
    before = datetime(2026, 3, 10, 23, 29, tzinfo=UTC)  # 08:29 Tokyo on D+1
    at_time = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)  # 08:30 Tokyo on D+1
    # when the scheduler runs before the delivery time, at it, and again later the same period
    assert await schedules.run_due(before) == 0
    assert await schedules.run_due(at_time) == 1
    assert await schedules.run_due(at_time + timedelta(hours=3)) == 0
    await run_jobs(app)
    # then one report of Tokyo day D, emailed once, and the next run is 08:30 Tokyo the next day
    report = await UsageReport.get(schedule_id=schedule.id)
    assert (report.period_from, report.period_to, report.timezone, report.row_count) == (day, day, "Asia/Tokyo", 1)
    schedule = await ReportSchedule.get(id=schedule.id)
    assert schedule.next_run_at == datetime(2026, 3, 11, 23, 30, tzinfo=UTC)
    assert (schedule.last_status, schedule.last_report_id) == ("READY", report.id)
    messages = mails(outbox)
    assert len(messages) == 1 and "self-healed contacts report" in messages[0]["Subject"]
    assert messages[0]["Subject"].startswith("東京ボイス")


# ---------------------------------------------------------------- usage: details, filters, dashboard, prices


async def test_call_details_filters_dashboard_and_hidden_prices(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory
) -> None:
    tenant = await factory.tenant(customers=2)
    cid, other = tenant.customers[0].id, tenant.customers[1].id
    campaign = await Campaign.create(customer_id=cid, partner_id=tenant.partner.id, name="Spring =drive")
    foreign = await Campaign.create(customer_id=other, partner_id=tenant.partner.id, name="Theirs")
    staff = await gql.login(tenant.owner.email)
    occurred = (NOW - timedelta(hours=2)).isoformat()
    events = [
        {
            "idempotencyKey": "v1",
            "customerId": gid("Customer", cid),
            "unitType": "VOICE_MINUTES",
            "quantity": "3",
            "occurredAt": occurred,
            "caseType": "Intake",
            "direction": "OUTBOUND",
            "fromNumber": "+41445551234",
            "toNumber": "+15551234567",
            "durationSeconds": 180,
            "campaignId": gid("Campaign", campaign.id),
            "callId": "c-1",
        },
        {
            "idempotencyKey": "s1",
            "customerId": gid("Customer", cid),
            "unitType": "SMS_SEGMENTS",
            "quantity": "2",
            "occurredAt": occurred,
            "caseType": "Billing",
            "segments": 2,
        },
        {
            "idempotencyKey": "e1",
            "customerId": gid("Customer", cid),
            "unitType": "EMAILS",
            "quantity": "5",
            "occurredAt": occurred,
        },
        # refused alone: another customer's campaign, a bad direction, a fractional duration
        {
            "idempotencyKey": "x1",
            "customerId": gid("Customer", cid),
            "unitType": "VOICE_MINUTES",
            "quantity": "1",
            "occurredAt": occurred,
            "campaignId": gid("Campaign", foreign.id),
        },
        {
            "idempotencyKey": "x2",
            "customerId": gid("Customer", cid),
            "unitType": "VOICE_MINUTES",
            "quantity": "1",
            "occurredAt": occurred,
            "direction": "SIDEWAYS",
        },
        {
            "idempotencyKey": "x3",
            "customerId": gid("Customer", cid),
            "unitType": "VOICE_MINUTES",
            "quantity": "1",
            "occurredAt": occurred,
            "durationSeconds": 1.5,
        },
    ]
    response = await client.post("/v1/usage/events", json=events, headers={"authorization": f"Bearer {staff}"})
    assert response.json()["accepted"] == 3, response.text
    assert [(r["index"], r["field"]) for r in response.json()["rejected"]] == [
        (3, "campaignId"),
        (4, "direction"),
        (5, "durationSeconds"),
    ]
    # filters by case type and campaign, over the log and the summary (rollups)
    log = """query($id: ID!, $f: UsageEventFilter) { usageEvents(customerId: $id, filter: $f) {
      nodes { unitType direction fromNumber durationSeconds callId campaign { name } } } }"""
    by_campaign = await gql(log, {"id": gid("Customer", cid), "f": {"campaignId": gid("Campaign", campaign.id)}}, staff)
    assert by_campaign["usageEvents"]["nodes"] == [
        {
            "unitType": "VOICE_MINUTES",
            "direction": "OUTBOUND",
            "fromNumber": "+41445551234",
            "durationSeconds": 180,
            "callId": "c-1",
            "campaign": {"name": "Spring =drive"},
        }
    ]
    by_case = await gql(log, {"id": gid("Customer", cid), "f": {"caseType": "Billing"}}, staff)
    assert [n["unitType"] for n in by_case["usageEvents"]["nodes"]] == ["SMS_SEGMENTS"]
    summary = """query($id: ID!, $from: Date!, $to: Date!, $case: String, $campaign: ID) {
      usageSummary(customerId: $id, from: $from, to: $to, caseType: $case, campaignId: $campaign) {
        unitType quantity cost { amount } } }"""
    days = {
        "id": gid("Customer", cid),
        "from": (NOW - timedelta(days=1)).date().isoformat(),
        "to": NOW.date().isoformat(),
    }
    assert (await gql(summary, {**days, "case": "Intake"}, staff))["usageSummary"] == [
        {"unitType": "VOICE_MINUTES", "quantity": "3.000000", "cost": {"amount": "0.18"}}
    ]
    campaign_only = await gql(summary, {**days, "campaign": gid("Campaign", campaign.id)}, staff)
    assert [r["unitType"] for r in campaign_only["usageSummary"]] == ["VOICE_MINUTES"]
    # the dashboard: voice minutes, SMS segments, emails, storage, with cost
    board_query = """query($id: ID!, $from: Date!, $to: Date!) { usageDashboard(customerId: $id, from: $from, to: $to) {
      voiceMinutes { quantity cost { amount } } smsSegments { quantity } emails { quantity events }
      storageMb { quantity } totalCost { amount } } }"""
    board = (await gql(board_query, days, staff))["usageDashboard"]
    assert board["voiceMinutes"] == {"quantity": "3.000000", "cost": {"amount": "0.18"}}
    assert (board["smsSegments"]["quantity"], board["emails"], board["totalCost"]["amount"]) == (
        "2.000000",
        {"quantity": "5.000000", "events": 1},
        "0.20",
    )
    # with pricing hidden: the customer's own users see no cost, partner staff still do, and the CSV has none
    await FeatureToggles.create(customer_id=cid, show_pricing=False)
    customer_admin = await gql.login(tenant.admins[0].email)
    hidden = (await gql(board_query, days, customer_admin))["usageDashboard"]
    assert hidden["voiceMinutes"]["cost"] is None and hidden["totalCost"] is None
    assert (await gql(board_query, days, staff))["usageDashboard"]["totalCost"] is not None
    # (a report shows prices as its requester may see them: the customer's admin asks for this one)
    created = await gql(
        """mutation($i: UsageExportCreateInput!) { usageExportCreate(input: $i) { usageReport { id } errors { code } } }""",
        {"i": {"customerId": gid("Customer", cid), "format": "VOICE_CSV", "from": days["from"], "to": days["to"]}},
        customer_admin,
    )
    await run_jobs(app)
    node = await _node(gql, customer_admin, cid, created["usageExportCreate"]["usageReport"]["id"])
    header, row = rows((await download(client, node["downloadUrl"])).content)
    assert "cost" not in header and "unit_price" not in header and "currency" not in header
    assert dict(zip(header, row, strict=True)) | {"occurred_at": ""} == {
        "occurred_at": "",
        "call_id": "c-1",
        "direction": "OUTBOUND",
        "from_number": "+41445551234",
        "to_number": "+15551234567",
        "duration_seconds": "180",
        "campaign_id": gid("Campaign", campaign.id),
        "campaign": "Spring =drive",
        "case_type": "Intake",
        "quantity": "3",
        "credits": "0",
        "funding": "INVOICE",
        "paid": "false",
    }


# ---------------------------------------------------------------- PDFs in any script


@pytest.mark.parametrize("name", ["東京ボイス", "صوت القاهرة", "Zürich Voz"])
async def test_pdfs_print_partner_names_in_any_script(
    app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory, name: str
) -> None:
    tenant = await factory.tenant(customers=1, name=name)
    cid = tenant.customers[0].id
    staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=tenant.partner.id, label="tests")
    occurred = datetime.combine(DAY1, datetime.min.time(), UTC) + timedelta(hours=9)  # inside build_one's period
    result = await usage.record_usage(
        staff,
        [
            UsageEventIn("p1", cid, "VOICE_MINUTES", "2", occurred, "相談"),
            UsageEventIn("p2", cid, "SMS_SEGMENTS", "1", occurred, "استشارة"),
        ],
    )
    assert result.accepted == 2
    token = await gql.login(tenant.owner.email)
    node = await build_one(app, gql, token, cid, "PDF")
    _, text = pdf_text((await download(client, node["downloadUrl"])).content)
    assert text.startswith(name), text[:80]
    assert "Totals by unit type" in text and "Voice minutes 1 2 0.12" in text
    zipped = await build_one(app, gql, token, cid, "PDF_BY_CASE_TYPE")
    import zipfile

    archive = zipfile.ZipFile(io.BytesIO((await download(client, zipped["downloadUrl"])).content))
    texts = [pdf_text(archive.read(n))[1] for n in archive.namelist()]
    assert any("case type: 相談" in t for t in texts) and any("استشارة" in t for t in texts)


# ---------------------------------------------------------------- the system log


async def test_audit_search_detail_and_export(app: Any, gql: GQL, client: httpx.AsyncClient, factory: Factory) -> None:
    tenant, other = await factory.tenant(customers=1), await factory.tenant(customers=1)
    cid = tenant.customers[0].id
    staff = await gql.login(tenant.owner.email)
    outsider = await gql.login(other.owner.email)
    made = await gql(
        """mutation($i: ReportScheduleCreateInput!) { reportScheduleCreate(input: $i) { reportSchedule { id } } }""",
        {
            "i": {
                "customerId": gid("Customer", cid),
                "format": "PDF",
                "frequency": "WEEKLY",
                "recipients": [tenant.admins[0].email],
                "deliveryTime": "07:00",
                "timezone": "Europe/Zurich",
            }
        },
        staff,
    )
    schedule_id = made["reportScheduleCreate"]["reportSchedule"]["id"]
    updated = await gql(
        """mutation($i: ReportScheduleUpdateInput!) { reportScheduleUpdate(input: $i) {
          reportSchedule { frequency deliveryTime nextRunAt } errors { code } } }""",
        {"i": {"reportScheduleId": schedule_id, "frequency": "DAILY", "deliveryTime": "06:15"}},
        staff,
    )
    assert updated["reportScheduleUpdate"]["reportSchedule"]["deliveryTime"] == "06:15"
    search = (
        """query($f: AuditEventFilter) { auditEvents(filter: $f) { totalCount nodes { id action objectId type } } }"""
    )
    # search over the action, and by the object's global id
    found = (await gql(search, {"f": {"search": "SCHEDULE.upd"}}, staff))["auditEvents"]
    assert [n["action"] for n in found["nodes"]] == ["report_schedule.update"]
    assert found["nodes"][0]["objectId"] == schedule_id
    by_object = (await gql(search, {"f": {"search": schedule_id}}, staff))["auditEvents"]
    assert [n["action"] for n in by_object["nodes"]] == ["report_schedule.update", "report_schedule.create"]
    # the detail: before/after, actor, IP, user agent, request id
    detail = """query($id: ID!) { auditEvent(id: $id) { action requestId ip userAgent actorLabel
      changes { field before after } } }"""
    event = (await gql(detail, {"id": found["nodes"][0]["id"]}, staff))["auditEvent"]
    assert {"field": "frequency", "before": "WEEKLY", "after": "DAILY"} in event["changes"]
    assert event["ip"] == "203.0.113.7" and event["requestId"] and event["actorLabel"] == tenant.owner.email
    assert (await gql(detail, {"id": found["nodes"][0]["id"]}, outsider))["auditEvent"] is None
    assert (await gql(search, {"f": {"search": "report_schedule"}}, outsider))["auditEvents"]["totalCount"] == 0
    # the export: the same filter, through the report pipeline, itself an EXPORT event
    export = """mutation($i: AuditExportCreateInput!) { auditExportCreate(input: $i) {
      usageReport { id format } errors { field code } } }"""
    created = (await gql(export, {"i": {"filter": {"search": "report_schedule"}, "format": "CSV"}}, staff))[
        "auditExportCreate"
    ]
    assert created["errors"] == [] and created["usageReport"]["format"] == "AUDIT_CSV"
    await run_jobs(app)
    listed = """query { auditExports { totalCount nodes { id status downloadUrl rowCount } } }"""
    (node,) = (await gql(listed, None, staff))["auditExports"]["nodes"]
    assert node["status"] == "READY" and node["rowCount"] == 2
    assert (await gql(listed, None, outsider))["auditExports"]["totalCount"] == 0
    table = rows((await download(client, node["downloadUrl"])).content)
    assert table[0][:3] == ["created_at", "type", "action"]
    assert [r[2] for r in table[1:]] == ["report_schedule.update", "report_schedule.create"]
    exported = await AuditEvent.filter(action="audit_log.export").values_list("type", "details")
    assert exported == [(AuditEventType.EXPORT, {"search": "report_schedule"})]
    # a customer member may not export the log; a customer admin exports only its customer's
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=tenant.customers[0])
    refused = (await gql(export, {"i": {}}, await gql.login(member.email)))["auditExportCreate"]
    assert [e["code"] for e in refused["errors"]] == ["FORBIDDEN"]


# ---------------------------------------------------------------- isolation


async def test_new_queries_and_exports_stay_within_the_tenant(gql: GQL, factory: Factory) -> None:
    mine, theirs = await factory.tenant(customers=1), await factory.tenant(customers=1)
    cid = mine.customers[0].id
    staff = await gql.login(mine.owner.email)
    outsider = await gql.login(theirs.owner.email)
    await gql(RECORD, {"i": {"events": [contact(cid, "crm-1", "+15551110001")]}}, staff)
    # recording for another tenant's customer is refused alone
    theirs_record = await gql(RECORD, {"i": {"events": [contact(cid, "crm-2", "+15551110002")]}}, outsider)
    assert theirs_record["contactsHealedRecord"]["rejected"] == [
        {"index": 0, "code": "NOT_FOUND", "field": "customerId"}
    ]
    days = {"from": NOW.date().isoformat(), "to": NOW.date().isoformat()}
    for query, variables in (
        (HEALED, {"id": gid("Customer", cid)}),
        ("""query($id: ID!) { healedContactsReport(customerId: $id) { id } }""", {"id": gid("Customer", cid)}),
        (
            """query($id: ID!, $from: Date!, $to: Date!) { usageDashboard(customerId: $id, from: $from, to: $to) {
              totalCount: emails { events } } }""",
            {"id": gid("Customer", cid), **days},
        ),
    ):
        response = await gql.raw(query, variables, outsider)
        assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND", response.text
    healed_node = (
        await gql(
            """query($id: ID!) { contactsHealed(customerId: $id) { nodes { id } } }""",
            {"id": gid("Customer", cid)},
            staff,
        )
    )["contactsHealed"]["nodes"][0]["id"]
    assert (await gql("query($id: ID!) { node(id: $id) { id } }", {"id": healed_node}, outsider))["node"] is None
    for mutation, variables in (
        (EXPORT, {"i": {"customerId": gid("Customer", cid), "columns": ["NEW_NUMBER"]}}),
        (
            REPORT_SET,
            {
                "i": {
                    "customerId": gid("Customer", cid),
                    "enabled": True,
                    "frequency": "DAILY",
                    "deliveryTime": "08:00",
                    "timezone": "UTC",
                    "recipients": [mine.admins[0].email],
                    "columns": ["NEW_NUMBER"],
                }
            },
        ),
        (
            """mutation($i: AuditExportCreateInput!) { auditExportCreate(input: $i) { errors { field code } } }""",
            {"i": {"filter": {"customerId": gid("Customer", cid)}}},
        ),
    ):
        data = await gql(mutation, variables, outsider)
        (payload,) = data.values()
        assert [e["code"] for e in payload["errors"]] == ["NOT_FOUND"], payload
    assert await UsageReport.filter(format=ReportFormat.AUDIT_CSV).count() == 0
    assert await ReportSchedule.all().count() == 0


# ---------------------------------------------------------------- progress over a real websocket


PROGRESS = """subscription($id: ID!) { usageReportUpdated(id: $id) { id status rowCount rowsDone } }"""


async def test_progress_is_pushed_over_a_websocket_while_running(tmp_path: Path) -> None:
    from gql import gql as document

    from tests.test_reports import _e2e_sql, _pk
    from tests.test_subscriptions import Api, client, setup_tenant

    # given a live server pushing progress after every row, and a customer with 800 SMS events (a build of a few
    # seconds at one row per query)
    env = {"EXPORTS_DIR": str(tmp_path / "exports"), "EXPORT_PROGRESS_SECONDS": "0", "EXPORT_CHUNK_ROWS": "1"}
    with fresh_database(tmp_path) as url:
        admin = create_admin(url)
        with live_server(url, tmp_path, **env) as base:
            api = Api(base)
            tenant = await setup_tenant(api, *admin)
            customer = tenant["customers"][0]
            occurred = (NOW - timedelta(hours=1)).isoformat()
            events = [
                {
                    "idempotencyKey": f"m{i}",
                    "customerId": customer,
                    "unitType": "SMS_SEGMENTS",
                    "quantity": "1",
                    "occurredAt": occurred,
                }
                for i in range(800)
            ]
            recorded = await api(
                "mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted } }",
                {"i": {"events": events}},
                tenant["staff"],
            )
            assert recorded["usageRecord"]["accepted"] == 800
            # a QUEUED report whose build is requested only once the subscriber listens
            report_id = _e2e_sql(
                url,
                "INSERT INTO usage_report (customer_id, partner_id, format, period_from, period_to, status, attempts, "
                "storage_key, file_name, content_type, error, created_at) "
                "VALUES ($1, $2, 'SMS_CSV', $3, $4, 'QUEUED', 0, '', '', '', '', $5) RETURNING id",
                _pk(customer),
                _pk(tenant["partner"]),
                NOW.date() - timedelta(days=1),
                NOW.date(),
                NOW,
            )
            received: list[dict[str, Any]] = []
            async with client(api, tenant["staff"]) as session:
                stream = session.subscribe(document(PROGRESS), variable_values={"id": gid("UsageReport", report_id)})
                received.append((await asyncio.wait_for(anext(stream), 10))["usageReportUpdated"])
                _e2e_sql(
                    url,
                    "INSERT INTO outbox_event (topic, customer_id, partner_id, payload, created_at) "
                    "VALUES ('usage_report.requested', $1, $2, $3::jsonb, $4) RETURNING id",
                    _pk(customer),
                    _pk(tenant["partner"]),
                    json.dumps({"report_id": report_id}),
                    NOW,
                )

                async def rest() -> None:
                    async for update in stream:
                        received.append(update["usageReportUpdated"])

                await asyncio.wait_for(rest(), 30)
    # then the subscriber saw the rows counted and written while RUNNING (bursts coalesce into the latest count),
    # then READY with all 800
    running = [r for r in received if r["status"] == "RUNNING"]
    done = [r["rowsDone"] for r in running]
    assert running and all(r["rowCount"] == 800 for r in running[1:]), received
    assert done == sorted(done) and len([n for n in done if 0 < n < 800]) >= 2, received
    assert (received[-1]["status"], received[-1]["rowsDone"], received[-1]["rowCount"]) == ("READY", 800, 800)
