"""Raising alerts exactly once per crossing, re-arming them when the value recovers, delivering and retrying them,
and the partner's refill-needed notice.

`raise_alert` inserts the Alert under a unique (customer, kind, crossing) key in the caller's transaction and emits
`alert.raised`; delivery is a job (`deliver`) that sends once: a redelivered job finds the alert SENT and stops.
The jobs hand in only the mail transport (`Send`); what is sent, to whom, is decided here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, Role, User
from domain.alerts.commands import AlertRetry
from domain.alerts.models import ALWAYS_ON, Alert, AlertArm, AlertKind, AlertStatus
from domain.alerts.render import DEFAULT_SENDER, render_alert, render_refill_request
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.models import BillingPreferences, RefillRequest, RefillRequestStatus
from domain.billing.read import low_balance_level
from domain.common.json import JsonObject
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.events.services import ALERT_RAISED, emit
from domain.features.models import FeatureToggles
from domain.partners.branding import brand_of
from domain.partners.models import Partner
from domain.viewer import Viewer
from domain.visibility import get_visible, restrict

SYSTEM = Viewer.system("alerts")
# The wallet's low-balance alert fires below this share of the refill amount.

# How an email leaves (SMTP or the outbox folder): the jobs' mailer.
Send = Callable[[EmailMessage], Awaitable[None]]


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.quantize(Decimal('0.01'))}"


def _plain(value: Decimal) -> str:
    """A credit amount without trailing zeros or exponent: 50.000000 → "50", 12.500000 → "12.5"."""
    return f"{value.normalize():f}"


async def billing_contacts(customer: Customer) -> list[str]:
    """Who receives what is always sent (cap reached, payment failed, invoices): see `recipients_for`."""
    return await recipients_for(customer, AlertKind.PAYMENT_FAILED)


async def recipients_for(customer: Customer, kind: AlertKind) -> list[str]:
    """The primary billing contact (or, without one, the customer's active admins) plus extra recipients.
    A contact who is no longer an active admin of the customer counts as none. Users who switched billing emails
    off are skipped for optional alerts; always-on alerts reach them."""
    prefs = await BillingPreferences.filter(customer_id=customer.id).first()
    admin_ids = await Membership.filter(customer_id=customer.id, role=Role.CUSTOMER_ADMIN).values_list(
        "user_id", flat=True
    )
    admins = await User.filter(id__in=list(admin_ids), is_active=True).order_by("id")
    contact_id = prefs.primary_contact_user_id if prefs else None
    contacts = [u for u in admins if u.id == contact_id] or admins
    emails = [
        u.email
        for u in contacts
        if kind in ALWAYS_ON or (u.notification_preferences or {}).get("billing_alerts", True) is not False
    ]
    extra = list(prefs.extra_alert_recipients or []) if prefs else []
    seen: dict[str, str] = {}
    for email in [*emails, *extra]:
        seen.setdefault(email.lower(), email)
    return list(seen.values())


async def raise_alert(customer: Customer, kind: AlertKind, crossing_key: str, values: JsonObject) -> Alert | None:
    """Creates the alert once per crossing (inside the caller's transaction); None if it already exists."""
    if await Alert.filter(customer_id=customer.id, kind=kind, crossing_key=crossing_key).exists():
        return None
    recipients = await recipients_for(customer, kind)
    try:
        # a savepoint: a concurrent transaction that inserted the same crossing first makes this one a no-op
        # (emitting and auditing only for the insert that won, so the crossing is announced once)
        async with in_transaction():
            alert = await Alert.create(
                customer_id=customer.id,
                partner_id=customer.partner_id,
                kind=kind,
                crossing_key=crossing_key,
                values=values,
                recipients=recipients,
            )
    except IntegrityError:
        return None
    await emit(ALERT_RAISED, customer_id=customer.id, partner_id=customer.partner_id, alert_id=alert.id)
    await record(
        SYSTEM,
        AuditEventType.BILLING,
        "alert.raised",
        object_type="Alert",
        object_id=alert.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={"kind": str(kind), "crossing": crossing_key, "values": values, "recipients": len(recipients)},
    )
    return alert


async def track_threshold(
    customer: Customer, kind: AlertKind, value: Decimal, level: Decimal | None, enabled: bool, values: JsonObject
) -> Alert | None:
    """Fires `kind` when `value` falls below `level` while armed; re-arms once it is back at or above it."""
    if level is None:
        return None
    await AlertArm.bulk_create([AlertArm(customer_id=customer.id, kind=kind)], ignore_conflicts=True)
    arm = await AlertArm.select_for_update().get(customer_id=customer.id, kind=kind)
    if value >= level:
        if not arm.armed:
            arm.armed = True
            await arm.save(update_fields=["armed"])
        return None
    if not arm.armed:
        return None
    arm.armed = False
    arm.crossings += 1
    await arm.save(update_fields=["armed", "crossings"])
    if not enabled:
        return None
    return await raise_alert(customer, kind, str(arm.crossings), values)


async def on_wallet_balance(customer: Customer, balance: Decimal, prefs: BillingPreferences | None = None) -> None:
    """Low-balance alert: below `low_balance_level` of the refill amount (optional, on by default). `prefs`: the
    customer's preferences, when the caller read them already."""
    prefs = prefs or await BillingPreferences.filter(customer_id=customer.id).first()
    level = low_balance_level(prefs.refill_amount) if prefs is not None else None
    if prefs is None or prefs.refill_amount is None or level is None:
        return
    await track_threshold(
        customer,
        AlertKind.LOW_BALANCE,
        balance,
        level,
        prefs.low_balance_alert,
        {"balance": _money(balance), "level": _money(level), "refill_amount": _money(prefs.refill_amount)},
    )


async def on_credit_balance(
    customer: Customer,
    available: Decimal,
    prefs: BillingPreferences | None = None,
    toggles: FeatureToggles | None = None,
) -> None:
    """Low-credits alert: below the customer's threshold, when low-credit notifications are on. `prefs`,
    `toggles`: the customer's, when the caller read them already."""
    prefs = prefs or await BillingPreferences.filter(customer_id=customer.id).first()
    if prefs is None or prefs.low_credit_threshold is None:
        return
    toggles = toggles or await FeatureToggles.filter(customer_id=customer.id).first()
    enabled = bool(toggles and toggles.low_credit_notifications)
    await track_threshold(
        customer,
        AlertKind.LOW_CREDITS,
        available,
        prefs.low_credit_threshold,
        enabled,
        {"available": _plain(available), "threshold": _plain(prefs.low_credit_threshold)},
    )


async def on_cap_crossing(customer: Customer, level: int, month: str, cap: Decimal, spent: Decimal) -> None:
    prefs = await BillingPreferences.filter(customer_id=customer.id).first()
    values: JsonObject = {"cap": _money(cap), "spent": _money(spent), "month": month, "percent": level}
    if level >= 100:
        await raise_alert(customer, AlertKind.CAP_REACHED, f"{month}:{_money(cap)}", values)
    elif prefs is None or prefs.cap_alert_at_80:
        await raise_alert(customer, AlertKind.CAP_WARNING, f"{month}:{_money(cap)}", values)


async def on_refill(customer: Customer, transfer_id: int, amount: Decimal, balance_after: Decimal) -> None:
    prefs = await BillingPreferences.filter(customer_id=customer.id).first()
    if prefs is not None and not prefs.refill_processed_alert:
        return
    await raise_alert(
        customer,
        AlertKind.REFILL_PROCESSED,
        f"transfer:{transfer_id}",
        {"amount": _money(amount), "balance_after": _money(balance_after)},
    )


async def payment_failed(
    customer: Customer, attempt_id: str, reason: str, amount: Decimal | None = None
) -> Alert | None:
    """The always-on payment-failed alert (called by a payment provider)."""
    async with in_transaction():
        return await raise_alert(
            customer,
            AlertKind.PAYMENT_FAILED,
            f"payment:{attempt_id}",
            {"reason": reason[:300], "amount": _money(amount)},
        )


# ---------------------------------------------------------------- reads


async def customer_alerts(viewer: Viewer, customer_id: int) -> QuerySet[Alert]:
    """A visible customer's alerts (NOT_FOUND beyond the viewer's reach), for the API layer to paginate."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    return Alert.filter(customer_id=customer.id)


# ---------------------------------------------------------------- delivery


async def deliver(alert_id: int, send: Send) -> str:
    """Sends a pending alert once, under the partner's brand. Redelivered jobs find it SENT and do nothing; failures
    are recorded (and the job retried by the broker). Returns the final status.

    On PostgreSQL the alert's row stays locked (FOR UPDATE) until the outcome of the send is committed, so
    concurrent deliveries of one alert (a duplicated message, a retry racing the broker's own) wait and then find
    it SENT. SQLite has no row locks and serialises every transaction of the process, so there the attempt is
    committed before sending rather than holding that lock through network I/O (the embedded consumer runs one
    job at a time)."""
    hold_lock = connections.get("default").capabilities.dialect == "postgres"
    error: Exception | None = None
    async with in_transaction():
        alert = await Alert.select_for_update().get_or_none(id=alert_id)
        if alert is None:
            return "MISSING"
        if alert.status == AlertStatus.SENT:
            return str(alert.status)
        alert.attempts += 1
        await alert.save(update_fields=["attempts"])
        if hold_lock:
            error = await _attempt(alert, send)
    if not hold_lock:
        error = await _attempt(alert, send)
    if error is not None:
        raise error
    return str(alert.status)


async def _attempt(alert: Alert, send: Send) -> Exception | None:
    """Sends and records the outcome on the alert; returns the send's exception (for the broker to retry)."""
    if not alert.recipients:
        alert.status, alert.last_error = AlertStatus.FAILED, "no recipients"
        await Alert.filter(id=alert.id).update(status=alert.status, last_error=alert.last_error)
        return None
    customer = await Customer.get(id=alert.customer_id)
    try:
        partner = await Partner.get(id=customer.partner_id)
        await send(render_alert(alert, customer, await brand_of(partner, customer.id, sender=DEFAULT_SENDER)))
    except Exception as exc:
        alert.status, alert.last_error = AlertStatus.FAILED, str(exc)[:500]
        await Alert.filter(id=alert.id).update(status=alert.status, last_error=alert.last_error)
        return exc
    alert.status, alert.sent_at, alert.last_error = AlertStatus.SENT, datetime.now(UTC), ""
    await Alert.filter(id=alert.id).update(status=alert.status, sent_at=alert.sent_at, last_error="")
    return None


async def alert_retry(viewer: Viewer, command: AlertRetry) -> Alert:
    """Puts a FAILED alert back to PENDING and enqueues its delivery (through the outbox)."""
    alert = await Alert.get_or_none(id=command.alert_id)
    if alert is None or not await restrict(Customer, viewer).filter(id=alert.customer_id).exists():
        raise DomainError.single(ErrorCode.NOT_FOUND, "Alert not found.", "alert_id")
    if not (viewer.is_platform_admin or viewer.is_partner_staff or viewer.is_customer_admin):
        raise DomainError.single(ErrorCode.FORBIDDEN, "Only admins can retry alerts.")
    async with in_transaction():
        # checked under the row lock: two clicks on "retry" enqueue one delivery
        alert = await Alert.select_for_update().get(id=alert.id)
        if alert.status != AlertStatus.FAILED:
            raise DomainError.single(ErrorCode.INVALID, "Only failed alerts can be retried.", "alert_id")
        customer = await Customer.get(id=alert.customer_id)
        alert.status = AlertStatus.PENDING
        alert.recipients = await recipients_for(customer, AlertKind(alert.kind))
        await alert.save(update_fields=["status", "recipients"])
        await emit(ALERT_RAISED, customer_id=alert.customer_id, partner_id=alert.partner_id, alert_id=alert.id)
        await record(
            viewer,
            AuditEventType.BILLING,
            "alert.retry",
            object_type="Alert",
            object_id=alert.id,
            partner_id=alert.partner_id,
            customer_id=alert.customer_id,
        )
    return alert


# ---------------------------------------------------------------- the refill-needed notice


async def notify_refill_request(refill_request_id: int, send: Send) -> int:
    """Tells the partner's admins that a customer's wallet needs a manual refill (stage 1 workflow), once.
    Returns how many addresses it went to (0: nothing to tell)."""
    request = await RefillRequest.get_or_none(id=refill_request_id)
    # nothing to tell once told, or once the refill was recorded before this job ran
    if request is None or request.notified_at is not None or request.status != RefillRequestStatus.OPEN:
        return 0
    customer = await Customer.get(id=request.customer_id)
    partner = await Partner.get(id=customer.partner_id)
    staff_ids = await Membership.filter(partner_id=partner.id, role=Role.PARTNER_ADMIN).values_list(
        "user_id", flat=True
    )
    recipients = [u.email for u in await User.filter(id__in=list(staff_ids), is_active=True)]
    if partner.sender_email:
        recipients.append(partner.sender_email)
    if recipients:
        values: JsonObject = {
            "balance": f"{request.balance_at_open:.2f}",
            "refill_threshold": f"{request.threshold:.2f}",
            "refill_amount": f"{request.requested_amount:.2f}" if request.requested_amount is not None else None,
        }
        brand = await brand_of(partner, customer.id)
        await send(render_refill_request(partner, customer, recipients, values, brand))
    await RefillRequest.filter(id=request.id, notified_at=None).update(notified_at=datetime.now(UTC))
    return len(recipients)
