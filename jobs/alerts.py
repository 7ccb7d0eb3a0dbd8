"""Alert delivery and refill notices."""

from __future__ import annotations

from datetime import UTC, datetime

import dramatiq

from domain.accounts.models import Membership, Role, User
from domain.alerts import services
from domain.alerts.models import Alert
from domain.alerts.render import render_alert, render_refill_request
from domain.billing.models import RefillRequest, RefillRequestStatus
from domain.customers.models import Customer
from domain.partners.models import Partner
from jobs import mailer


async def _send(alert: Alert, customer: Customer) -> None:
    partner = await Partner.get(id=customer.partner_id)
    await mailer.send(render_alert(alert, customer, partner))


@dramatiq.actor(queue_name="alerts", max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def send_alert(alert_id: int) -> str:
    """Sends an alert once; a redelivered message finds it SENT and does nothing."""
    return await services.deliver(alert_id, _send)


@dramatiq.actor(queue_name="alerts", max_retries=8, min_backoff=5_000, max_backoff=600_000)
async def notify_refill_request(refill_request_id: int) -> int:
    """Tells the partner's admins that a customer's wallet needs a manual refill (stage 1 workflow)."""
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
        values = {
            "balance": f"{request.balance_at_open:.2f}",
            "refill_threshold": f"{request.threshold:.2f}",
            "refill_amount": f"{request.requested_amount:.2f}" if request.requested_amount is not None else None,
        }
        await mailer.send(render_refill_request(partner, customer, recipients, values))
    await RefillRequest.filter(id=request.id, notified_at=None).update(notified_at=datetime.now(UTC))
    return len(recipients)
