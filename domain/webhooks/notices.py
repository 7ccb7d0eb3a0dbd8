"""Telling an endpoint's owner that it was disabled after failing for days (partner admins for a partner's
endpoint, the customer's admins for a customer's), under the partner's name and sender address."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from domain.accounts.models import Membership, Role, User
from domain.alerts.render import DEFAULT_SENDER
from domain.config import config
from domain.partners.models import Partner
from domain.webhooks.models import EndpointStatus, WebhookEndpoint

Send = Callable[[EmailMessage], Awaitable[None]]


async def owners_of(endpoint: WebhookEndpoint) -> list[str]:
    if endpoint.customer_id is not None:
        memberships = Membership.filter(customer_id=endpoint.customer_id, role=Role.CUSTOMER_ADMIN)
    else:
        memberships = Membership.filter(partner_id=endpoint.partner_id, role=Role.PARTNER_ADMIN)
    user_ids = await memberships.values_list("user_id", flat=True)
    return [u.email for u in await User.filter(id__in=list(user_ids), is_active=True).order_by("id")]


async def notify_endpoint_disabled(endpoint_id: int, send: Send) -> int:
    """Emails the owners once per disabling; returns how many addresses it went to."""
    endpoint = await WebhookEndpoint.get_or_none(id=endpoint_id)
    if endpoint is None or endpoint.status != EndpointStatus.DISABLED or endpoint.disabled_notice_sent_at is not None:
        return 0
    recipients = await owners_of(endpoint)
    if recipients:
        partner = await Partner.get(id=endpoint.partner_id)
        message = EmailMessage()
        message["Subject"] = f"{partner.name}: a webhook endpoint was disabled"
        message["From"] = formataddr((partner.name, partner.sender_email or DEFAULT_SENDER))
        message["To"] = ", ".join(recipients)
        message["Message-ID"] = make_msgid(idstring=f"webhook-endpoint-{endpoint.id}", domain="partnerdesk")
        message.set_content(
            "\n".join(
                [
                    f"The webhook endpoint {endpoint.url} kept failing and was disabled.",
                    f"Reason: {endpoint.disabled_reason}",
                    "",
                    "Fix the receiver, then enable the endpoint again (webhookEndpointUpdate with enabled: true)",
                    "and redeliver the failed deliveries you still need (webhookRedeliver).",
                    "",
                    f"{config().public_url.rstrip('/')}/settings/integrations/webhooks",
                ]
            )
        )
        await send(message)
    await WebhookEndpoint.filter(id=endpoint.id, disabled_notice_sent_at=None).update(
        disabled_notice_sent_at=datetime.now(UTC)
    )
    return len(recipients)
