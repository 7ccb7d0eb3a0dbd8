"""The metering path's writes on PostgreSQL, as a few statements per transaction whatever the batch holds.

Each statement through Tortoise cost ~150–250 µs of client CPU and a round trip; a call (authorize, then record one
event) took ~33 of them. Here a batch's settle-and-persist (ledger moves and transfers with their balances after,
credits taken from grants, the event rows, rollups, monthly spend, outbox events, holds consumed, the API_CALL audit
event, the relay's NOTIFY) is one statement of data-modifying CTEs, and an authorization is three. The services
decide everything (`domain/usage/services.py`, `domain/usage/holds.py`, `ledger.Postings`); this module only writes
what they decided.

Row locks keep the global order of the ORM path: idempotency claims, then ledger accounts (locked beforehand, in id
order), then the customer's month of spend; the rollup, spend, grant and hold rows a batch statement touches belong
to customers whose invoice account the batch holds locked, so no two batches wait on each other for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import msgspec
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from domain.audit.models import AuditEvent
from domain.audit.services import APPEND_COLUMNS, append_values
from domain.common.json import to_json
from domain.common.rows import columns, from_row
from domain.errors import DomainError
from domain.events.services import WAKE_SQL
from domain.ledger.idempotency import CLAIM_COLUMNS, stored_failure
from domain.ledger.models import AccountKind, IdempotencyStatus, LedgerAccount
from domain.ledger.services import PlannedTransfer, lock_accounts_sql
from domain.usage.lookup import Lookup, lookup_statement, parse, reach_values
from domain.usage.models import HoldStatus, UsageHold
from domain.usage.store import (
    EVENT_COLUMNS,
    EventRow,
    RollupDetailRow,
    RollupRow,
    adding,
    event_rows_json,
    event_rows_sql,
)
from domain.viewer import Viewer

_decode = msgspec.json.decode
_exact = msgspec.json.Decoder(float_hook=Decimal).decode  # numbers as Decimals from their text


def _conn() -> BaseDBAsyncClient:
    return connections.get("default")  # the transaction's own connection inside `in_transaction()`


class _Params:
    """Numbers the parameters of a statement built once at import: `p("name", "int[]")` → `$n::int[]`."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str, cast: str) -> str:
        if name not in self.names:
            self.names.append(name)
        return f"${self.names.index(name) + 1}::{cast}"


# ---------------------------------------------------------------- a batch's settle and persist phases

