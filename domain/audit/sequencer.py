"""The audit sequencer: links committed audit events into their partner's hash chain, in batches, after commit.

Writers only append events (`record()`: one INSERT, no lock), so no write of a partner waits on its chain head
inside a money transaction. Here, one chain at a time, a sequencer takes the chain head row with `FOR UPDATE SKIP
LOCKED` (a lease on that partner's chain: whoever holds it sequences the chain, a second sequencer of any process
skips it), reads the chain's unsequenced events in id order, gives each the next `seq`, the previous event's hash
and its own hash, and moves the head, all in one transaction. An event whose writer commits late (a lower id than
events already sequenced) simply gets a later `seq`: the chain records the order of integration, as Certificate
Transparency logs do.

`verify()` (domain/audit/services.py) checks the sequenced chains exactly as before and reports the backlog.
"""

from __future__ import annotations

from typing import cast

from tortoise.transactions import in_transaction

from domain.audit.models import AuditChain, AuditEvent
from domain.audit.services import GENESIS, event_hash

BATCH = 500

_LINK_PG = (
    "UPDATE audit_event SET seq = t.seq, prev_hash = t.prev_hash, hash = t.hash "
    "FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS t(id, seq, prev_hash, hash) "
    "WHERE audit_event.id = t.id AND audit_event.seq IS NULL"
)


async def pending_chains() -> list[str]:
    """The chains with events waiting to be sequenced (an index-only read of the partial index over them)."""
    keys = await AuditEvent.filter(seq=None).distinct().values_list("chain", flat=True)
    return sorted(cast("list[str]", keys))


async def _claim_head(key: str) -> AuditChain | None:
    """The chain head, locked for this transaction; None while another sequencer holds it."""
    head = await AuditChain.select_for_update(skip_locked=True).get_or_none(key=key)
    if head is None and not await AuditChain.filter(key=key).exists():
        await AuditChain.bulk_create([AuditChain(key=key, seq=0, last_hash=GENESIS)], ignore_conflicts=True)
        head = await AuditChain.select_for_update(skip_locked=True).get_or_none(key=key)
    return head


async def sequence_chain(key: str, batch: int = BATCH) -> int:
    """Links up to `batch` committed events of one chain; returns how many (0 when another sequencer holds it)."""
    async with in_transaction() as connection:
        head = await _claim_head(key)
        if head is None:
            return 0
        events = await AuditEvent.filter(chain=key, seq=None).order_by("id").limit(batch)
        if not events:
            return 0
        seq, prev = head.seq, head.last_hash
        for event in events:
            seq += 1
            event.seq, event.prev_hash = seq, prev
            event.hash = prev = event_hash(event)
        if connection.capabilities.dialect == "postgres":
            await connection.execute_query(
                _LINK_PG,
                [
                    [e.id for e in events],
                    [e.seq for e in events],
                    [e.prev_hash for e in events],
                    [e.hash for e in events],
                ],
            )
        else:
            await connection.execute_many(
                "UPDATE audit_event SET seq = ?, prev_hash = ?, hash = ? WHERE id = ? AND seq IS NULL",
                [[e.seq, e.prev_hash, e.hash, e.id] for e in events],
            )
        await AuditChain.filter(key=key).update(seq=seq, last_hash=prev)
        return len(events)


async def sequence_pending(batch: int = BATCH) -> int:
    """Sequences every chain's backlog (as far as no other sequencer holds a chain); returns the events linked."""
    linked = 0
    for key in await pending_chains():
        while True:
            done = await sequence_chain(key, batch)
            linked += done
            if done < batch:
                break
    return linked
