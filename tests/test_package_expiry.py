"""Package expiry (issue 15, item 4): at `expiresAt` the job ends the assignment, switches off what came only from
the package through the feature rules (audited), expires its credit grants, gives its storage back to the pool and
leaves `Customer.package` null; the customer's billing contact and the partner's admins get a white-label email 7
days before and at expiry, over real SMTP, exactly once even when two schedulers run the job at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from domain.audit.models import AuditEvent
from domain.billing.commands import BillingPreferencesUpdate, PartnerCreditsAdd
from domain.billing.credits import partner_credits_add
from domain.billing.preferences import billing_preferences_update
from domain.features.models import FeatureToggles
from domain.ledger import services as ledger
from domain.packages import expiry
from domain.packages.commands import PackageLimits
from domain.packages.models import EndReason, FeatureKey, NoticeKind, NoticeStatus, PackageAssignment, PackageNotice
from domain.storage.commands import PartnerStoragePurchase
from domain.storage.models import CustomerStorage, PartnerStorage
from domain.storage.services import partner_storage_purchase
from jobs import mailer
from tests.conftest import GQL, SYSTEM, Factory, Tenant, gid
from tests.servers import free_port
from tests.test_alerts import Mailbox, run_jobs

VIEW = """query($id: ID!) { customer(id: $id) {
  package { id }
  features { portalEnabled teamMembersEnabled embedUrlsEnabled aiCreditsEnabled advancedAnalytics apiAccess
             portalSections addOns }
  credits { available expired }
  storage { allocatedMb packageMb } } }"""
ASSIGNMENT = """query($id: ID!) { node(id: $id) { ... on PackageAssignment { active endedAt endReason } } }"""
FEATURES_UPDATE = """mutation($i: CustomerFeaturesUpdateInput!) { customerFeaturesUpdate(input: $i) {
  errors { code } } }"""
GIVES = [
    FeatureKey.CUSTOMER_PORTAL,
    FeatureKey.TEAM_MEMBERS,
    FeatureKey.EMBEDS,
    FeatureKey.KNOWLEDGE_BASE,
    FeatureKey.ADVANCED_ANALYTICS,
    FeatureKey.AI_CREDITS,
]


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    port = free_port()
    box = Mailbox(f"smtp://127.0.0.1:{port}")
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    saved = (mailer._settings["smtp_url"], mailer._settings["outbox_dir"])
    mailer.configure(box.url, tmp_path)
    try:
        yield box
    finally:
        mailer.configure(saved[0], saved[1])  # type: ignore[arg-type]
        controller.stop()


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


def notices(box: Mailbox) -> list[tuple[str, str, str]]:
    """(kind, audience, To) of each package notice received, in order."""
    out = []
    for message in box.messages:
        _, kind, audience = str(message["X-Partnerdesk-Notice"]).split(":")
        out.append((kind, audience, str(message["To"])))
    return out


async def packaged(factory: Factory, **extra: Any) -> tuple[Tenant, PackageAssignment]:
    """A partner with credits and storage, a customer on a 30-day package that gives features, 50 credits and
    1 GB of storage, with API access switched on beyond the package."""
    tenant = await factory.tenant(customers=1, name="Brightcall")
    partner = tenant.partner
    await partner_credits_add(SYSTEM, PartnerCreditsAdd(partner.id, Decimal(500), uuid.uuid4().hex))
    await partner_storage_purchase(SYSTEM, PartnerStoragePurchase(2, uuid.uuid4().hex, partner.id))
    terms: dict[str, Any] = {
        "expiry_days": 30,
        "ai_credits": Decimal(50),
        "user_count": 3,
        "limits": PackageLimits(storage_mb=1024),
    }
    package = await factory.package(partner, GIVES, title="Trial", **(terms | extra))
    assignment = await factory.give(tenant.customers[0], package)
    await FeatureToggles.filter(customer_id=tenant.customers[0].id).update(api_access=True)
    return tenant, assignment


async def test_expiry_switches_off_what_the_package_gave_and_emails_each_notice_once(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given
    tenant, assignment = await packaged(factory)
    customer, admin = tenant.customers[0], tenant.admins[0]
    staff = await gql.login(tenant.owner.email)
    expires = assignment.expires_at
    assert expires is not None
    before = await gql(VIEW, {"id": gid("Customer", customer.id)}, staff)
    assert before["customer"]["features"]["portalEnabled"] and before["customer"]["storage"]["allocatedMb"] == 1024
    # when: eight days before, nothing is due
    assert await expiry.run_package_expiry(expires - timedelta(days=8)) == expiry.ExpiryRun(0, 0)
    # when: six days before, twice (two schedulers), then the jobs run
    runs = await asyncio.gather(*(expiry.run_package_expiry(expires - timedelta(days=6)) for _ in range(2)))
    await run_jobs(app)
    await run_jobs(app)
    # then: one reminder each to the customer's admin and the partner's admin, under the partner's brand
    assert sum(r.reminded for r in runs) == 1 and sum(r.ended for r in runs) == 0
    assert notices(mailbox) == [
        ("EXPIRING", "CUSTOMER", admin.email),
        ("EXPIRING", "PARTNER", tenant.owner.email),
    ]
    reminder = mailbox.messages[0]
    assert str(reminder["Subject"]).startswith("Brightcall: Your Trial package ends on")
    assert "Brightcall" in str(reminder["From"])
    assert "the customer portal" in reminder.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # when: the moment passes, two runs at once
    ended = await asyncio.gather(*(expiry.run_package_expiry(expires + timedelta(seconds=1)) for _ in range(2)))
    await run_jobs(app)
    await run_jobs(app)
    # then: ended once, and the expiry notices went out once
    assert sum(r.ended for r in ended) == 1
    assert notices(mailbox)[2:] == [
        ("EXPIRED", "CUSTOMER", admin.email),
        ("EXPIRED", "PARTNER", tenant.owner.email),
    ]
    assert await PackageNotice.filter(status=NoticeStatus.SENT).count() == 4
    # what came only from the package is off; API access (given beyond it) stays; no package any more
    after = (await gql(VIEW, {"id": gid("Customer", customer.id)}, staff))["customer"]
    assert after["package"] is None
    assert after["features"] == {
        "portalEnabled": False,
        "teamMembersEnabled": False,
        "embedUrlsEnabled": False,
        "aiCreditsEnabled": False,
        "advancedAnalytics": False,
        "apiAccess": True,
        "portalSections": [],
        "addOns": ["API_ACCESS"],
    }
    # its credits expired and its storage went back to the pool; the books balance
    assert Decimal(after["credits"]["available"]) == 0 and Decimal(after["credits"]["expired"]) == 50
    assert after["storage"] == {"allocatedMb": 0, "packageMb": 0}
    pool = await PartnerStorage.get(partner_id=tenant.partner.id)
    assert (pool.total_mb, pool.allocated_mb) == (2048, 0)
    _, problems = await ledger.verify()
    assert problems == []
    # the assignment says how it ended; the switch-off is audited by the job
    node = (await gql(ASSIGNMENT, {"id": gid("PackageAssignment", assignment.id)}, staff))["node"]
    assert node["active"] is False and node["endReason"] == "EXPIRED" and node["endedAt"]
    assert (await PackageAssignment.get(id=assignment.id)).end_reason == EndReason.EXPIRED
    expired = await AuditEvent.get(action="package.expire")
    assert expired.customer_id == customer.id and expired.actor_label == "package-expiry"
    switched = await AuditEvent.filter(action="customer_features.update", actor_label="package-expiry").first()
    assert switched is not None and switched.details["changes"]["portal_enabled"] == {"before": True, "after": False}
    # and the portal cannot be switched back on without a package
    refused = await gql(
        FEATURES_UPDATE, {"i": {"customerId": gid("Customer", customer.id), "portalEnabled": True}}, staff
    )
    assert [e["code"] for e in refused["customerFeaturesUpdate"]["errors"]] == ["NOT_ELIGIBLE"]


async def test_notices_go_to_the_primary_billing_contact_and_active_partner_admins(
    app: Any, gql: GQL, factory: Factory, mailbox: Mailbox
) -> None:
    # given: a second customer admin who is the primary billing contact, and a partner member (not an admin)
    from domain.accounts.models import Role

    tenant, assignment = await packaged(factory)
    customer = tenant.customers[0]
    contact = await factory.user(role=Role.CUSTOMER_ADMIN, customer=customer)
    await factory.user(role=Role.PARTNER_MEMBER, partner=tenant.partner)
    await billing_preferences_update(SYSTEM, BillingPreferencesUpdate(customer.id, primary_contact_user_id=contact.id))
    assert assignment.expires_at is not None
    # when
    await expiry.run_package_expiry(assignment.expires_at + timedelta(minutes=1))
    await run_jobs(app)
    # then: no early notice after the fact, only the expiry; to the contact and the partner admins
    assert notices(mailbox) == [("EXPIRED", "CUSTOMER", contact.email), ("EXPIRED", "PARTNER", tenant.owner.email)]


async def test_short_and_replaced_assignments(app: Any, factory: Factory, mailbox: Mailbox) -> None:
    # given: a 5-day trial (its "7 days before" was before it began)
    tenant, trial = await packaged(factory, expiry_days=5)
    customer = tenant.customers[0]
    assert trial.expires_at is not None
    # when / then: no early notice
    assert (await expiry.run_package_expiry(trial.expires_at - timedelta(days=1))).reminded == 0
    # given: the trial replaced by a package without expiry before it ends
    lasting = await factory.package(tenant.partner, [FeatureKey.CUSTOMER_PORTAL], title="Forever")
    await factory.give(customer, lasting)
    # when: the trial's moment passes
    run = await expiry.run_package_expiry(trial.expires_at + timedelta(days=1))
    # then: nothing ends, nothing is sent, the customer keeps its portal
    assert run == expiry.ExpiryRun(0, 0)
    assert (await FeatureToggles.get(customer_id=customer.id)).portal_enabled is True
    assert (await PackageAssignment.get(id=trial.id)).end_reason == EndReason.REPLACED
    assert not await PackageNotice.filter(kind=NoticeKind.EXPIRED).exists()
    # the trial's storage part went back when it was replaced
    assert (await CustomerStorage.get(customer_id=customer.id)).allocated_mb == 0


async def test_an_expired_assignment_is_not_in_force_before_the_job_runs(gql: GQL, factory: Factory) -> None:
    # given: an assignment whose moment passed a minute ago, the job not run yet
    tenant, assignment = await packaged(factory)
    assert assignment.expires_at is not None
    await PackageAssignment.filter(id=assignment.id).update(expires_at=assignment.expires_at - timedelta(days=31))
    staff = await gql.login(tenant.owner.email)
    customer_id = gid("Customer", tenant.customers[0].id)
    # then: no package in force, so nothing gated can be switched on
    assert (await gql(VIEW, {"id": customer_id}, staff))["customer"]["package"] is None
    await gql(FEATURES_UPDATE, {"i": {"customerId": customer_id, "portalEnabled": False}}, staff)
    refused = await gql(FEATURES_UPDATE, {"i": {"customerId": customer_id, "portalEnabled": True}}, staff)
    assert [e["code"] for e in refused["customerFeaturesUpdate"]["errors"]] == ["NOT_ELIGIBLE"]


@pytest.mark.postgres
async def test_two_deliveries_of_one_notice_send_it_once(app: Any, factory: Factory, mailbox: Mailbox) -> None:
    # given: the expiry notices created
    _, assignment = await packaged(factory)
    assert assignment.expires_at is not None
    await expiry.run_package_expiry(assignment.expires_at + timedelta(seconds=1))
    ids = await PackageNotice.all().order_by("id").values_list("id", flat=True)
    # when: each is delivered by three workers at once (a duplicated message, a retry racing)
    await asyncio.gather(*(expiry.deliver_notice(i, mailer.send) for i in ids for _ in range(3)))
    # then
    assert len(mailbox.messages) == 2
    assert await PackageNotice.filter(status=NoticeStatus.SENT, attempts=1).count() == 2
