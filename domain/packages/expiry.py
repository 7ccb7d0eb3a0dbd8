"""Package expiry (seed 004, "how long the package remains active after it is assigned"): a job ends each
assignment at its `expiresAt` and emails 7 days before and at that moment, each exactly once.

Ending an assignment, in one transaction per assignment: it stops being current (`Customer.package` is null, end
reason EXPIRED); what came only from the package is switched off through the features service (the gated features,
the add-ons the package included, the knowledge-base section; their dependants follow, all audited); the AI credits
it granted expire (the grants share its expiry); the storage it gave goes back to the partner's pool (as far as the
customer's use allows). The spending cap and the seat limit stay as they are: removing a cap would lift a
protection, and team members are off without the package anyway.

Notices go to the customer's primary billing contact (its active admins without one) and, separately, to the
partner's active admins: one `PackageNotice` per (assignment, kind, audience), created under its unique key (a
second scheduler's insert is a no-op) and sent by a job that finds it SENT on a redelivery. An assignment lasting 7
days or less gets no "7 days before" notice (that moment was before it began).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, Role, User
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.credits import expire_customer_grants
from domain.billing.models import BillingPreferences
from domain.common.commands import UNSET
from domain.customers.models import Customer
from domain.events.services import PACKAGE_EXPIRED, PACKAGE_NOTICE_REQUESTED, emit
from domain.features import eligibility
from domain.features import services as features
from domain.features.commands import CustomerFeaturesUpdate
from domain.features.eligibility import PackageInForce
from domain.features.models import FeatureToggles, PortalSection
from domain.packages.models import (
    EndReason,
    FeatureKey,
    NoticeAudience,
    NoticeKind,
    NoticeStatus,
    PackageAssignment,
    PackageNotice,
)
from domain.packages.render import Ending, render_notice
from domain.partners.models import Partner
from domain.storage.services import release_package_storage
from domain.viewer import Viewer

NOTICE_LEAD = timedelta(days=7)
SYSTEM = Viewer.system("package-expiry")
Send = Callable[[EmailMessage], Awaitable[None]]


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    reminded: int  # assignments whose "7 days before" notices this run created
    ended: int  # assignments this run ended


async def run_package_expiry(at: datetime | None = None) -> ExpiryRun:
    """The job: notices for assignments ending within 7 days, then every assignment past its expiry ended. Safe to
    run twice at once (each step re-checks under a lock or a unique key)."""
    moment = at or now()
    reminded = 0
    due = await PackageAssignment.filter(
        current_customer_id__isnull=False, expires_at__gt=moment, expires_at__lte=moment + NOTICE_LEAD
    ).exclude(id__in=Subquery(PackageNotice.filter(kind=NoticeKind.EXPIRING).values("assignment_id")))
    for assignment in due:
        assert assignment.expires_at is not None
        if assignment.expires_at - assignment.assigned_at <= NOTICE_LEAD:
            continue
        async with in_transaction():
            if await _notify(assignment, NoticeKind.EXPIRING):
                reminded += 1
    ended = 0
    expired: list[int] = await PackageAssignment.filter(  # type: ignore[assignment]
        current_customer_id__isnull=False, expires_at__lte=moment
    ).values_list("id", flat=True)
    for assignment_id in sorted(expired):
        if await end_expired(assignment_id, moment):
            ended += 1
    return ExpiryRun(reminded, ended)


def _switch_off(toggles: FeatureToggles, ending: PackageInForce) -> CustomerFeaturesUpdate:
    """Off: every gated feature and section, and the add-ons the package included (those on beyond it stay)."""
    off: dict[str, bool] = dict.fromkeys(eligibility.GATED, False)
    for toggle, key in eligibility.ADD_ONS.items():
        if key in ending.features:
            off[toggle] = False
    shown = [PortalSection(s) for s in toggles.portal_sections or [] if s in {p.value for p in PortalSection}]
    kept = [s for s in shown if s not in eligibility.GATED_SECTIONS]
    return CustomerFeaturesUpdate(
        customer_id=toggles.customer_id,
        low_credit_threshold=UNSET,
        portal_sections=kept if kept != shown else UNSET,
        **off,
    )


async def end_expired(assignment_id: int, moment: datetime) -> bool:
    """Ends one expired assignment (see the module docstring); False when it is no longer current or not expired
    (another run ended it, or it was replaced meanwhile). Locks the customer's toggles first, as an assignment does,
    so an expiry and a new assignment of one customer take turns."""
    found = await PackageAssignment.get_or_none(id=assignment_id)
    if found is None:
        return False
    async with in_transaction():
        await FeatureToggles.bulk_create([FeatureToggles(customer_id=found.customer_id)], ignore_conflicts=True)
        toggles = await FeatureToggles.select_for_update().get(customer_id=found.customer_id)
        assignment = await PackageAssignment.select_for_update().get(id=assignment_id)
        expires_at = assignment.expires_at
        if assignment.current_customer_id is None or expires_at is None or expires_at > moment:
            return False
        customer = await Customer.get(id=assignment.customer_id)
        ending = PackageInForce.of(assignment)
        await PackageAssignment.filter(id=assignment.id).update(
            current_customer_id=None, ended_at=moment, end_reason=EndReason.EXPIRED
        )
        updated = await features.customer_features_update(SYSTEM, _switch_off(toggles, ending))
        grants = await expire_customer_grants(customer, moment)
        returned_mb = await release_package_storage(customer)
        await record(
            SYSTEM,
            AuditEventType.DATA_CHANGE,
            "package.expire",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={
                "assignment_id": assignment.id,
                "package_id": assignment.package_id,
                "version": assignment.version,
                "expires_at": expires_at.isoformat(),
                "switched_off": [*updated.switched_off],
                "grants_expired": [g.id for g in grants],
                "storage_mb_to_pool": returned_mb,
            },
        )
        await emit(
            PACKAGE_EXPIRED,  # outgoing webhooks (domain/webhooks/catalog.py)
            customer_id=customer.id,
            partner_id=customer.partner_id,
            assignment_id=assignment.id,
            package_id=assignment.package_id,
            version=assignment.version,
            expires_at=expires_at.isoformat(),
        )
        await _notify(assignment, NoticeKind.EXPIRED)
    return True


# ---------------------------------------------------------------- notices


async def _customer_recipients(customer_id: int) -> list[str]:
    """The primary billing contact while an active admin of the customer, else its active admins."""
    prefs = await BillingPreferences.filter(customer_id=customer_id).first()
    admin_ids = await Membership.filter(customer_id=customer_id, role=Role.CUSTOMER_ADMIN).values_list(
        "user_id", flat=True
    )
    admins = await User.filter(id__in=list(admin_ids), is_active=True).order_by("id")
    contact = prefs.primary_contact_user_id if prefs else None
    return [u.email for u in ([u for u in admins if u.id == contact] or admins)]


async def _partner_recipients(partner_id: int) -> list[str]:
    staff_ids = await Membership.filter(partner_id=partner_id, role=Role.PARTNER_ADMIN).values_list(
        "user_id", flat=True
    )
    return [u.email for u in await User.filter(id__in=list(staff_ids), is_active=True).order_by("id")]


async def _notify(assignment: PackageAssignment, kind: NoticeKind) -> bool:
    """Creates the assignment's notices of `kind` for both audiences (inside the caller's transaction) and asks for
    their delivery; False when they existed already (another run created them)."""
    created = False
    for audience in NoticeAudience:
        if audience is NoticeAudience.CUSTOMER:
            recipients = await _customer_recipients(assignment.customer_id)
        else:
            recipients = await _partner_recipients(assignment.partner_id)
        try:
            async with in_transaction():  # a savepoint: a concurrent run's insert of the same key wins alone
                notice = await PackageNotice.create(
                    assignment_id=assignment.id,
                    customer_id=assignment.customer_id,
                    partner_id=assignment.partner_id,
                    kind=kind,
                    audience=audience,
                    recipients=recipients,
                )
        except IntegrityError:
            continue
        created = True
        await emit(
            PACKAGE_NOTICE_REQUESTED,
            customer_id=assignment.customer_id,
            partner_id=assignment.partner_id,
            notice_id=notice.id,
        )
        await record(
            SYSTEM,
            AuditEventType.DATA_CHANGE,
            "package.notice",
            object_type="Customer",
            object_id=assignment.customer_id,
            partner_id=assignment.partner_id,
            customer_id=assignment.customer_id,
            details={
                "assignment_id": assignment.id,
                "kind": str(kind),
                "audience": str(audience),
                "recipients": len(recipients),
            },
        )
    return created


async def deliver_notice(notice_id: int, send: Send) -> str:
    """Sends a pending notice once (the alerts' delivery pattern): a redelivered job finds it SENT and does nothing;
    a failed send is recorded and raised for the broker to retry. On PostgreSQL the notice stays locked until the
    outcome is committed, so two deliveries of one notice send it once; SQLite commits the attempt first."""
    hold_lock = connections.get("default").capabilities.dialect == "postgres"
    error: Exception | None = None
    async with in_transaction():
        notice = await PackageNotice.select_for_update().get_or_none(id=notice_id)
        if notice is None:
            return "MISSING"
        if notice.status == NoticeStatus.SENT:
            return str(notice.status)
        notice.attempts += 1
        await notice.save(update_fields=["attempts"])
        if hold_lock:
            error = await _attempt(notice, send)
    if not hold_lock:
        error = await _attempt(notice, send)
    if error is not None:
        raise error
    return str(notice.status)


async def _attempt(notice: PackageNotice, send: Send) -> Exception | None:
    if not notice.recipients:
        notice.status, notice.last_error = NoticeStatus.FAILED, "no recipients"
        await PackageNotice.filter(id=notice.id).update(status=notice.status, last_error=notice.last_error)
        return None
    assignment = await PackageAssignment.get(id=notice.assignment_id)
    assert assignment.expires_at is not None  # notices exist only for expiring assignments
    terms = PackageInForce.of(assignment)
    ending = Ending(terms.title, assignment.expires_at, [k for k in FeatureKey if k in terms.features])
    try:
        customer = await Customer.get(id=notice.customer_id)
        partner = await Partner.get(id=notice.partner_id)
        await send(render_notice(notice, ending, customer, partner))
    except Exception as exc:
        notice.status, notice.last_error = NoticeStatus.FAILED, str(exc)[:500]
        await PackageNotice.filter(id=notice.id).update(status=notice.status, last_error=notice.last_error)
        return exc
    notice.status, notice.sent_at = NoticeStatus.SENT, now()
    await PackageNotice.filter(id=notice.id).update(status=notice.status, sent_at=notice.sent_at, last_error="")
    return None
