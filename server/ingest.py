"""`POST /v1/usage/events` (the metering pipeline's bulk endpoint, Stripe meter events / OpenMeter style) and
`POST /v1/contacts/healed` (self-healed contacts from the dialer and enrichment), one shape for both.

A JSON array of the same events as `usageRecord` (plain `application/json`, or a CloudEvents batch
`application/cloudevents-batch+json` whose `data` holds the event, `id` the idempotency key, `time` the occurrence
and `subject` the customer id). Same bearer tokens as /graphql and the same domain service. Answers 200
`{accepted, duplicates, rejected: [{index, code, message, field}]}`; 400 malformed; 413 over 1,000 events or 1 MB.
Every answer is JSON: a failure nobody foresaw is logged with the request id and answers 500 with that id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from domain.access.policy import OperationKind, machine_refusal
from domain.errors import DomainError, ErrorCode
from domain.reports.commands import ContactsHealedRecord, HealedContactIn
from domain.reports.healed import contacts_healed_record
from domain.usage.commands import EventIds, UsageEventIn, UsageRecord
from domain.usage.rules import MAX_BATCH
from domain.usage.services import RecordResult, usage_record
from domain.viewer import Viewer
from schema.extensions import INTERNAL_ERROR_CODE
from server.auth import InvalidToken, bearer_token, viewer_from_token
from server.logging import log, new_request_id
from server.ratelimit import ApiRateLimiter, RateLimited, remember

MAX_BYTES = 1_000_000
_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="string")


def _error(status: int, message: str, code: str, request_id: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "code": code, "requestId": request_id}}
    return Response(_encoder.encode(body), status_code=status, media_type="application/json", headers=headers)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BYTES (whatever Content-Length claims)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _from_cloudevent(item: dict[str, Any]) -> dict[str, Any]:
    data = item.get("data")
    event = dict(data) if isinstance(data, dict) else {}
    event.setdefault("idempotencyKey", item.get("id"))
    event.setdefault("occurredAt", item.get("time"))
    if item.get("subject") is not None:
        event.setdefault("customerId", item.get("subject"))
    return event


# `_to_event` builds the struct positionally, in this order
_EVENT_ORDER = (
    "idempotency_key customer_id unit_type quantity occurred_at case_type hold_id metadata malformed direction "
    "from_number to_number duration_seconds segments campaign_id call_id"
).split()
assert list(UsageEventIn.__struct_fields__) == _EVENT_ORDER


def _to_event(item: object, ids: EventIds) -> UsageEventIn:
    """One JSON item as the service's event, as `usageRecord` builds them from its input; anything not an object
    becomes an event that fails validation."""
    if not isinstance(item, dict):
        return UsageEventIn(None, None, None, None, None, malformed=True)
    event = _from_cloudevent(item) if "specversion" in item else item
    get = event.get
    return UsageEventIn(  # positionally, in the struct's field order: a quarter of the cost of keywords
        get("idempotencyKey"),
        ids.customer(get("customerId")),
        get("unitType"),
        get("quantity"),
        get("occurredAt"),
        get("caseType"),
        ids.hold(get("holdId")),
        get("metadata"),
        False,
        get("direction"),
        get("fromNumber"),
        get("toNumber"),
        get("durationSeconds"),
        get("segments"),
        ids.campaign(get("campaignId")),
        get("callId"),
    )


def _to_contact(item: object, ids: EventIds) -> HealedContactIn:
    """One JSON item as a self-healed contact; anything not an object fails validation alone."""
    if not isinstance(item, dict):
        return HealedContactIn(None, None, None, None, malformed=True)
    return HealedContactIn(
        customer_id=ids.customer(item.get("customerId")),
        external_id=item.get("externalId"),
        new_number=item.get("newNumber"),
        confirmed_at=item.get("confirmedAt"),
        old_number=item.get("oldNumber"),
        enriched_at=item.get("enrichedAt"),
        call_id=item.get("callId"),
        wrong_number=item.get("wrongNumber"),
    )


Record = Callable[[Viewer, list[object]], Awaitable[RecordResult]]


async def _record_usage(viewer: Viewer, items: list[object]) -> RecordResult:
    ids = EventIds()
    return await usage_record(viewer, UsageRecord([_to_event(item, ids) for item in items], "ingest"))


async def _record_contacts(viewer: Viewer, items: list[object]) -> RecordResult:
    ids = EventIds()
    contacts = [_to_contact(item, ids) for item in items]
    return await contacts_healed_record(viewer, ContactsHealedRecord(contacts, "ingest"))


async def usage_events_endpoint(request: Request) -> Response:
    return await _endpoint(request, "usageRecord", _record_usage)


async def contacts_healed_endpoint(request: Request) -> Response:
    return await _endpoint(request, "contactsHealedRecord", _record_contacts)


async def _endpoint(request: Request, mutation: str, record: Record) -> Response:
    request_id = request.scope.get("state", {}).get("request_id") or new_request_id()
    try:
        return await _ingest(request, request_id, mutation, record)
    except Exception:
        log.exception("ingestion failed", request_id=request_id, endpoint=request.url.path)
        return _error(500, "Unexpected error.", INTERNAL_ERROR_CODE, request_id)


async def _ingest(request: Request, request_id: str, mutation: str, record: Record) -> Response:
    try:
        base = Viewer.anonymous(
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
            request_id=request_id,
        )
        viewer = await viewer_from_token(bearer_token(request.headers), base)
    except InvalidToken as exc:
        return _error(401, str(exc), str(ErrorCode.UNAUTHENTICATED), request_id, {"WWW-Authenticate": "Bearer"})
    if not viewer.is_authenticated:
        return _error(
            401,
            "Send `Authorization: Bearer <token>`.",
            str(ErrorCode.UNAUTHENTICATED),
            request_id,
            {"WWW-Authenticate": "Bearer"},
        )
    limiter: ApiRateLimiter = request.app.state.rate_limiter
    try:
        remember(request.scope, await limiter.check(viewer))
    except RateLimited as exc:
        remember(request.scope, exc.state)
        return _error(429, str(exc), str(ErrorCode.RATE_LIMITED), request_id, {"Retry-After": str(exc.retry_after)})
    # the endpoint stands for its mutation: the same permission rule applies to machine tokens
    refusal = machine_refusal(viewer, OperationKind.MUTATION, mutation)
    if refusal:
        return _error(403, refusal, str(ErrorCode.FORBIDDEN), request_id)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "application/cloudevents-batch+json"):
        return _error(
            415,
            "Send application/json or application/cloudevents-batch+json.",
            str(ErrorCode.UNSUPPORTED_MEDIA_TYPE),
            request_id,
        )
    body = await _read_body(request)
    if body is None:
        return _error(413, f"The body is over {MAX_BYTES:,} bytes.", str(ErrorCode.PAYLOAD_TOO_LARGE), request_id)
    try:
        items = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        return _error(400, f"Malformed JSON: {exc}.", str(ErrorCode.MALFORMED), request_id)
    except RecursionError:  # msgspec gives up around 1,000 levels of nesting
        return _error(400, "Malformed JSON: nested too deeply.", str(ErrorCode.MALFORMED), request_id)
    if not isinstance(items, list):
        return _error(400, "The body must be a JSON array.", str(ErrorCode.MALFORMED), request_id)
    if len(items) > MAX_BATCH:
        return _error(413, f"At most {MAX_BATCH:,} items per request.", str(ErrorCode.PAYLOAD_TOO_LARGE), request_id)
    try:
        result = await record(viewer, items)
    except DomainError as exc:
        first = exc.errors[0]
        status = 403 if first.code == ErrorCode.FORBIDDEN else 400
        return _error(status, first.message, str(first.code), request_id)
    return Response(
        _encoder.encode(
            {
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": [
                    {"index": r.index, "code": str(r.code), "message": r.message, "field": r.field}
                    for r in result.rejected
                ],
            }
        ),
        media_type="application/json",
    )
