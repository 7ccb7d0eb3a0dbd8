"""Writing and verifying the audit log, and which part of an event's details belongs to its customer.

`record()` must run inside the caller's transaction so the event commits or rolls back with the change it
describes. It only appends the event (one INSERT, no lock): the sequencer (`domain/audit/sequencer.py`) links
committed events into their chain (one per partner) right after commit, so a partner's writes never queue behind
its chain head. `verify()` re-hashes the chains and reports the events not sequenced yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack, cast

from tortoise.transactions import in_transaction

from domain.audit.models import AuditChain, AuditEvent, AuditEventType
from domain.common.json import JsonLike, JsonMapping, JsonObject, JsonValue, to_json
from domain.viewer import Viewer

GENESIS = "0" * 64
SECRET_MARKERS = ("password", "secret", "token", "totp", "hash")
# Detail keys that describe the partner (or the platform) rather than the customer an event is about: the partner's
# pool, revenue and funding balances, and a package's restricted emails (other clients' addresses). Matched like
# SECRET_MARKERS, by substring at any depth, so a later `pool_available` or `revenue_after` stays partner-only too.
PARTNER_ONLY_MARKERS = ("pool", "revenue", "funding", "restricted_emails")


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _is_secret(key: object) -> bool:
    return any(m in str(key).lower() for m in SECRET_MARKERS)


def _drop_secrets(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: _drop_secrets(v) for k, v in value.items() if not _is_secret(k)}
    if isinstance(value, list | tuple):
        return [_drop_secrets(v) for v in value]
    return value


def scrub(details: JsonMapping) -> JsonObject:
    """Drops anything that looks like a secret, at any depth, and makes the rest plain JSON."""
    return json.loads(_canonical(_drop_secrets(details)))


def _is_partner_only(key: object) -> bool:
    return any(m in str(key).lower() for m in PARTNER_ONLY_MARKERS)


def customer_part(details: JsonValue) -> JsonValue:
    """The part of an event's details a customer's own users may read: everything but the partner-only keys, at
    any depth. Decided when read, from the key names, so events recorded before the split (and their hashes) stay
    as they are."""
    if isinstance(details, Mapping):
        return {k: customer_part(v) for k, v in details.items() if not _is_partner_only(k)}
    if isinstance(details, list | tuple):
        return [customer_part(v) for v in details]
    return details


def changes(before: JsonMapping, after: JsonMapping) -> dict[str, dict[str, JsonLike]]:
    """`{field: {before, after}}` for the fields whose value differs."""
    return {
        k: {"before": before.get(k), "after": after.get(k)}
        for k in after
        if before.get(k) != after.get(k) and not _is_secret(k)
    }


def personal_digest(label: str | None, ip: str | None, user_agent: str | None, details: JsonValue = None) -> str:
    """Digest of everything retention may erase: who (label), from where (IP, agent) and the details, which can
    hold names and addresses. The chain hashes this digest, so erasing them keeps the chain verifiable."""
    return _sha256(_canonical([label, ip, user_agent, details if details is not None else {}]))


def event_hash(event: AuditEvent) -> str:
    core = {
        "chain": event.chain,
        "seq": event.seq,
        "type": str(event.type),
        "action": event.action,
        "actor_user_id": event.actor_user_id,
        "actor_api_key_id": event.actor_api_key_id,
        "partner_id": event.partner_id,
        "customer_id": event.customer_id,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "request_id": event.request_id,
        "created_at": _ts(event.created_at),
        "personal_digest": event.personal_digest,
        "prev_hash": event.prev_hash,
    }
    return _sha256(_canonical(core))


class EventFields(TypedDict, total=False):
    """What a caller of `record()` may say of an event beyond its type and action (`new_event` has the defaults)."""

    object_type: str
    object_id: int | str
    details: JsonMapping | None
    partner_id: int | None
    customer_id: int | None
    actor_user_id: int | None
    actor_label: str | None


def chain_key(partner_id: int | None) -> str:
    return f"partner:{partner_id}" if partner_id else "platform"


async def record(viewer: Viewer, type: AuditEventType, action: str, **fields: Unpack[EventFields]) -> AuditEvent:
    """Appends one event for its tenant's chain (the sequencer links it after commit). Call inside the transaction
    of the change it describes."""
    event = new_event(viewer, type, action, **fields)
    await event.save()
    return event


def new_event(
    viewer: Viewer,
    type: AuditEventType,
    action: str,
    *,
    object_type: str = "",
    object_id: int | str = "",
    details: JsonMapping | None = None,
    partner_id: int | None = None,
    customer_id: int | None = None,
    actor_user_id: int | None = None,
    actor_label: str | None = None,
) -> AuditEvent:
    """The event `record()` appends, not saved yet (a raw statement may append it with `APPEND_COLUMNS`)."""
    partner_id = partner_id if partner_id is not None else viewer.partner_id
    customer_id = customer_id if customer_id is not None else viewer.customer_id
    label = actor_label if actor_label is not None else viewer.label
    event = AuditEvent(
        chain=chain_key(partner_id),
        type=type,
        action=action,
        actor_user_id=actor_user_id if actor_user_id is not None else viewer.user_id,
        actor_api_key_id=viewer.api_key_id,
        actor_label=label,
        partner_id=partner_id,
        customer_id=customer_id,
        object_type=object_type,
        object_id=str(object_id),
        details=scrub(details or {}),
        ip=viewer.ip,
        user_agent=(viewer.user_agent or "")[:300] or None,
        request_id=viewer.request_id,
        created_at=datetime.now(UTC),
        personal_digest="",
    )
    event.personal_digest = personal_digest(event.actor_label, event.ip, event.user_agent, event.details)
    return event


# The columns a writer sets (the sequencer sets seq, prev_hash and hash later; retention redacted_at), for a raw
# statement that appends an event together with other writes (the metering path on PostgreSQL).
APPEND_COLUMNS = (
    "chain",
    "type",
    "action",
    "actor_user_id",
    "actor_api_key_id",
    "actor_label",
    "partner_id",
    "customer_id",
    "object_type",
    "object_id",
    "details",
    "ip",
    "user_agent",
    "request_id",
    "created_at",
    "personal_digest",
)


def append_values(event: AuditEvent) -> list[object]:
    """`event`'s values of `APPEND_COLUMNS`, in order (details as JSON text)."""
    return [to_json(event.details) if c == "details" else _plain(getattr(event, c)) for c in APPEND_COLUMNS]


