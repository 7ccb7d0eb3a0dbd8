"""Producing webhook messages from the outbox and delivering them: fair, at least once, with backoff.

- `fan_out` (a job, after commit): the message an outbox event becomes (once per `dedupe_key`) and one delivery per
  enabled endpoint subscribed to its type, in one transaction.
- `dispatch`: hands an endpoint's due deliveries to the workers, at most `WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT` in
  flight per endpoint, counted under the endpoint's row lock, through the outbox (`webhook_delivery.requested`).
  A slow or failing endpoint therefore holds at most that many worker slots, and another tenant's deliveries never
  queue behind its backlog: the backlog waits in the database, not in the broker's queue.
- `attempt` (a job): claims the delivery (SENDING, with a lease), sends it outside any transaction, records the
  outcome, and hands the freed slot to the endpoint's next due delivery. A failure is retried after `RETRY_DELAYS`
  (about 24 hours in all, each delay ±10%, or later when a 429/503 asks for it with `Retry-After`), then FAILED.
  Every attempt is an INTEGRATION audit event.
- `sweep` (scheduled): dispatches what fell due (retries) and what was lost (a job message that never ran, a worker
  killed mid-request: its lease runs out and the delivery is sent again, under the same `webhook-id`).

An endpoint failing without a success for `FAILING_DISABLES_AFTER` is disabled and its owner emailed.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.common.json import JsonObject
from domain.config import config
from domain.events import services as events
from domain.features.services import toggles_of
from domain.viewer import Viewer
from domain.webhooks import catalog, sender
from domain.webhooks.models import (
    DeliveryState,
    EndpointStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)

SYSTEM = Viewer.system("webhooks")
# after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 8 h, 8 h (≈ 23.6 h), then FAILED
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=8),
    timedelta(hours=8),
)
RETRY_JITTER = 0.1  # each delay ±10%, so deliveries that failed together (a receiver's outage) do not retry together
LONGEST_RETRY_AFTER = RETRY_DELAYS[-1]  # a receiver's `Retry-After` is honoured up to this
FAILING_DISABLES_AFTER = timedelta(days=3)
DISPATCH_GRACE = timedelta(minutes=5)  # a dispatched job not started by then is taken for lost
LEASE_MARGIN = timedelta(seconds=30)  # beyond the request timeout, before an attempt is taken for dead
IN_FLIGHT = (DeliveryState.DISPATCHED, DeliveryState.SENDING)
# the API's delivery status → the states it covers
STATES_OF: dict[str, list[DeliveryState]] = {
    "PENDING": [DeliveryState.WAITING, *IN_FLIGHT],
    "SUCCEEDED": [DeliveryState.SUCCEEDED],
    "FAILED": [DeliveryState.FAILED],
}


def api_status(state: str) -> str:
    return next(status for status, states in STATES_OF.items() if state in states)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# ---------------------------------------------------------------- fan-out


def envelope_of(event: JsonObject) -> catalog.OutboxEnvelope:
    """The outbox event as `domain.events.services.envelope` wrote it."""
    payload = event["payload"]
    return catalog.OutboxEnvelope(
        outbox_id=int(str(event["outbox_id"])),
        topic=str(event["topic"]),
        customer_id=None if event["customer_id"] is None else int(str(event["customer_id"])),
        partner_id=None if event["partner_id"] is None else int(str(event["partner_id"])),
        payload=payload if isinstance(payload, dict) else {},
        created_at=datetime.fromisoformat(str(event["created_at"])),
    )


async def _subscribed(built: catalog.Built, partner_id: int, customer_id: int | None) -> list[WebhookEndpoint]:
    endpoints = await WebhookEndpoint.filter(
        Q(customer_id=None) | Q(customer_id=customer_id), partner_id=partner_id, status=EndpointStatus.ENABLED
    ).filter(deleted_at=None)
    chosen = [e for e in endpoints if built.event_type in e.event_types]
    if customer_id is not None and any(e.customer_id is not None for e in chosen):
        # a customer's own endpoints receive only while it keeps the API Access add-on
        if not (await toggles_of([customer_id]))[customer_id].api_access:
            chosen = [e for e in chosen if e.customer_id is None]
    return chosen


async def fan_out(envelope: catalog.OutboxEnvelope, now: datetime | None = None) -> int:
    """The message of an outbox event and its deliveries (once, however often the event arrives); returns how many
    deliveries it created."""
    built = await catalog.build(envelope)
    if built is None or envelope.partner_id is None:
        return 0
    endpoints = await _subscribed(built, envelope.partner_id, envelope.customer_id)
    if not endpoints:
        return 0
    moment = _now(now)
    body = msgspec.json.encode(
        {"type": built.event_type, "timestamp": envelope.created_at.isoformat(), "data": built.data}
    ).decode()
    async with in_transaction():
        await WebhookMessage.bulk_create(
            [
                WebhookMessage(
                    msg_id=f"msg_{uuid.uuid4().hex}",
                    dedupe_key=built.dedupe_key,
                    event_type=built.event_type,
                    partner_id=envelope.partner_id,
                    customer_id=envelope.customer_id,
                    body=body,
                    created_at=envelope.created_at,
                )
            ],
            ignore_conflicts=True,
        )
        message = await WebhookMessage.get(dedupe_key=built.dedupe_key)
        existing = set(await WebhookDelivery.filter(message_id=message.id).values_list("endpoint_id", flat=True))
        fresh = [e for e in endpoints if e.id not in existing]
        await WebhookDelivery.bulk_create(
            [
                WebhookDelivery(
                    endpoint_id=e.id,
                    message_id=message.id,
                    partner_id=message.partner_id,
                    customer_id=message.customer_id,
                    event_type=message.event_type,
                    next_attempt_at=moment,
                    schedule_started_at=moment,
                )
                for e in fresh
            ],
            ignore_conflicts=True,
        )
        for endpoint in sorted(fresh, key=lambda e: e.id):
            await dispatch(endpoint.id, moment)
    return len(fresh)


# ---------------------------------------------------------------- dispatch


def _due(moment: datetime) -> Q:
    """Deliveries to hand to a worker now: waiting and due, or in flight past their lease (lost or dead)."""
    return Q(next_attempt_at__lte=moment) & (
        Q(state=DeliveryState.WAITING) | Q(state__in=IN_FLIGHT, busy_until__lte=moment)
    )


async def dispatch(endpoint_id: int, now: datetime | None = None) -> int:
    """Sends jobs for the endpoint's due deliveries while it has free slots (inside a transaction: the endpoint's
    row is locked while its deliveries in flight are counted). Returns how many it sent."""
    moment = _now(now)
    async with in_transaction():
        endpoint = await WebhookEndpoint.select_for_update().get_or_none(id=endpoint_id)
        if endpoint is None or endpoint.status != EndpointStatus.ENABLED or endpoint.deleted_at is not None:
            return 0
        busy = await WebhookDelivery.filter(endpoint_id=endpoint.id, state__in=IN_FLIGHT, busy_until__gt=moment).count()
        free = config().webhook_max_in_flight_per_endpoint - busy
        if free <= 0:
            return 0
        due = (
            await WebhookDelivery.filter(_due(moment), endpoint_id=endpoint.id)
            .order_by("next_attempt_at", "id")
            .limit(free)
        )
        if not due:
            return 0
        await WebhookDelivery.filter(id__in=[d.id for d in due]).update(
            state=DeliveryState.DISPATCHED, busy_until=moment + DISPATCH_GRACE
        )
        await events.emit_many(
            (events.WEBHOOK_DELIVERY_REQUESTED, d.customer_id, d.partner_id, {"delivery_id": d.id}) for d in due
        )
    return len(due)


async def sweep(now: datetime | None = None, limit: int = 1000) -> int:
    """Dispatches every endpoint that has due deliveries (retries that fell due, lost jobs, dead attempts)."""
    moment = _now(now)
    endpoint_ids = (
        await WebhookDelivery.filter(_due(moment)).distinct().limit(limit).values_list("endpoint_id", flat=True)
    )
    sent = 0
    for endpoint_id in sorted(set(endpoint_ids)):
        sent += await dispatch(int(endpoint_id), moment)  # type: ignore[call-overload]
    return sent


async def restart(delivery_id: int, now: datetime | None = None) -> WebhookDelivery:
    """A delivery sent again on a fresh retry schedule (inside the caller's transaction)."""
    moment = _now(now)
    row = await WebhookDelivery.select_for_update().get(id=delivery_id)
    if row.state in IN_FLIGHT and row.busy_until is not None and row.busy_until > moment:
        return row  # on its way already
    row.state, row.next_attempt_at, row.schedule_started_at = DeliveryState.WAITING, moment, moment
    row.busy_until, row.completed_at = None, None
    await row.save(update_fields=["state", "next_attempt_at", "schedule_started_at", "busy_until", "completed_at"])
    return row


# ---------------------------------------------------------------- attempts


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    message: WebhookMessage


async def _claim(delivery_id: int, moment: datetime) -> Claimed | str:
    async with in_transaction():
        row = await WebhookDelivery.select_for_update().get_or_none(id=delivery_id)
        if row is None:
            return "MISSING"
        takeover = row.state == DeliveryState.SENDING and row.busy_until is not None and row.busy_until <= moment
        if row.state != DeliveryState.DISPATCHED and not takeover:
            return str(row.state)  # done, waiting for its time, or in flight elsewhere: a duplicate job
        endpoint = await WebhookEndpoint.get(id=row.endpoint_id)
        if endpoint.status != EndpointStatus.ENABLED or endpoint.deleted_at is not None:
            row.state, row.completed_at, row.busy_until = DeliveryState.FAILED, moment, None
            row.last_error = "The endpoint is disabled." if endpoint.deleted_at is None else "The endpoint was deleted."
            await row.save(update_fields=["state", "completed_at", "busy_until", "last_error"])
            return str(row.state)
        row.state, row.attempts, row.last_attempt_at = DeliveryState.SENDING, row.attempts + 1, moment
        row.busy_until = moment + timedelta(seconds=config().webhook_timeout_seconds) + LEASE_MARGIN
        await row.save(update_fields=["state", "attempts", "last_attempt_at", "busy_until"])
        message = await WebhookMessage.get(id=row.message_id)
    return Claimed(row, endpoint, message)


def _secrets(endpoint: WebhookEndpoint, moment: datetime) -> list[str]:
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > moment:
        secrets.append(endpoint.previous_secret)
    return secrets


async def attempt(delivery_id: int, now: datetime | None = None) -> str:
    """The job: one attempt of a dispatched delivery. Returns the delivery's state afterwards (or why nothing
    was sent)."""
    moment = _now(now)
    claimed = await _claim(delivery_id, moment)
    if isinstance(claimed, str):
        return claimed
    endpoint, message = claimed.endpoint, claimed.message
    result = await sender.send(
        endpoint.url,
        message.msg_id,
        message.body,
        _secrets(endpoint, moment),
        datetime.now(UTC) if now is None else moment,
        time_limit=config().webhook_timeout_seconds,
        allow_private=config().is_dev,
    )
    return await _record(claimed, result, _now(now))


def _next_attempt(row: WebhookDelivery, moment: datetime, asked: timedelta | None = None) -> datetime | None:
    """When to try again after `row.attempts` attempts (the schedule's delay with jitter, or later if the receiver
    asked for it with `Retry-After`), or None once the schedule is spent."""
    if row.attempts > len(RETRY_DELAYS):
        return None
    delay = RETRY_DELAYS[row.attempts - 1] * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
    if asked is not None:
        delay = max(delay, min(asked, LONGEST_RETRY_AFTER))
    return moment + delay


async def _record(claimed: Claimed, result: sender.SendResult, moment: datetime) -> str:
    async with in_transaction():
        endpoint = await WebhookEndpoint.select_for_update().get(id=claimed.endpoint.id)
        row = await WebhookDelivery.select_for_update().get(id=claimed.delivery.id)
        await WebhookAttempt.create(
            delivery_id=row.id,
            attempt=claimed.delivery.attempts,
            started_at=claimed.delivery.last_attempt_at or moment,
            request_headers=result.request_headers,
            response_status=result.status,
            response_body=result.body,
            latency_ms=result.latency_ms,
            error=result.error,
        )
        current = row.state == DeliveryState.SENDING and row.attempts == claimed.delivery.attempts
        if current:
            row.response_status, row.response_body = result.status, result.body
            row.latency_ms, row.last_error, row.busy_until = result.latency_ms, result.error, None
            if result.ok:
                row.state, row.completed_at = DeliveryState.SUCCEEDED, moment
            else:
                retry_at = _next_attempt(row, moment, result.retry_after)
                if retry_at is None:
                    row.state, row.completed_at = DeliveryState.FAILED, moment
                else:
                    row.state, row.next_attempt_at = DeliveryState.WAITING, retry_at
            await row.save()
            await _endpoint_health(endpoint, result.ok, moment)
        await record(
            SYSTEM,
            AuditEventType.INTEGRATION,
            "webhook.delivery",
            object_type="WebhookDelivery",
            object_id=row.id,
            partner_id=row.partner_id,
            customer_id=row.customer_id,
            details={
                "endpoint_id": endpoint.id,
                "url": endpoint.url,
                "event_type": row.event_type,
                "webhook_id": claimed.message.msg_id,
                "attempt": claimed.delivery.attempts,
                "response_status": result.status,
                "latency_ms": result.latency_ms,
                "error": result.error or None,
                "outcome": str(row.state) if current else "superseded",
            },
        )
        await dispatch(endpoint.id, moment)
    return str(row.state)


async def _endpoint_health(endpoint: WebhookEndpoint, ok: bool, moment: datetime) -> None:
    """Success clears the failing streak; failing for FAILING_DISABLES_AFTER disables the endpoint (and tells its
    owner, through the outbox). In the attempt's transaction, the endpoint locked."""
    if ok:
        if endpoint.failing_since is not None:
            endpoint.failing_since = None
            await endpoint.save(update_fields=["failing_since", "updated_at"])
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = moment
        await endpoint.save(update_fields=["failing_since", "updated_at"])
        return
    if moment - endpoint.failing_since < FAILING_DISABLES_AFTER or endpoint.status != EndpointStatus.ENABLED:
        return
    endpoint.status = EndpointStatus.DISABLED
    endpoint.disabled_reason = f"Failing since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC."
    await endpoint.save(update_fields=["status", "disabled_reason", "updated_at"])
    await events.emit(
        events.WEBHOOK_ENDPOINT_DISABLED,
        customer_id=endpoint.customer_id,
        partner_id=endpoint.partner_id,
        endpoint_id=endpoint.id,
    )
    await record(
        SYSTEM,
        AuditEventType.INTEGRATION,
        "webhook_endpoint.disabled",
        object_type="WebhookEndpoint",
        object_id=endpoint.id,
        partner_id=endpoint.partner_id,
        customer_id=endpoint.customer_id,
        details={"url": endpoint.url, "failing_since": endpoint.failing_since.isoformat()},
    )
