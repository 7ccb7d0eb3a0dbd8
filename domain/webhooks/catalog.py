"""The events endpoints may subscribe to, and the message each outbox event becomes.

A message is built after commit from the outbox event (`OutboxEnvelope`), reading what it names; its body follows
the Standard Webhooks shape `{"type", "timestamp", "data"}`. Objects are named by the API's global ids, and `data`
holds only figures the customer owns (no partner pool or revenue), so a customer's own endpoint may receive it.
`dedupe_key` makes an event one message however often the outbox hands it over (an alert retried is no new
`alert.raised`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.alerts.models import Alert, AlertKind
from domain.common import ids
from domain.common.json import JsonObject, JsonValue
from domain.customers.models import Customer
from domain.events import services as events
from domain.invoices.models import Invoice
from domain.payments.models import Payment
from domain.reports import services as reports
from domain.reports.models import ReportStatus, UsageReport

EVENT_TYPES: dict[str, str] = {
    "alert.raised": "A billing alert fired: cap warning, cap reached, low balance, low credits or payment failed.",
    "wallet.refill_requested": "The wallet fell below its refill threshold and a refill was requested.",
    "wallet.refilled": "Money entered the wallet: a manual refill or a card top-up.",
    "credits.recharged": "AI credits moved from the partner's pool to the customer.",
    "usage_report.ready": "A usage report finished building and can be downloaded.",
    "customer.disabled": "The customer was disabled.",
    "customer.enabled": "The customer was enabled again.",
    "package.assigned": "A package was assigned to the customer.",
    "package.expired": "The customer's package expired.",
    "payment.succeeded": "A card payment succeeded (a wallet top-up or an invoice).",
    "payment.failed": "A card payment failed.",
    "invoice.finalized": "A monthly invoice was finalized and sent.",
}
# alert kinds announced as `alert.raised` (a processed refill is `wallet.refilled`)
ALERT_KINDS = frozenset(
    {
        AlertKind.CAP_WARNING,
        AlertKind.CAP_REACHED,
        AlertKind.LOW_BALANCE,
        AlertKind.LOW_CREDITS,
        AlertKind.PAYMENT_FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class OutboxEnvelope:
    """An outbox event as the relay hands it to the fan-out job."""

    outbox_id: int
    topic: str
    customer_id: int | None
    partner_id: int | None
    payload: JsonObject
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Built:
    event_type: str
    dedupe_key: str
    data: JsonObject


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.quantize(Decimal('0.01'))}"


def _int(value: JsonValue) -> int:
    return int(str(value))


def _customer_gid(envelope: OutboxEnvelope) -> str | None:
    return ids.encode("Customer", envelope.customer_id) if envelope.customer_id is not None else None


async def _alert(e: OutboxEnvelope) -> Built | None:
    alert = await Alert.get_or_none(id=_int(e.payload["alert_id"]))
    if alert is None or AlertKind(alert.kind) not in ALERT_KINDS:
        return None
    data: JsonObject = {
        "customerId": _customer_gid(e),
        "alert": {
            "id": ids.encode("Alert", alert.id),
            "kind": str(alert.kind),
            "values": alert.values,
            "createdAt": alert.created_at.isoformat(),
        },
    }
    return Built("alert.raised", f"alert.raised:alert:{alert.id}", data)


async def _refill_requested(e: OutboxEnvelope) -> Built | None:
    from domain.billing.models import RefillRequest

    request = await RefillRequest.get_or_none(id=_int(e.payload["refill_request_id"]))
    if request is None:
        return None
    data: JsonObject = {
        "customerId": _customer_gid(e),
        "refillRequestId": str(request.id),
        "balance": _money(request.balance_at_open),
        "threshold": _money(request.threshold),
        "requestedAmount": _money(request.requested_amount),
        "currency": "USD",
    }
    return Built("wallet.refill_requested", f"wallet.refill_requested:{request.id}", data)


async def _plain(e: OutboxEnvelope, event_type: str, key: str, fields: tuple[str, ...]) -> Built:
    """Events whose outbox payload already holds what the message says (camel-cased keys)."""
    data: JsonObject = {"customerId": _customer_gid(e)}
    for name in fields:
        head, *rest = name.split("_")
        data[head + "".join(p.title() for p in rest)] = e.payload.get(name)
    return Built(event_type, f"{event_type}:{e.payload.get(key, e.outbox_id)}", data)


async def _report(e: OutboxEnvelope) -> Built | None:
    if e.payload.get("status") != ReportStatus.READY:
        return None
    report = await UsageReport.get_or_none(id=_int(e.payload["report_id"]))
    if report is None or report.status != ReportStatus.READY:
        return None
    data: JsonObject = {
        "customerId": _customer_gid(e),
        "report": {
            "id": ids.encode("UsageReport", report.id),
            "format": str(report.format),
            "from": report.period_from.isoformat(),
            "to": report.period_to.isoformat(),
            "downloadUrl": reports.download_url(report),
        },
    }
    return Built("usage_report.ready", f"usage_report.ready:{report.id}", data)


async def _customer_status(e: OutboxEnvelope) -> Built | None:
    customer = await Customer.get_or_none(id=e.customer_id)
    if customer is None:
        return None
    data: JsonObject = {
        "customerId": _customer_gid(e),
        "customer": {"id": _customer_gid(e), "name": customer.name, "status": e.topic.split(".")[1].upper()},
    }
    return Built(e.topic, f"{e.topic}:{e.outbox_id}", data)


async def _package(e: OutboxEnvelope) -> Built | None:
    data: JsonObject = {"customerId": _customer_gid(e)}
    if e.payload.get("package_id") is not None:
        data["packageId"] = ids.encode("Package", _int(e.payload["package_id"]))
    for name, key in (("version", "version"), ("assigned_at", "assignedAt"), ("expires_at", "expiresAt")):
        if name in e.payload:
            data[key] = e.payload[name]
    assignment = e.payload.get("assignment_id")
    return Built(e.topic, f"{e.topic}:{assignment if assignment is not None else e.outbox_id}", data)


async def _payment(e: OutboxEnvelope) -> Built | None:
    payment = await Payment.get_or_none(id=_int(e.payload["payment_id"]))
    if payment is None:
        return None
    data: JsonObject = {
        "customerId": _customer_gid(e),
        "payment": {
            "id": str(payment.id),
            "purpose": str(payment.purpose),
            "status": str(payment.status),
            "amount": _money(payment.amount),
            "currency": payment.currency,
            "provider": payment.provider,
            "failureReason": payment.failure_reason or None,
            "invoiceId": ids.encode("Invoice", payment.invoice_id) if payment.invoice_id else None,
        },
    }
    attempt = e.payload.get("attempt", "")
    return Built(e.topic, f"{e.topic}:{payment.id}:{attempt}", data)


async def _invoice(e: OutboxEnvelope) -> Built | None:
    invoice = await Invoice.get_or_none(id=_int(e.payload["invoice_id"]))
    if invoice is None:
        return None
    data: JsonObject = {
        "customerId": _customer_gid(e),
        "invoice": {
            "id": ids.encode("Invoice", invoice.id),
            "number": invoice.number,
            "period": f"{invoice.period_start:%Y-%m}",
            "status": str(invoice.status),
            "currency": invoice.currency,
            "subtotal": str(invoice.subtotal),
            "total": _money(invoice.total),
            "lines": [dict(line) for line in invoice.lines],
        },
    }
    return Built("invoice.finalized", f"invoice.finalized:{invoice.id}", data)


async def _wallet_refilled(e: OutboxEnvelope) -> Built | None:
    return await _plain(e, "wallet.refilled", "transfer_id", ("amount", "balance_after", "source", "reference"))


async def _credits_recharged(e: OutboxEnvelope) -> Built | None:
    return await _plain(e, "credits.recharged", "transfer_id", ("credits", "available_after"))


_BUILDERS: dict[str, Callable[[OutboxEnvelope], Awaitable[Built | None]]] = {
    events.ALERT_RAISED: _alert,
    events.REFILL_REQUESTED: _refill_requested,
    events.WALLET_REFILLED: _wallet_refilled,
    events.CREDITS_RECHARGED: _credits_recharged,
    events.USAGE_REPORT_UPDATED: _report,
    events.CUSTOMER_DISABLED: _customer_status,
    events.CUSTOMER_ENABLED: _customer_status,
    events.PACKAGE_ASSIGNED: _package,
    events.PACKAGE_EXPIRED: _package,
    events.PAYMENT_SUCCEEDED: _payment,
    events.PAYMENT_FAILED: _payment,
    events.INVOICE_FINALIZED: _invoice,
}
# the outbox topics the relay hands to the webhook fan-out
SOURCE_TOPICS = frozenset(_BUILDERS)


async def build(envelope: OutboxEnvelope) -> Built | None:
    """The message an outbox event becomes, or None when it announces nothing endpoints subscribe to."""
    builder = _BUILDERS.get(envelope.topic)
    if builder is None or envelope.partner_id is None:
        return None
    return await builder(envelope)