def _plain(value: object) -> object:
    return str(value) if isinstance(value, AuditEventType) else value


async def record_standalone(
    viewer: Viewer, type: AuditEventType, action: str, **fields: Unpack[EventFields]
) -> AuditEvent:
    """`record()` in a transaction of its own, for events with no other change (a failed login)."""
    async with in_transaction():
        return await record(viewer, type, action, **fields)


@dataclass(frozen=True, slots=True)
class ChainProblem:
    chain: str
    seq: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Backlog:
    """Committed events the sequencer has not linked yet: how many, and the age of the oldest."""

    events: int
    oldest: timedelta | None


async def _events_of(chain: str, batch: int = 2000) -> AsyncIterator[AuditEvent]:
    last = 0
    while True:
        rows = await AuditEvent.filter(chain=chain, seq__gt=last).order_by("seq").limit(batch)
        if not rows:
            return
        for row in rows:
            yield row
        last = cast(int, rows[-1].seq)


async def backlog(now: datetime | None = None) -> Backlog:
    """The events not sequenced yet (read through the partial index over them)."""
    pending = AuditEvent.filter(seq=None)
    count = await pending.count()
    first = await pending.order_by("id").only("id", "created_at").first() if count else None
    return Backlog(count, (now or datetime.now(UTC)) - first.created_at if first else None)


async def verify() -> tuple[int, list[ChainProblem]]:
    """Re-hashes every chain; returns (sequenced events checked, problems). Detects edits, deletions and
    insertions among the sequenced events; those not sequenced yet are `backlog()`'s."""
    problems: list[ChainProblem] = []
    checked = 0
    heads = {h.key: h for h in await AuditChain.all()}
    # a flat list of chain keys (Tortoise types it as a list of tuples)
    recorded = cast(
        "list[str]", await AuditEvent.filter(seq__not_isnull=True).distinct().values_list("chain", flat=True)
    )
    chains = set(heads) | set(recorded)
    for chain in sorted(chains):
        expected_seq, prev = 1, GENESIS
        async for event in _events_of(chain):
            seq = cast(int, event.seq)
            checked += 1
            if seq != expected_seq:
                problems.append(ChainProblem(chain, expected_seq, f"events {expected_seq}..{seq - 1} are missing"))
            if event.prev_hash != prev:
                problems.append(ChainProblem(chain, seq, "link to the previous event is broken"))
            if event_hash(event) != event.hash:
                problems.append(ChainProblem(chain, seq, "event content does not match its hash (edited)"))
            digest = personal_digest(event.actor_label, event.ip, event.user_agent, event.details)
            if event.redacted_at is None and digest != event.personal_digest:
                problems.append(ChainProblem(chain, seq, "details or personal fields were edited"))
            expected_seq, prev = seq + 1, cast(str, event.hash)
        head = heads.get(chain)
        if head is None:
            problems.append(ChainProblem(chain, None, "chain head is missing"))
        elif head.seq != expected_seq - 1 or head.last_hash != prev:
            problems.append(ChainProblem(chain, head.seq, "newest events were deleted or the head was edited"))
    return checked, problems


async def redact(customer_id: int | None = None, user_ids: list[int] | None = None) -> int:
    """Erases the personal part of a customer's (or users') events; the chain stays verifiable. In a transaction."""
    from tortoise.expressions import Q

    condition = Q(id__in=[])
    if customer_id is not None:
        condition |= Q(customer_id=customer_id)
    if user_ids:
        condition |= Q(actor_user_id__in=user_ids)
    return await AuditEvent.filter(condition, redacted_at=None).update(
        actor_label=None, ip=None, user_agent=None, details={}, redacted_at=datetime.now(UTC)
    )
