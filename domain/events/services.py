"""Emitting and draining outbox events.

Topics: `credits.changed`, `wallet.changed`, `spending_cap.changed` (customer state that live views show),
`alert.raised` (an alert to deliver), `refill.requested` (notify the partner's billing staff),
`usage_report.requested` (build a report: the export queue gave it a build slot), `usage_report.updated` (a report's
status changed, live), `report_delivery.requested` (email a scheduled report's link), `access.revoked` (live sockets
re-check their credentials at once), `package_notice.requested` (email a package expiry notice).

For outgoing webhooks (domain/webhooks/catalog.py): `wallet.refilled`, `credits.recharged`, `customer.disabled`,
`customer.enabled`, `package.assigned`, `package.expired`, `payment.succeeded`, `payment.failed`,
`invoice.finalized`; and their own `webhook_delivery.requested` (send one delivery attempt) and
`webhook_endpoint.disabled` (email the endpoint's owner). `auto_top_up.requested` charges a saved card.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from tortoise import connections

from domain.access import token_cache
from domain.common.json import JsonLike, JsonObject
from domain.common.rows import columns, from_row, raw_sql
from domain.events.models import OutboxEvent

CREDITS_CHANGED = "credits.changed"
WALLET_CHANGED = "wallet.changed"
SPENDING_CAP_CHANGED = "spending_cap.changed"
ALERT_RAISED = "alert.raised"
REFILL_REQUESTED = "refill.requested"
USAGE_REPORT_REQUESTED = "usage_report.requested"
USAGE_REPORT_UPDATED = "usage_report.updated"
REPORT_DELIVERY_REQUESTED = "report_delivery.requested"
WALLET_REFILLED = "wallet.refilled"
CREDITS_RECHARGED = "credits.recharged"
CUSTOMER_DISABLED = "customer.disabled"
CUSTOMER_ENABLED = "customer.enabled"
PACKAGE_ASSIGNED = "package.assigned"
PACKAGE_EXPIRED = "package.expired"  # emitted by package expiry (payload: assignment_id, package_id)
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
INVOICE_FINALIZED = "invoice.finalized"
WEBHOOK_DELIVERY_REQUESTED = "webhook_delivery.requested"
WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"
AUTO_TOP_UP_REQUESTED = "auto_top_up.requested"
PACKAGE_NOTICE_REQUESTED = "package_notice.requested"
WAKE_CHANNEL = "partnerdesk_outbox"  # PostgreSQL NOTIFY channel that wakes the relay after a commit
ACCESS_REVOKED = "access.revoked"  # a session, key or token ended, or a customer was disabled: sockets re-check now

# Topics that live subscriptions watch: the relay also publishes them to the pub/sub, keyed per customer.
LIVE_TOPICS = frozenset({CREDITS_CHANGED, WALLET_CHANGED, SPENDING_CAP_CHANGED, ALERT_RAISED, USAGE_REPORT_UPDATED})


def live_key(topic: str, customer_id: int | None) -> str:
    """The pub/sub key of one customer's changes of one topic."""
    return f"{topic}:{customer_id}"


async def emit(
    topic: str, *, customer_id: int | None = None, partner_id: int | None = None, **payload: JsonLike
) -> None:
    """Call inside the transaction of the change; the relay publishes it after commit."""
    await OutboxEvent.create(topic=topic, customer_id=customer_id, partner_id=partner_id, payload=payload)
    if topic == ACCESS_REVOKED:
        token_cache.tokens.clear()  # this process at once; every process again when the relay publishes it
    await _wake_relay()


async def emit_many(events: Iterable[tuple[str, int | None, int | None, JsonObject]]) -> None:
    rows = [OutboxEvent(topic=t, customer_id=c, partner_id=p, payload=payload) for t, c, p, payload in events]
    if rows:
        await OutboxEvent.bulk_create(rows)
        if any(row.topic == ACCESS_REVOKED for row in rows):
            token_cache.tokens.clear()
        await _wake_relay()


# id of an asyncpg connection → the top-level transaction that last sent its NOTIFY on it (held, so compared by
# identity no other transaction can share; cleared when it grows past a pool's worth of entries)
_notified: dict[int, Any] = {}


async def _wake_relay() -> None:
    """On PostgreSQL, NOTIFY the relay: delivered when the transaction commits (never for a rolled-back one). The
    server folds a transaction's notifications into one anyway, so each transaction sends it once (a round trip
    per event saved on the metering path). SQLite has no such thing: the relay polls."""
    if take_wake():
        await connections.get("default").execute_query(WAKE_SQL)


WAKE_SQL = f"SELECT pg_notify('{WAKE_CHANNEL}', '')"


def take_wake() -> bool:
    """Whether the current transaction still has to NOTIFY the relay (PostgreSQL; never on SQLite), recording that
    it now will: a raw statement that writes outbox rows sends `WAKE_SQL` within itself when this says so."""
    connection = connections.get("default")  # the transaction's own connection inside `in_transaction()`
    if connection.capabilities.dialect != "postgres":
        return False
    # asyncpg's current top-level transaction (private, hence getattr: without it every event notifies)
    raw = getattr(connection, "_connection", None)
    top = getattr(raw, "_top_xact", None)
    if top is not None:
        if _notified.get(id(raw)) is top:
            return False
        if len(_notified) > 1000:
            _notified.clear()
        _notified[id(raw)] = top
    return True


def envelope(event: OutboxEvent) -> JsonObject:
    """The whole event, for consumers that need more than one payload value (the webhook fan-out)."""
    return {
        "outbox_id": event.id,
        "topic": event.topic,
        "customer_id": event.customer_id,
        "partner_id": event.partner_id,
        "payload": event.payload,
        "created_at": event.created_at.isoformat(),
    }


async def pending(limit: int = 200) -> list[OutboxEvent]:
    """Unpublished events in commit order... of ids: a relay must run alone to keep per-customer order."""
    if raw_sql():  # the relay drains after every money call: one prepared statement, rows built without the ORM
        rows = await connections.get("default").execute_query_dict(_pending_sql(), [limit])
        return [from_row(OutboxEvent, row) for row in rows]
    return await OutboxEvent.filter(published_at=None).order_by("id").limit(limit)


@cache
def _pending_sql() -> str:
    return f"SELECT {columns(OutboxEvent, 'o')} FROM outbox_event o WHERE o.published_at IS NULL ORDER BY o.id LIMIT $1"


async def mark_published(ids: list[int]) -> None:
    if not ids:
        return
    if raw_sql():  # one statement text whatever the count (`id IN (…)` prepared and planned one per count)
        await connections.get("default").execute_query(
            "UPDATE outbox_event SET published_at = $1 WHERE id = ANY($2::bigint[])", [datetime.now(UTC), ids]
        )
        return
    await OutboxEvent.filter(id__in=ids).update(published_at=datetime.now(UTC))


async def purge_published(before: datetime) -> int:
    return await OutboxEvent.filter(published_at__lt=before).delete()