_p = _Params()
_event_source, _event_values = event_rows_sql(
    _p("events", "json"),
    _p("now", "timestamptz"),
    beside=(f"unnest({_p('event_debits', 'int[]')})", "transfer_debit"),
    transfer_id="t.id",
)
_AUDIT_TYPES = {
    "chain": "text",
    "type": "text",
    "action": "text",
    "actor_user_id": "int",
    "actor_api_key_id": "int",
    "actor_label": "text",
    "partner_id": "int",
    "customer_id": "int",
    "object_type": "text",
    "object_id": "text",
    "details": "jsonb",
    "ip": "text",
    "user_agent": "text",
    "request_id": "text",
    "created_at": "timestamptz",
    "personal_digest": "text",
}
_BATCH_SQL = (
    "WITH moved AS (UPDATE ledger_account a SET balance = a.balance + d.delta "
    f"FROM unnest({_p('account_ids', 'int[]')}, {_p('deltas', 'numeric[]')}) AS d(id, delta) WHERE a.id = d.id), "
    # transfers in the order planned (ids ascend as `ledger.post` would have given them)
    "transfers AS (INSERT INTO ledger_transfer (debit_account_id, credit_account_id, amount, currency, kind, "
    "debit_balance_after, credit_balance_after, metadata, created_at) "
    "SELECT x.debit, x.credit, x.amount, x.currency, x.kind, x.debit_after, x.credit_after, x.metadata::jsonb, "
    f"{_p('written_at', 'timestamptz')} FROM unnest({_p('t_debit', 'int[]')}, {_p('t_credit', 'int[]')}, "
    f"{_p('t_amount', 'numeric[]')}, {_p('t_currency', 'text[]')}, {_p('t_kind', 'text[]')}, "
    f"{_p('t_debit_after', 'numeric[]')}, {_p('t_credit_after', 'numeric[]')}, {_p('t_metadata', 'text[]')}) "
    "WITH ORDINALITY AS x(debit, credit, amount, currency, kind, debit_after, credit_after, metadata, n) "
    "ORDER BY x.n RETURNING id, debit_account_id), "
    # each event names its transfer by the transfer's debit account (unique in a batch: a customer's payer or invoice)
    f"events AS (INSERT INTO usage_event ({', '.join(EVENT_COLUMNS)}) SELECT {_event_values} FROM {_event_source} "
    "LEFT JOIN transfers t ON t.debit_account_id = r.transfer_debit), "
    "rollups AS (INSERT INTO usage_rollup (customer_id, day, unit_type, events, quantity, cost, credits, unpaid_cost) "
    f"SELECT * FROM unnest({_p('r_customer', 'int[]')}, {_p('r_day', 'date[]')}, {_p('r_unit', 'text[]')}, "
    f"{_p('r_events', 'int[]')}, {_p('r_quantity', 'numeric[]')}, {_p('r_cost', 'numeric[]')}, "
    f"{_p('r_credits', 'numeric[]')}, {_p('r_unpaid', 'numeric[]')}) "
    f"{adding('usage_rollup', 'customer_id, day, unit_type')}), "
    "details AS (INSERT INTO usage_rollup_detail (customer_id, day, unit_type, case_type, campaign_id, events, "
    f"quantity, cost, credits, unpaid_cost) SELECT * FROM unnest({_p('d_customer', 'int[]')}, "
    f"{_p('d_day', 'date[]')}, {_p('d_unit', 'text[]')}, {_p('d_case', 'text[]')}, {_p('d_campaign', 'int[]')}, "
    f"{_p('d_events', 'int[]')}, {_p('d_quantity', 'numeric[]')}, {_p('d_cost', 'numeric[]')}, "
    f"{_p('d_credits', 'numeric[]')}, {_p('d_unpaid', 'numeric[]')}) "
    f"{adding('usage_rollup_detail', 'customer_id, day, unit_type, case_type, campaign_id')}), "
    "spend AS (INSERT INTO monthly_spend (customer_id, month, spent) "
    f"SELECT * FROM unnest({_p('s_customer', 'int[]')}, {_p('s_month', 'date[]')}, {_p('s_amount', 'numeric[]')}) "
    "ON CONFLICT (customer_id, month) DO UPDATE SET spent = monthly_spend.spent + EXCLUDED.spent "
    "RETURNING customer_id, month, spent), "
    # credits burned from each customer's live grants: earliest expiry first (none last), then oldest
    "burned AS (UPDATE credit_grant g SET remaining = g.remaining - x.take FROM ("
    "SELECT w.id, w.customer_id, LEAST(w.remaining, b.amount - (w.upto - w.remaining)) AS take FROM ("
    "SELECT id, customer_id, remaining, sum(remaining) OVER (PARTITION BY customer_id "
    "ORDER BY expires_at ASC NULLS LAST, id) AS upto FROM credit_grant "
    f"WHERE customer_id = ANY({_p('b_customer', 'int[]')}) AND remaining > 0 "
    f"AND (expires_at IS NULL OR expires_at > {_p('written_at', 'timestamptz')})) w "
    f"JOIN unnest({_p('b_customer', 'int[]')}, {_p('b_amount', 'numeric[]')}) AS b(customer_id, amount) "
    "ON b.customer_id = w.customer_id WHERE w.upto - w.remaining < b.amount) x "
    "WHERE g.id = x.id RETURNING x.customer_id, x.take), "
    "used AS (UPDATE customer_credits k SET used = k.used + b.amount "
    f"FROM unnest({_p('b_customer', 'int[]')}, {_p('b_amount', 'numeric[]')}) AS b(customer_id, amount) "
    "WHERE k.customer_id = b.customer_id), "
    "outbox AS (INSERT INTO outbox_event (topic, customer_id, partner_id, payload, created_at) "
    f"SELECT x.topic, x.customer_id, x.partner_id, x.payload::jsonb, {_p('written_at', 'timestamptz')} "
    f"FROM unnest({_p('o_topic', 'text[]')}, {_p('o_customer', 'int[]')}, {_p('o_partner', 'int[]')}, "
    f"{_p('o_payload', 'text[]')}) WITH ORDINALITY AS x(topic, customer_id, partner_id, payload, n) ORDER BY x.n), "
    f"consumed AS (UPDATE usage_hold SET status = '{HoldStatus.CONSUMED}', closed_at = {_p('now', 'timestamptz')} "
    f"WHERE id = ANY({_p('holds', 'bigint[]')}) AND status = '{HoldStatus.ACTIVE}'), "
    f"audit AS (INSERT INTO audit_event ({', '.join(APPEND_COLUMNS)}) "
    f"SELECT {', '.join(_p(f'a_{c}', _AUDIT_TYPES[c]) for c in APPEND_COLUMNS)} "
    f"WHERE {_p('a_chain', 'text')} IS NOT NULL) "
    "SELECT 's' AS k, customer_id, month, spent AS amount FROM spend "
    "UNION ALL SELECT 'g', customer_id, NULL::date, sum(take) FROM burned GROUP BY customer_id "
    f"UNION ALL SELECT 'n', NULL::int, NULL::date, NULL::numeric FROM ({WAKE_SQL} WHERE {_p('wake', 'bool')}) w"
)
_BATCH_PARAMS = tuple(_p.names)


