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

from tortoise import connections
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
    *,
    savepoint: bool = True,
) -> Response:
    """Runs `perform` once per (scope, key); later calls return the stored response or raise the stored failure.

    `perform` runs inside the transaction and returns a JSON-able response. It runs in a savepoint, so that a
    refusal leaves no trace but the stored failure; `savepoint=False` saves the two round trips for an effect that
    writes nothing a refusal would have to undo.
    """
    scope_key = scoped_key(viewer, operation, key)
    digest = request_hash(operation, request)
    now = datetime.now(UTC)
    failure: DomainError | None = None
    async with in_transaction():
        claimed = await _claim(scope_key, operation, digest, now)
        if claimed is None:  # another request holds or held the key: wait for it, then replay its outcome
            return await replay(scope_key, digest)  # commits nothing but the lock
        status, response = IdempotencyStatus.SUCCEEDED, {}
        try:
            if savepoint:
                async with in_transaction():  # a savepoint: a refused effect leaves no trace but its record
                    response = await perform()
            else:
                response = await perform()
        except DomainError as exc:
            failure = exc
            status = IdempotencyStatus.FAILED
            response = stored_failure(exc)
        await IdempotencyRecord.filter(id=claimed).update(status=status, response=response)
    # raised only after commit, so a stored failure is kept
    if failure is not None:
        raise failure
    return response


def scoped_key(viewer: Viewer, operation: str, key: str) -> str:
    """The record's unique key: the caller's scope, the operation and the key the client sent."""
    return f"{scope_of(viewer)}:{operation}:{key}"


# The record's columns as a claim inserts them (then `response` = '{}'), for raw statements that claim a key
# together with their first writes (usageAuthorize on PostgreSQL): `ON CONFLICT (scope_key) DO NOTHING RETURNING id`.
CLAIM_COLUMNS = "scope_key, operation, request_hash, claim, status, created_at, expires_at, response"


def claim_values(scope_key: str, operation: str, digest: str, now: datetime, *, postgres: bool) -> list[object]:
    """The values of `CLAIM_COLUMNS` but `response`, in order."""
    return [
        scope_key,
        operation,
        digest,
        uuid.uuid4().hex,
        str(IdempotencyStatus.PENDING),
        now if postgres else str(now.astimezone(UTC)),  # SQLite: the text form Tortoise writes
        now + RETENTION if postgres else str((now + RETENTION).astimezone(UTC)),
    ]


async def _claim(scope_key: str, operation: str, digest: str, now: datetime) -> int | None:
    """Inserts the PENDING record; its id when this request is the first with the key, None when it is not (the
    unique index makes a concurrent claimant wait here until the first commits or rolls back)."""
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    marks = [f"${n}" if postgres else "?" for n in range(1, 8)]
    rows = await connection.execute_query_dict(
        f"INSERT INTO idempotency_record ({CLAIM_COLUMNS}) "
        f"VALUES ({', '.join(marks)}, '{{}}') ON CONFLICT (scope_key) DO NOTHING RETURNING id",
        claim_values(scope_key, operation, digest, now, postgres=postgres),
    )
    return int(rows[0]["id"]) if rows else None


async def replay(scope_key: str, digest: str) -> Response:
    """The outcome of the request that claimed `scope_key` first, once it has committed (this waits on its row);
    raises its refusal, IDEMPOTENCY_KEY_REUSED for another request, IDEMPOTENCY_KEY_IN_USE while it runs."""
    record = await IdempotencyRecord.select_for_update().get(scope_key=scope_key)
    return _replay(record, digest)


async def refuse(claimed: int, exc: DomainError) -> None:
    """Keeps a refusal as the outcome of the key this request claimed (for raw paths that claim a key with their
    first statement); raise it after commit, as `run_idempotent` does."""
    await IdempotencyRecord.filter(id=claimed).update(status=IdempotencyStatus.FAILED, response=stored_failure(exc))


def stored_failure(exc: DomainError) -> Response:
    """How a refusal is kept in the record (and replayed by `_replay`)."""
    return {"errors": [[e.field, e.message, str(e.code)] for e in exc.errors]}


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
    *,
    savepoint: bool = True,
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

    response = await run_idempotent(viewer, operation, key, request, run, savepoint=savepoint)
    # The row as created holds what a read returns (Tortoise converts each value as a read does: 5 is 5.000000), so
    # only a repeat reads it.
    return produced[0] if produced else await kept.model.get(pk=response[kept.field])


async def purge_expired(now: datetime | None = None) -> int:
    return await IdempotencyRecord.filter(expires_at__lt=now or datetime.now(UTC)).delete()
