"""The export queue under pressure (issue 11): a build whose worker died is built again (by the next delivery or the
scheduler's sweep) and a scheduled report still goes out once; one tenant's exports cannot hold up another's;
per-customer quotas on queued exports and schedules; scheduled reports go only to allowed recipients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
from tortoise import fields

from domain import config as domain_config
from domain.accounts.models import Role
from domain.events.models import OutboxEvent
from domain.reports import schedules
from domain.reports import services as reports
from domain.reports.models import ReportSchedule, ReportStatus, UsageReport
from domain.reports.storage import LocalStorage, configure_storage
from jobs.broker import EmbeddedConsumer
from jobs.registry import schedule
from server.locks import Leases
from server.relay import Relay
from server.scheduler import Scheduler
from tests.conftest import GQL, Factory, gid
from tests.test_reports import (  # noqa: F401 (fixtures)
    SCHEDULE_CREATE,
    SCHEDULE_DELETE,
    _pk,
    create,
    download,
    empty_queues,
    exports_dir,
    mails,
    outbox,
    seed_usage,
)

SETTINGS = """query($id: ID!) { reportSettings(customerId: $id) { allowedRecipients } }"""
SETTINGS_UPDATE = """mutation($i: CustomerReportSettingsUpdateInput!) { customerReportSettingsUpdate(input: $i) {
  reportSettings { allowedRecipients } errors { field code message } } }"""
PREFS = """mutation($i: BillingPreferencesUpdateInput!) { billingPreferencesUpdate(input: $i) {
  errors { field code message } } }"""
TODAY = datetime.now(UTC).date()


@pytest.fixture
def limits() -> Iterator[Callable[..., None]]:
    """Sets domain limits for one test (as the settings would at start-up)."""
    with ExitStack() as stack:

        def set_limits(**values: Any) -> None:
            stack.enter_context(domain_config.overridden(**values))

        yield set_limits


async def run_until_idle(app: Any) -> None:
    """One worker taking jobs in the order they reach the broker, with the relay handing on what each job emitted,
    until nothing is left."""
    relay, consumer = Relay(Leases(None)), EmbeddedConsumer(app.state.broker)
    while await relay.drain_once() + await consumer.drain():
        pass


async def time_passes(delta: timedelta) -> None:
    """As if `delta` went by: every report's timestamps move back (builds read the real clock)."""
    stamps = [name for name, f in UsageReport._meta.fields_map.items() if isinstance(f, fields.DatetimeField)]
    for row in await UsageReport.all().values("id", *stamps):
        moved = {name: row[name] - delta for name in stamps if row[name] is not None}
        await UsageReport.filter(id=row["id"]).update(**moved)