@dataclass(slots=True)
class BatchWrite:
    """Everything a batch writes, as its services decided it."""

    transfers: Sequence[PlannedTransfer]
    deltas: dict[int, Decimal]  # account id → its move
    events: Sequence[EventRow]  # `transfer_id` unset: `event_debits` names each event's transfer
    event_debits: Sequence[int | None]  # the debit account of each event's transfer (None: free, no transfer)
    rollups: Sequence[RollupRow]
    details: Sequence[RollupDetailRow]
    spends: Sequence[tuple[int, date, Decimal]]  # (customer, month, amount), one per key
    burns: Sequence[tuple[int, Decimal]]  # credits (customer, amount) to take from the customer's live grants
    outbox: Sequence[tuple[str, int | None, int | None]]  # (topic, customer, partner), payload {}, in order
    holds: Sequence[int]  # holds the events consumed
    audit: AuditEvent | None  # unsaved (`new_event`)
    now: datetime
    written_at: datetime
    wake: bool  # this transaction still has to NOTIFY the relay


@dataclass(frozen=True, slots=True)
class BatchWritten:
    spent: dict[tuple[int, date], Decimal]  # each (customer, month)'s new total
    burned: dict[int, Decimal]  # credits taken from each customer's grants


def _columns_of(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def write_batch(w: BatchWrite) -> BatchWritten:
    """One statement (call in the batch's transaction, with every account of `w.deltas` locked)."""
    rollups = sorted(w.rollups, key=lambda r: r[:3])  # the same row order in every batch: no deadlock between them
    details = sorted(w.details, key=lambda r: r[:5])
    spends = sorted(w.spends)
    accounts = sorted(w.deltas)
    t = _columns_of([tuple(x) for x in w.transfers], 8)
    values: dict[str, Any] = {
        "account_ids": accounts,
        "deltas": [w.deltas[a] for a in accounts],
        "written_at": w.written_at,
        "t_debit": t[0],
        "t_credit": t[1],
        "t_amount": t[2],
        "t_currency": [str(c) for c in t[3]],
        "t_kind": [str(k) for k in t[4]],
        "t_debit_after": t[5],
        "t_credit_after": t[6],
        "t_metadata": [to_json(m) for m in t[7]],
        "events": event_rows_json(w.events),
        "event_debits": list(w.event_debits),
        "now": w.now,
        "holds": list(w.holds),
        "wake": w.wake,
    }
    for prefix, cols in (("r", _columns_of(rollups, 8)), ("d", _columns_of(details, 10))):
        names = [n for n in _BATCH_PARAMS if n.startswith(f"{prefix}_")]
        values.update(zip(names, cols, strict=True))
    s = _columns_of(spends, 3)
    values.update(s_customer=s[0], s_month=s[1], s_amount=s[2])
    b = _columns_of(w.burns, 2)
    values.update(b_customer=b[0], b_amount=b[1])
    o = _columns_of(w.outbox, 3)
    values.update(o_topic=o[0], o_customer=o[1], o_partner=o[2], o_payload=["{}"] * len(w.outbox))
    audit = append_values(w.audit) if w.audit is not None else [None] * len(APPEND_COLUMNS)
    values.update({f"a_{c}": v for c, v in zip(APPEND_COLUMNS, audit, strict=True)})
    rows = await _conn().execute_query_dict(_BATCH_SQL, [values[n] for n in _BATCH_PARAMS])
    spent: dict[tuple[int, date], Decimal] = {}
    burned: dict[int, Decimal] = {}
    for row in rows:
        if row["k"] == "s":
            spent[(row["customer_id"], row["month"])] = Decimal(row["amount"])
        elif row["k"] == "g":
            burned[row["customer_id"]] = Decimal(row["amount"])
    return BatchWritten(spent, burned)


def _live_holds_sql(many: bool) -> str:
    # one customer (every single call) as a scalar: see `lookup.lookup_statement` on generic and custom plans
    customer = "customer_id = ANY($1::int[])" if many else "customer_id = $1::int"
    return (
        "SELECT customer_id, id, amount, credits FROM usage_hold "
        f"WHERE {customer} AND status = '{HoldStatus.ACTIVE}' AND expires_at > $2"
    )


_LIVE_HOLDS_SQL = {many: _live_holds_sql(many) for many in (False, True)}


async def live_holds(customer_ids: Sequence[int], now: datetime) -> list[tuple[int, int, Decimal, Decimal]]:
    """(customer, hold, USD, credits) of the customers' live holds (read after their paying accounts are locked)."""
    if not customer_ids:
        return []
    many = len(customer_ids) > 1
    value = list(customer_ids) if many else customer_ids[0]
    rows = await _conn().execute_query_dict(_LIVE_HOLDS_SQL[many], [value, now])
    return [(r["customer_id"], r["id"], r["amount"], r["credits"]) for r in rows]


@cache
def _claim_and_lock_sql() -> str:
    # the accounts are locked only once every key is claimed: the count reads the whole claim (which may wait on a
    # concurrent batch holding one of the keys) before the first account row is read. The pairs come as two texts
    # of space-separated words (keys are printable ASCII without spaces: `idempotency.check_key`): a third of the
    # client CPU of an int[] and a text[] of 1,000 elements. The keys seen before are looked for only when fewer
    # rows went in than came (usually none were seen)
    lock = lock_accounts_sql("$4").replace(" ORDER BY", " AND (SELECT count(*) FROM ins) >= 0 ORDER BY")
    return (
        "WITH t AS (SELECT c::int, k FROM ROWS FROM (string_to_table(nullif($1, ''), ' '), string_to_table(nullif($2, ''), ' ')) AS t(c, k)), "
        "ins AS (INSERT INTO usage_dedup (customer_id, idempotency_key, created_at) SELECT c, k, $3 FROM t "
        "ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING customer_id, idempotency_key), "
        f"locked AS ({lock}) "
        "SELECT locked.*, CASE WHEN (SELECT count(*) FROM ins) < $5 THEN (SELECT json_agg(json_build_array(c, k)) "
        "FROM t WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.customer_id = t.c AND ins.idempotency_key = t.k)) "
        "END AS seen FROM (SELECT 1) one LEFT JOIN locked ON true ORDER BY locked.id"
    )


async def claim_and_lock(
    pairs: Sequence[tuple[int, str]], at: datetime, keys: Sequence[str]
) -> tuple[set[tuple[int, str]], list[LedgerAccount]]:
    """`store.claim_keys` then `ledger.lock_accounts`' read, in one statement: the (customer, key) pairs that were
    claimed before (duplicates), and those of the accounts `keys` that exist, locked in id order (the caller has
    `ledger.lock_accounts(…, locked=…)` create and lock any that are missing). Keys are checked ones
    (`idempotency.check_key`: no spaces)."""
    customers = " ".join([str(p[0]) for p in pairs])
    rows = await _conn().execute_query_dict(
        _claim_and_lock_sql(), [customers, " ".join([p[1] for p in pairs]), at, list(keys), len(pairs)]
    )
    seen = rows[0]["seen"] if rows else None
    duplicates = {(c, k) for c, k in _decode(seen)} if seen else set()
    return duplicates, [from_row(LedgerAccount, row) for row in rows if row["id"] is not None]


# ---------------------------------------------------------------- usageAuthorize


# What an authorization reads (`lookup.lookup_statement` for one customer), then, when the viewer may see the
# customer, the key claimed; the customer's paying accounts (wallet and credits: which one pays is the service's to
# decide) locked in id order only once the key is this request's; the month's spend row locked (created at zero)
# only after them: each step reads the one before it, so the locks are taken in the order of the ORM path
# (`money_mutation`, `ledger.lock_accounts`, `store.lock_spend`).
_PAYER_KINDS = ", ".join(f"'{kind}'" for kind in (AccountKind.CUSTOMER_WALLET, AccountKind.CUSTOMER_CREDITS))


@cache
def _authorize_open_sql() -> str:
    return (
        f"WITH c AS ({lookup_statement(1, 0, 0)}), "
        f"claim AS (INSERT INTO idempotency_record ({CLAIM_COLUMNS}) SELECT $5::text, $6::text, $7::text, $8::text, "
        "$9::text, $10::timestamptz, $11::timestamptz, '{}' WHERE EXISTS (SELECT 1 FROM c) "
        "ON CONFLICT (scope_key) DO NOTHING RETURNING id), "
        f"payers AS (SELECT id, key, balance FROM ledger_account WHERE customer_id = $1::int AND kind IN ({_PAYER_KINDS}) "
        "AND EXISTS (SELECT 1 FROM claim) ORDER BY id FOR UPDATE), "
        "spend AS (INSERT INTO monthly_spend (customer_id, month, spent) SELECT $1::int, $12::date, 0 FROM claim "
        "WHERE (SELECT count(*) FROM payers) >= 0 "
        "ON CONFLICT (customer_id, month) DO UPDATE SET spent = monthly_spend.spent RETURNING spent) "
        "SELECT c.*, (SELECT id FROM claim) AS claim, "
        "(SELECT json_agg(json_build_array(key, balance)) FROM payers) AS payers, (SELECT spent FROM spend) AS spent "
        "FROM (SELECT 1) one LEFT JOIN c ON true"
    )


@dataclass(frozen=True, slots=True)
class AuthorizeOpened:
    found: Lookup  # the customer, if the viewer may see it (nothing else was done otherwise)
    claim: int | None  # the idempotency record; None when another request had the key (nothing was locked)
    balances: dict[str, Decimal]  # the customer's paying accounts that exist, by key, locked
    spent: Decimal | None  # the month's spend, locked (None unless the claim is this request's)


async def authorize_open(viewer: Viewer, customer_id: int, claim: Sequence[object], month: date) -> AuthorizeOpened:
    """An authorization's first statement: reads the customer (as `lookup` does) and, if the viewer may see it,
    claims the key (`claim`: `idempotency.claim_values`) and when it is this request's locks the customer's paying
    accounts and the month's spend row."""
    rows = await _conn().execute_query_dict(_authorize_open_sql(), [customer_id, *reach_values(viewer), *claim, month])
    row = rows[0]
    payers = _exact(row["payers"]) if row["payers"] else []
    return AuthorizeOpened(parse(rows), row["claim"], {key: Decimal(balance) for key, balance in payers}, row["spent"])


@cache
def _place_hold_sql() -> str:
    # the state is read by the statement that inserts the hold: its snapshot is taken after the first statement
    # locked the paying accounts and the month's spend, so it sees every hold committed by an authorization of this
    # customer (any other one still waits on those locks) and not the hold it inserts
    return (
        "WITH st AS (SELECT c.service_state, coalesce(sum(h.amount), 0) AS held_usd, "
        "coalesce(sum(h.credits), 0) AS held_credits FROM customer c LEFT JOIN usage_hold h "
        f"ON h.customer_id = c.id AND h.status = '{HoldStatus.ACTIVE}' AND h.expires_at > $11 WHERE c.id = $1 "
        "GROUP BY c.id), "
        "hold AS (INSERT INTO usage_hold (customer_id, unit_type, estimated_quantity, amount, credits, funding, "
        f"status, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, '{HoldStatus.ACTIVE}', $7, $8) "
        f"RETURNING {', '.join(UsageHold._meta.fields_db_projection_reverse)}), "
        f"done AS (UPDATE idempotency_record SET status = '{IdempotencyStatus.SUCCEEDED}', "
        "response = jsonb_build_object($10::text, (SELECT id FROM hold)) WHERE id = $9) "
        f"SELECT {columns(UsageHold, 'hold')}, st.service_state AS st_service_state, st.held_usd AS st_held_usd, "
        "st.held_credits AS st_held_credits FROM hold, st"
    )


@dataclass(frozen=True, slots=True)
class HoldPlaced:
    hold: UsageHold
    service_state: str  # the customer's, read under the transaction's locks
    held_usd: Decimal  # Σ of the customer's other live holds
    held_credits: Decimal


async def place_hold(values: list[object], claim: int, outcome_key: str, now: datetime) -> HoldPlaced:
    """Inserts the hold (`values`: customer, unit type, estimated quantity, amount, credits, funding, expires at,
    created at), records it as the claim's outcome (`{outcome_key: hold id}`, as `money_mutation` keeps it) and
    reads the customer's service state and its other holds live at `now`, under the locks the transaction holds, in
    one statement. The caller decides from what it read: a refusal takes the hold back (`withdraw_hold`) and
    rewrites the claim's outcome."""
    rows = await _conn().execute_query_dict(_place_hold_sql(), [*values, claim, outcome_key, now])
    row = rows[0]
    return HoldPlaced(from_row(UsageHold, row), row["st_service_state"], row["st_held_usd"], row["st_held_credits"])


_WITHDRAW_HOLD_SQL = (
    "WITH gone AS (DELETE FROM usage_hold WHERE id = $1) "
    f"UPDATE idempotency_record SET status = '{IdempotencyStatus.FAILED}', response = $3::jsonb WHERE id = $2"
)


async def withdraw_hold(hold_id: int, claim: int, refusal: DomainError) -> None:
    """Deletes a hold this transaction placed and its authorization then refused, and keeps the refusal as the
    claim's outcome (as `idempotency.refuse` does), in one statement."""
    await _conn().execute_query(_WITHDRAW_HOLD_SQL, [hold_id, claim, to_json(stored_failure(refusal))])
