"""Idempotency keys for every money mutation (Lago's pattern with TigerBeetle's "an outcome never flips").

The record is inserted in the same transaction as the effect. A concurrent request with the same key blocks on
the unique index until the first commits (PostgreSQL), then replays the stored outcome; if the first rolled back
it proceeds as the first. A business-rule failure is stored too and replayed; invalid input never reaches here.

`money_mutation` is the skeleton every money mutation runs in: its effect (lock, post, audit, emit) runs once per
key, and every call returns the row the first one produced, or raises its refusal.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar, cast

from tortoise.models import Model
from tortoise.transactions import in_transaction

from domain.common.json import JsonObject, JsonValue
from domain.errors import DomainError, ErrorCode, FieldError
from domain.ledger.models import IdempotencyRecord, IdempotencyStatus, Transfer
from domain.viewer import Viewer

Row = TypeVar("Row", bound=Model)

RETENTION = timedelta(days=45)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(key: object, field: str = "idempotency_key") -> str:
    """Printable ASCII without spaces, 1-255 characters (UUIDs, ULIDs and the like)."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise DomainError.single(ErrorCode.INVALID, "Use 1-255 printable ASCII characters without spaces.", field)
    return key


def scope_of(viewer: Viewer) -> str:
    """Keys are private to the caller's organization (or API key), so tenants never collide."""
    if viewer.api_key_id is not None:
        return f"key{viewer.api_key_id}"
    if viewer.customer_id is not None:
        return f"c{viewer.customer_id}"
    if viewer.partner_id is not None:
        return f"p{viewer.partner_id}"
    return "platform" if viewer.is_platform_admin else f"u{viewer.user_id}"


def request_hash(operation: str, request: Mapping[str, JsonValue]) -> str:
    body = json.dumps({"op": operation, "req": request}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


Response = JsonObject


async def run_idempotent(
    viewer: Viewer,
    operation: str,
    key: str,
    request: Mapping[str, JsonValue],
    perform: Callable[[], Awaitable[Response]],
) -> Response:
    """Runs `perform` once per (scope, key); later calls return the stored response or raise the stored failure.

    `perform` runs inside the transaction (in a savepoint) and returns a JSON-able response.
    """
    scope_key = f"{scope_of(viewer)}:{operation}:{key}"
    digest = request_hash(operation, request)
    claim = uuid.uuid4().hex
    now = datetime.now(UTC)
    failure: DomainError | None = None
    async with in_transaction():
        await IdempotencyRecord.bulk_create(
            [
                IdempotencyRecord(
                    scope_key=scope_key,
                    operation=operation,
                    request_hash=digest,
                    claim=claim,
                    status=IdempotencyStatus.PENDING,
                    response={},
                    expires_at=now + RETENTION,
                )
            ],
            ignore_conflicts=True,
        )
        record = await IdempotencyRecord.select_for_update().get(scope_key=scope_key)
        if record.claim == claim:
            try:
                async with in_transaction():  # a savepoint: a refused effect leaves no trace but its record
                    record.response = await perform()
                record.status = IdempotencyStatus.SUCCEEDED
            except DomainError as exc:
                failure = exc
                record.status = IdempotencyStatus.FAILED
                record.response = {"errors": [[e.field, e.message, str(e.code)] for e in exc.errors]}
            await record.save(update_fields=["status", "response"])
    # raised only after commit, so a stored failure is kept
    if failure is not None:
        raise failure
    return _replay(record, digest)


def _replay(record: IdempotencyRecord, digest: str) -> Response:
    if record.request_hash != digest:
        raise DomainError.single(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This idempotency key was used with a different request.",
            "idempotency_key",
        )
    if record.status == IdempotencyStatus.PENDING:
        raise DomainError.single(
            ErrorCode.IDEMPOTENCY_KEY_IN_USE, "A request with this idempotency key is still running.", "idempotency_key"
        )
    if record.status == IdempotencyStatus.FAILED:
        stored = cast(list[tuple[str | None, str, str]], record.response["errors"])  # as written on refusal above
        raise DomainError([FieldError(f, m, ErrorCode(c)) for f, m, c in stored])
    return record.response


@dataclass(frozen=True, slots=True)
class Kept(Generic[Row]):
    """How a money mutation's outcome is kept in its idempotency record: the id of the row it produced, under
    `field` (`{"transfer_id": 7}`: the shape records have always had, so outcomes stored before an upgrade replay)."""

    field: str
    model: type[Row]


TRANSFER = Kept("transfer_id", Transfer)


async def money_mutation(
    viewer: Viewer,
    operation: str,
    key: str,
    request: Mapping[str, JsonValue],
    perform: Callable[[], Awaitable[Row]],
    kept: Kept[Row],
) -> Row:
    """The skeleton of a money mutation: claims `key` for `request`, runs `perform` (which locks, posts, audits and
    emits) once inside the transaction, and returns the row it produced. A repeat with the same key and request
    returns that row (read again) or raises the first refusal; `run_idempotent` says what else a repeat may get.

    Validate the input and check the key (`check_key`) before: invalid input is refused, never stored."""
    produced: list[Row] = []

    async def run() -> Response:
        row = await perform()
        produced.append(row)
        return {kept.field: row.pk}

    response = await run_idempotent(viewer, operation, key, request, run)
    # The row as created holds what a read returns (Tortoise converts each value as a read does: 5 is 5.000000), so
    # only a repeat reads it.
    return produced[0] if produced else await kept.model.get(pk=response[kept.field])


async def purge_expired(now: datetime | None = None) -> int:
    return await IdempotencyRecord.filter(expires_at__lt=now or datetime.now(UTC)).delete()
