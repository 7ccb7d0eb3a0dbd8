"""The payment provider's events (`POST /v1/stripe/webhook`): verified, then applied once per event id.

An event is handled in one transaction with its `ProviderEvent` row: a replayed or concurrent duplicate waits on
the row's unique key, finds it and changes nothing. Checkout and payment-intent events settle or fail top-ups
(domain/payments/services.py); invoice events pay, fail or void invoices (domain/invoices/services.py).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.common.json import JsonObject, JsonValue
from domain.invoices import services as invoices
from domain.payments.models import Payment, PaymentPurpose, ProviderEvent
from domain.payments.providers import ProviderEventIn, provider
from domain.payments.services import fail_payment, settle_top_up
from domain.viewer import Viewer

# ---------------------------------------------------------------- provider events


def _metadata_id(obj: JsonObject, name: str) -> int | None:
    metadata = obj.get("metadata")
    raw: JsonValue = metadata.get(name) if isinstance(metadata, dict) else None
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


async def _payment_of(obj: JsonObject) -> Payment | None:
    payment_id = _metadata_id(obj, "partnerdesk_payment_id")
    if payment_id is None and isinstance(obj.get("client_reference_id"), str):
        reference = str(obj["client_reference_id"])
        payment_id = int(reference) if reference.isdigit() else None
    return await Payment.get_or_none(id=payment_id) if payment_id is not None else None


def _amount(obj: JsonObject, field: str) -> Decimal | None:
    value = obj.get(field)
    return Decimal(value) / 100 if isinstance(value, int) else None


async def _on_checkout_paid(event: ProviderEventIn) -> str:
    obj = event.data
    if obj.get("payment_status") not in ("paid", "no_payment_required"):
        return "awaiting payment"
    payment = await _payment_of(obj)
    amount = _amount(obj, "amount_total")
    if payment is None or amount is None or str(obj.get("currency", "usd")).lower() != "usd":
        return "ignored"
    return await settle_top_up(payment.id, amount, f"event {event.external_id}")


async def _on_intent_succeeded(event: ProviderEventIn) -> str:
    payment = await _payment_of(event.data)
    amount = _amount(event.data, "amount_received") or _amount(event.data, "amount")
    if payment is None or amount is None or payment.purpose != PaymentPurpose.AUTO_TOP_UP:
        return "ignored"  # checkout top-ups settle on checkout.session.completed
    return await settle_top_up(payment.id, amount, f"event {event.external_id}")


async def _on_intent_failed(event: ProviderEventIn) -> str:
    payment = await _payment_of(event.data)
    if payment is None:
        return "ignored"
    error = event.data.get("last_payment_error")
    reason = str(error.get("message") or error.get("code") or "declined") if isinstance(error, dict) else "declined"
    return await fail_payment(payment, reason, str(event.data.get("id") or event.external_id))


async def _on_invoice(event: ProviderEventIn) -> str:
    return await invoices.on_provider_invoice(event.type, event.data, event.external_id)


_HANDLERS = {
    "checkout.session.completed": _on_checkout_paid,
    "checkout.session.async_payment_succeeded": _on_checkout_paid,
    "payment_intent.succeeded": _on_intent_succeeded,
    "payment_intent.payment_failed": _on_intent_failed,
    "invoice.paid": _on_invoice,
    "invoice.payment_failed": _on_invoice,
    "invoice.voided": _on_invoice,
}


async def handle_provider_event(payload: bytes, signature: str | None) -> str:
    """`POST /v1/stripe/webhook`: verifies the event (`InvalidEvent` otherwise) and applies it once per event id.
    Returns what came of it."""
    card = provider()
    event = card.parse_event(payload, signature)
    handler = _HANDLERS.get(event.type)
    if handler is None:
        return "ignored"
    claim = f"claim:{uuid.uuid4().hex}"
    async with in_transaction():
        await ProviderEvent.bulk_create(
            [ProviderEvent(provider=card.name, external_id=event.external_id, type=event.type, outcome=claim)],
            ignore_conflicts=True,
        )
        # a concurrent duplicate waits here on the unique index until the first commits, then finds its row
        row = await ProviderEvent.select_for_update().get(provider=card.name, external_id=event.external_id)
        if row.outcome != claim:
            return "duplicate"
        outcome = await handler(event)
        row.outcome = outcome
        await row.save(update_fields=["outcome"])
        payment = await _payment_of(event.data)
        if payment is not None:
            await record(
                Viewer.system(card.name),
                AuditEventType.INTEGRATION,
                "payment_provider.event",
                object_type="Payment",
                object_id=payment.id,
                partner_id=payment.partner_id,
                customer_id=payment.customer_id,
                details={"event_id": event.external_id, "type": event.type, "outcome": outcome},
            )
    return outcome
