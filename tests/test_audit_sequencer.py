"""The audit sequencer: writers append events without touching their chain head; the sequencer links committed
events into each partner's chain after commit, and the chain it builds is as tamper-evident as before."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from tortoise import connections

from domain.audit.models import AuditChain, AuditEvent, AuditEventType
from domain.audit.sequencer import sequence_chain, sequence_pending
from domain.audit.services import GENESIS, backlog, event_hash, record, record_standalone
from domain.viewer import Viewer
from server.locks import Leases
from server.sequencer import AuditSequencer
from tests.conftest import run_cli


def partner_viewer(partner_id: int) -> Viewer:
    return Viewer.system(f"partner {partner_id} tests")


async def write(partner_id: int, n: int) -> None:
    for i in range(n):
        await record_standalone(
            partner_viewer(partner_id), AuditEventType.DATA_CHANGE, "test.write", partner_id=partner_id, object_id=i
        )


def verify(*extra: str) -> tuple[int, str]:
    result = run_cli("audit", "verify", *extra, check=False)
    return result.returncode, result.stdout + result.stderr


async def test_writers_append_without_a_place_in_the_chain_until_sequenced(database: str) -> None:
    # given
    await write(7, 3)
    # when nothing sequenced them yet
    pending = await AuditEvent.filter(chain="partner:7").order_by("id")
    # then
    assert [(e.seq, e.prev_hash, e.hash) for e in pending] == [(None, None, None)] * 3
    assert (await backlog()).events == 3
    assert not await AuditChain.filter(key="partner:7").exists()
    # and once sequenced
    assert await sequence_pending() == 3
    events = await AuditEvent.filter(chain="partner:7").order_by("seq")
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert all(e.hash == event_hash(e) for e in events)
    head = await AuditChain.get(key="partner:7")
    assert (head.seq, head.last_hash) == (3, events[-1].hash)
    assert (await backlog()).events == 0


async def test_verify_reports_the_backlog_and_a_stalled_sequencer(database: str) -> None:
    # given one sequenced event and two waiting
    await write(8, 1)
    await sequence_pending()
    await write(8, 2)
    # when
    code, output = verify()
    stalled_code, stalled = verify("--max-backlog-seconds", "0")
    # then
    assert code == 0, output
    assert "BACKLOG: 2 event(s) not sequenced yet" in output
    assert "1 audit events checked, 0 problem(s)" in output
    assert stalled_code == 1
    assert "STALLED: 2 event(s) not sequenced yet" in stalled


@pytest.mark.postgres
async def test_concurrent_writers_and_sequencers_build_one_unbroken_chain(database: str) -> None:
    # given 8 writers of one partner and 3 sequencers running at the same time
    async def sequencers() -> None:
        for _ in range(20):
            await asyncio.gather(
                sequence_chain("partner:9", batch=7), sequence_chain("partner:9", batch=7), sequence_pending()
            )

    # when
    await asyncio.gather(*(write(9, 10) for _ in range(8)), sequencers())
    await sequence_pending()
    # then every event is linked exactly once, in one chain without gaps
    seqs = [e.seq for e in await AuditEvent.filter(chain="partner:9").order_by("seq")]
    assert seqs == list(range(1, 81))
    code, output = verify()
    assert code == 0, output
    assert "80 audit events checked, 0 problem(s)" in output


async def _sequenced_chain(partner_id: int, n: int = 4) -> list[AuditEvent]:
    await write(partner_id, n)
    await sequence_pending()
    return await AuditEvent.filter(chain=f"partner:{partner_id}").order_by("seq")


async def sql(statement: str) -> None:
    await connections.get("default").execute_script(statement)


async def test_a_chain_built_by_the_sequencer_names_an_edited_event(database: str) -> None:
    # given
    events = await _sequenced_chain(10)
    # when
    await sql(f"UPDATE audit_event SET action = 'test.other' WHERE id = {events[1].id}")
    code, output = verify()
    # then
    assert code == 1
    assert "TAMPERED chain=partner:10 seq=2: event content does not match its hash (edited)" in output


async def test_a_chain_built_by_the_sequencer_names_a_deleted_event(database: str) -> None:
    # given
    events = await _sequenced_chain(11)
    # when
    await sql(f"DELETE FROM audit_event WHERE id = {events[1].id}")
    code, output = verify()
    # then
    assert code == 1
    assert "TAMPERED chain=partner:11 seq=2: events 2..2 are missing" in output


async def test_a_chain_built_by_the_sequencer_names_an_inserted_event(database: str) -> None:
    # given a forged event slipped in at position 2, the later events moved up to make room for it
    events = await _sequenced_chain(12)
    for e in reversed(events[1:]):
        await AuditEvent.filter(id=e.id).update(seq=e.seq + 1)  # type: ignore[operator]
    forged = AuditEvent(
        chain="partner:12",
        seq=2,
        type=AuditEventType.DATA_CHANGE,
        action="test.forged",
        partner_id=12,
        object_id="x",
        details={},
        request_id="",
        created_at=events[1].created_at,
        personal_digest=events[1].personal_digest,
        prev_hash=events[0].hash,
    )
    forged.hash = event_hash(forged)
    await forged.save()
    # when
    code, output = verify()
    # then the event after it no longer links to its predecessor, and the head no longer matches
    assert code == 1
    assert "TAMPERED chain=partner:12 seq=3: link to the previous event is broken" in output
    assert "newest events were deleted or the head was edited" in output


async def test_the_background_sequencer_links_committed_events(database: str) -> None:
    # given an API process's sequencer
    sequencer = AuditSequencer(Leases(None, "pd-test-sequencer"), interval=0.05)
    sequencer.start()
    try:
        # when an event commits
        event = await record_standalone(Viewer.system("tests"), AuditEventType.SECURITY, "test.live", partner_id=13)
        # then the sequencer links it without anyone asking
        for _ in range(500):
            if (await AuditEvent.get(id=event.id)).seq is not None:
                break
            await asyncio.sleep(0.02)
    finally:
        await sequencer.stop()
    assert (await AuditEvent.get(id=event.id)).seq == 1


async def test_a_rolled_back_event_is_never_sequenced(database: str) -> None:
    # given
    from tortoise.transactions import in_transaction

    class Boom(Exception):
        pass

    # when
    with pytest.raises(Boom):
        async with in_transaction():
            await record(Viewer.system("tests"), AuditEventType.SECURITY, "test.rolled_back", partner_id=14)
            raise Boom
    await write(14, 1)
    await sequence_pending()
    # then
    events = await AuditEvent.filter(chain="partner:14")
    assert [(e.action, e.seq) for e in events] == [("test.write", 1)]