class StalledStorage(LocalStorage):
    """A store whose writes never finish: the worker is killed while it builds."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = asyncio.Event()

    async def put(self, key: str, source: Path) -> int:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def worker_dies_while_building(app: Any, exports_dir: Path, report_id: int) -> None:  # noqa: F811
    """The relay hands the build to a worker, which takes the message and is SIGKILLed mid-build: the message is
    gone (taken off the queue) and the report stays RUNNING."""
    stalled = StalledStorage(exports_dir)
    configure_storage(stalled)
    await Relay(Leases(None)).drain_once()
    worker = asyncio.create_task(EmbeddedConsumer(app.state.broker).drain())
    await asyncio.wait_for(stalled.entered.wait(), 30)
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    configure_storage(None)
    assert (await UsageReport.get(id=report_id)).status == ReportStatus.RUNNING
    assert all(queue.empty() for queue in app.state.broker.queues.values())


def broker_report_ids(app: Any) -> list[int]:
    """Report ids of the build messages waiting in the broker, without taking them."""
    return [
        dramatiq.Message.decode(raw).args[0]
        for queue in app.state.broker.queues.values()
        for raw in list(queue.queue)
        if dramatiq.Message.decode(raw).actor_name == "build_usage_report"
    ]


# ---------------------------------------------------------------- a worker dies mid-build


async def test_a_build_whose_worker_died_is_built_again_by_the_next_delivery(
    app: Any,
    gql: GQL,
    factory: Factory,
    exports_dir: Path,  # noqa: F811
) -> None:
    # given a requested SMS export whose worker is killed mid-build
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    await seed_usage(tenant)
    staff = await gql.login(tenant.owner.email)
    report_id = _pk((await create(gql, staff, customer.id, "SMS_CSV"))["usageReport"]["id"])
    await worker_dies_while_building(app, exports_dir, report_id)
    # when a few minutes later (well under the old 30-minute staleness) the broker delivers the message again
    await time_passes(timedelta(minutes=5))
    from jobs.exports import build_usage_report

    build_usage_report.send(report_id)
    await EmbeddedConsumer(app.state.broker).drain()
    # then the report is built by this second attempt, not acknowledged as "someone is on it"
    report = await UsageReport.get(id=report_id)
    assert (report.status, report.attempts, report.row_count) == (ReportStatus.READY, 2, 2)
    statuses = [
        p["status"]
        for p in await OutboxEvent.filter(topic="usage_report.updated").order_by("id").values_list("payload", flat=True)
    ]
    # each attempt: RUNNING, then RUNNING again with its rows counted (a progress push)
    assert (
        [s for i, s in enumerate(statuses) if i == 0 or s != "RUNNING" or statuses[i - 1] != "RUNNING"]
        in (["RUNNING", "READY"],)
        and statuses.count("READY") == 1
        and statuses[-1] == "READY"
    )


async def test_a_scheduled_report_whose_worker_died_is_swept_rebuilt_and_emailed_once(
    app: Any,
    gql: GQL,
    client: httpx.AsyncClient,
    factory: Factory,
    exports_dir: Path,  # noqa: F811
    outbox: Path,  # noqa: F811
) -> None:
    # given a daily schedule whose report for yesterday was requested, and whose worker died building it (its
    # message was acknowledged: nothing will deliver it again)
    tenant = await factory.tenant(customers=1, name="BrightCall")
    customer, admin = tenant.customers[0], tenant.admins[0]
    token = await gql.login(admin.email)
    made = await gql(
        SCHEDULE_CREATE,
        {
            "i": {
                "customerId": gid("Customer", customer.id),
                "format": "SMS_CSV",
                "frequency": "DAILY",
                "recipients": [admin.email],
            }
        },
        token,
    )
    assert made["reportScheduleCreate"]["errors"] == [], made
    schedule_id = _pk(made["reportScheduleCreate"]["reportSchedule"]["id"])
    await ReportSchedule.filter(id=schedule_id).update(last_period_to=TODAY - timedelta(days=2), next_run_at=None)
    assert await schedules.run_due() == 1
    report_id = (await UsageReport.get(schedule_id=schedule_id)).id
    await worker_dies_while_building(app, exports_dir, report_id)
    # when minutes pass and the scheduler ticks (its export jobs only), and the jobs run
    export_jobs = [job for job in schedule() if job[0] in ("report_schedules", "sweep_export_queue")]
    await time_passes(timedelta(minutes=5))
    await Scheduler(Leases(None), jobs=export_jobs).tick_once()
    await run_until_idle(app)
    # then the report is built again and its link emailed once
    report = await UsageReport.get(id=report_id)
    assert (report.status, report.attempts, report.period_to) == (ReportStatus.READY, 2, TODAY - timedelta(days=1))
    messages = mails(outbox)
    assert [m["To"] for m in messages] == [admin.email]
    text = messages[0].get_body(("plain",)).get_content()
    link = next(word for word in text.split() if "/exports/" in word)
    assert (await download(client, link)).status_code == 200
    # and later ticks send nothing more for that period
    await time_passes(timedelta(minutes=5))
    await Scheduler(Leases(None), jobs=export_jobs).tick_once()
    await run_until_idle(app)
    assert len(mails(outbox)) == 1
    assert await UsageReport.filter(schedule_id=schedule_id).count() == 1
    assert (await UsageReport.get(id=report_id)).attempts == 2


async def test_a_long_build_renews_its_lease_so_a_redelivery_leaves_it_alone(
    app: Any,
    gql: GQL,
    factory: Factory,
    exports_dir: Path,  # noqa: F811
    limits: Callable[..., None],
) -> None:
    # given a build that takes longer than its lease (its store is slow to answer)
    limits(export_lease_seconds=0.3)
    tenant = await factory.tenant(customers=1)
    staff = await gql.login(tenant.owner.email)
    report_id = _pk((await create(gql, staff, tenant.customers[0].id, "PDF"))["usageReport"]["id"])
    release = asyncio.Event()

    class SlowStorage(LocalStorage):
        async def put(self, key: str, source: Path) -> int:
            await release.wait()
            return await super().put(key, source)

    store = SlowStorage(exports_dir)
    first = asyncio.create_task(reports.build(report_id, store))
    # when its heartbeat has moved past its start
    async with asyncio.timeout(30):
        while True:
            report = await UsageReport.get(id=report_id)
            if report.heartbeat_at and report.started_at and report.heartbeat_at > report.started_at:
                break
            await asyncio.sleep(0.05)
    # then a redelivery right after that heartbeat finds the report held and builds nothing
    assert await reports.build(report_id, store, now=report.heartbeat_at + timedelta(seconds=0.1)) == "RUNNING"
    # and the first build finishes as the only attempt
    release.set()
    assert await first == "READY"
    assert (await UsageReport.get(id=report_id)).attempts == 1


# ---------------------------------------------------------------- fairness and quotas


async def test_one_customers_heavy_exports_do_not_hold_up_another_partners_report(
    app: Any,
    gql: GQL,
    factory: Factory,
    exports_dir: Path,  # noqa: F811
) -> None:
    # given a customer user of one partner who asked for six PDF_BY_CASE_TYPE exports, then a customer of another
    # partner asking for a small CSV
    heavy, light = await factory.tenant(customers=1), await factory.tenant(customers=1)
    await seed_usage(heavy)
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=heavy.customers[0])
    member_token, light_token = await gql.login(member.email), await gql.login(light.admins[0].email)
    heavy_ids = []
    for _ in range(6):
        created = await create(gql, member_token, heavy.customers[0].id, "PDF_BY_CASE_TYPE")
        assert created["errors"] == [], created
        heavy_ids.append(_pk(created["usageReport"]["id"]))
    light_id = _pk((await create(gql, light_token, light.customers[0].id, "VOICE_CSV"))["usageReport"]["id"])
    built: list[int] = []
    heavy_in_flight: list[int] = []

    class Recording(LocalStorage):
        async def put(self, key: str, source: Path) -> int:
            report_id = int(key.split("/")[1].split("-")[0])
            built.append(report_id)
            # this build plus the heavy customer's builds waiting in the broker
            heavy_in_flight.append(len([r for r in [report_id, *broker_report_ids(app)] if r in heavy_ids]))
            return await super().put(key, source)

    configure_storage(Recording(exports_dir))
    # when one worker runs the export jobs in the order they reach the broker
    await run_until_idle(app)
    # then the other partner's report was built before the heavy customer's third, and everything was built
    assert built.index(light_id) <= 2, built
    assert sorted(built) == sorted([*heavy_ids, light_id])
    assert await UsageReport.filter(status=ReportStatus.READY).count() == 7
    # and the heavy customer never had more than two builds in the broker at once
    assert max(heavy_in_flight) <= 2


async def test_a_customer_can_queue_only_so_many_exports(
    app: Any, gql: GQL, factory: Factory, limits: Callable[..., None]
) -> None:
    # given a limit of three queued exports per customer, and a customer at it
    limits(export_max_pending_per_customer=3)
    tenant = await factory.tenant(customers=2)
    full, other = tenant.customers
    token = await gql.login(tenant.owner.email)
    for _ in range(3):
        assert (await create(gql, token, full.id, "PDF"))["errors"] == []
    # when it asks for one more
    refused = await create(gql, token, full.id, "VOICE_CSV")
    # then it is refused with a code, and nothing is queued
    assert refused["usageReport"] is None
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [(None, "QUOTA_EXCEEDED")]
    assert await UsageReport.filter(customer_id=full.id).count() == 3
    # and another customer of the same partner is not affected
    assert (await create(gql, token, other.id, "PDF"))["errors"] == []
    # and a scheduled report still queues for the customer at its limit
    made = await gql(
        SCHEDULE_CREATE,
        {
            "i": {
                "customerId": gid("Customer", full.id),
                "format": "PDF",
                "frequency": "DAILY",
                "recipients": [tenant.admins[0].email],
            }
        },
        token,
    )
    schedule_id = _pk(made["reportScheduleCreate"]["reportSchedule"]["id"])
    await ReportSchedule.filter(id=schedule_id).update(last_period_to=TODAY - timedelta(days=2), next_run_at=None)
    assert await schedules.run_due() == 1
    # and once its exports are built it may ask again
    await run_until_idle(app)
    assert (await create(gql, token, full.id, "VOICE_CSV"))["errors"] == []


@pytest.mark.postgres
async def test_concurrent_requests_never_exceed_the_quota_or_the_build_slots(
    app: Any, gql: GQL, factory: Factory, limits: Callable[..., None]
) -> None:
    # given a limit of five queued exports per customer
    limits(export_max_pending_per_customer=5)
    tenant = await factory.tenant(customers=1)
    customer = tenant.customers[0]
    token = await gql.login(tenant.owner.email)
    # when twelve requests arrive at once
    results = await asyncio.gather(*(create(gql, token, customer.id, "SMS_CSV") for _ in range(12)))
    # then exactly five are queued, the rest refused with a code
    codes = sorted(e["code"] for r in results for e in r["errors"])
    assert codes == ["QUOTA_EXCEEDED"] * 7
    assert await UsageReport.filter(customer_id=customer.id).count() == 5
    # and only the customer's two build slots were handed out
    assert await OutboxEvent.filter(topic="usage_report.requested").count() == 2


async def test_report_schedules_are_capped_per_customer(
    gql: GQL, factory: Factory, limits: Callable[..., None]
) -> None:
    # given a cap of two schedules per customer, and a customer with two
    limits(report_max_schedules_per_customer=2)
    tenant = await factory.tenant(customers=1)
    customer, admin = tenant.customers[0], tenant.admins[0]
    token = await gql.login(admin.email)

    async def schedule_create() -> dict[str, Any]:
        variables = {"customerId": gid("Customer", customer.id), "format": "PDF", "frequency": "WEEKLY"}
        data = await gql(SCHEDULE_CREATE, {"i": {**variables, "recipients": [admin.email]}}, token)
        return data["reportScheduleCreate"]

    first, _ = await schedule_create(), await schedule_create()
    # when a third is asked for
    refused = await schedule_create()
    # then it is refused with a code
    assert refused["reportSchedule"] is None
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [(None, "QUOTA_EXCEEDED")]
    assert await ReportSchedule.filter(customer_id=customer.id).count() == 2
    # and deleting one makes room
    deleted = await gql(SCHEDULE_DELETE, {"i": {"reportScheduleId": first["reportSchedule"]["id"]}}, token)
    assert deleted["reportScheduleDelete"]["errors"] == []
    assert (await schedule_create())["errors"] == []


# ---------------------------------------------------------------- recipients


async def test_schedules_email_only_the_customers_users_billing_recipients_or_what_a_partner_admin_allowed(
    app: Any,
    gql: GQL,
    factory: Factory,
    outbox: Path,  # noqa: F811
) -> None:
    # given a customer with a team member and a billing recipient, its admin, its partner's admin and member, and
    # another partner's admin
    tenant, other = await factory.tenant(customers=1), await factory.tenant(customers=1)
    customer, admin = tenant.customers[0], tenant.admins[0]
    customer_gid = gid("Customer", customer.id)
    teammate = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    partner_member = await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)
    partner_admin = await gql.login(tenant.owner.email)
    prefs = await gql(
        PREFS, {"i": {"customerId": customer_gid, "extraAlertRecipients": ["books@acct.example"]}}, partner_admin
    )
    assert prefs["billingPreferencesUpdate"]["errors"] == [], prefs
    customer_admin = await gql.login(admin.email)

    async def schedule_to(recipients: list[str]) -> dict[str, Any]:
        variables = {"customerId": customer_gid, "format": "SMS_CSV", "frequency": "DAILY"}
        data = await gql(SCHEDULE_CREATE, {"i": {**variables, "recipients": recipients}}, customer_admin)
        return data["reportScheduleCreate"]

    # when the customer's admin names an outside address: refused, naming it
    refused = await schedule_to([teammate.email, "cfo@finance.example"])
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("recipients", "NOT_ELIGIBLE")]
    assert (
        "cfo@finance.example" in refused["errors"][0]["message"]
        and teammate.email not in refused["errors"][0]["message"]
    )
    # its users and billing recipients are fine
    assert (await schedule_to([teammate.email, "Books@acct.example"]))["errors"] == []

    # when others than the partner's admins try to allow more: refused
    async def allow(token: str, entries: list[str]) -> dict[str, Any]:
        data = await gql(SETTINGS_UPDATE, {"i": {"customerId": customer_gid, "allowedRecipients": entries}}, token)
        return data["customerReportSettingsUpdate"]

    codes = lambda payload: [(e["field"], e["code"]) for e in payload["errors"]]  # noqa: E731
    assert codes(await allow(customer_admin, ["@finance.example"])) == [(None, "FORBIDDEN")]
    assert codes(await allow(await gql.login(partner_member.email), ["@finance.example"])) == [(None, "FORBIDDEN")]
    assert codes(await allow(await gql.login(other.owner.email), ["@finance.example"])) == [("customerId", "NOT_FOUND")]
    assert codes(await allow(partner_admin, ["finance.example", "@"])) == [("allowedRecipients", "INVALID")] * 2
    # when the partner's admin allows a domain and an address
    allowed = await allow(partner_admin, ["@Finance.example", "Auditor@Outside.example", "@finance.example"])
    assert allowed == {
        "reportSettings": {"allowedRecipients": ["@finance.example", "auditor@outside.example"]},
        "errors": [],
    }
    assert (await gql(SETTINGS, {"id": customer_gid}, customer_admin))["reportSettings"] == allowed["reportSettings"]
    # then the customer's admin may schedule to them
    made = await schedule_to(["cfo@finance.example", "auditor@outside.example", admin.email])
    assert made["errors"] == []
    # and when the domain is no longer allowed by delivery time, its address gets nothing
    assert (await allow(partner_admin, ["auditor@outside.example"]))["errors"] == []
    await ReportSchedule.all().update(last_period_to=TODAY - timedelta(days=2), next_run_at=None)
    await ReportSchedule.exclude(id=_pk(made["reportSchedule"]["id"])).delete()
    assert await schedules.run_due() == 1
    await run_until_idle(app)
    assert [m["To"] for m in mails(outbox)] == [f"auditor@outside.example, {admin.email}"]
