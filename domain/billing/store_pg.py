"""`customerCreditsRecharge` on PostgreSQL in two statements (one transaction), as the metering path's writes
(domain/usage/store_pg.py): the service (`domain/billing/credits.py`) decides everything, this module only reads
what it needs under the locks and writes what it decided.

Through the ORM a recharge sent ~19 statements (claim, savepoint, the transfer's lock and write, the customer's
counters and grant, the pool's counter, two outbox events and the NOTIFY, the preferences for the low-credit alert,
the audit event, the outcome). Here: `open_recharge` reads the customer as the viewer may see it, claims the key,
locks the pool and the customer's credits in id order, reads the preferences and draws the transfer's id from its
sequence (so the grant, the outbox payload and the audit event can name it before it is written); `write` moves both
balances and writes the transfer, the counters, the grant, the outbox events with the relay's NOTIFY, the audit event
and the key's outcome. Row locks keep the ORM path's order: the idempotency claim, the ledger accounts by id, then
the counters (whose every writer holds the matching ledger account first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from tortoise import connections

from domain.audit.models import AuditEvent
from domain.audit.services import APPEND_COLUMNS, append_values
from domain.billing.models import BillingPreferences, GrantSource
from domain.common.json import JsonObject, to_json
from domain.common.rows import columns, from_row
from domain.customers.models import Customer
from domain.events.services import WAKE_SQL
from domain.ledger.idempotency import CLAIM_COLUMNS
from domain.ledger.models import AccountKind, IdempotencyStatus, LedgerAccount, Transfer
from domain.viewer import Viewer
from domain.visibility import customer_reach


@dataclass(frozen=True, slots=True)
class Opened:
    customer: Customer | None  # None when the viewer may not see it (nothing else was done then)
    claim: int | None  # the idempotency record; None when another request had the key (nothing was locked)
    accounts: list[LedgerAccount]  # the partner's credit pool and the customer's credits accounts that exist, locked
    prefs: BillingPreferences | None  # the customer's, if stored
    transfer_id: int | None  # drawn from the transfers' sequence for the transfer this request will write


@cache
def _open_sql() -> str:
    # The customer as `get_visible` reads it (`customer_reach`), then, only if the viewer may see it, the claim; the
    # partner's credit pool and the customer's credits accounts locked in id order only once the key is this
    # request's (the service picks them by key among the rows: a demo reset leaves renamed copies of a customer's
    # accounts); the transfer's id drawn last.
    return (
        f"WITH c AS (SELECT {columns(Customer, 'c', 'c_')} FROM customer c "
        "WHERE c.id = $1::int AND ($2::bool OR c.partner_id = $3::int OR c.id = $4::int)), "
        f"claim AS (INSERT INTO idempotency_record ({CLAIM_COLUMNS}) SELECT $5::text, $6::text, $7::text, $8::text, "
        "$9::text, $10::timestamptz, $11::timestamptz, '{}' WHERE EXISTS (SELECT 1 FROM c) "
        "ON CONFLICT (scope_key) DO NOTHING RETURNING id), "
        f"locked AS (SELECT {columns(LedgerAccount, 'a')} FROM ledger_account a "
        f"WHERE ((a.kind = '{AccountKind.PARTNER_POOL}' AND a.partner_id = (SELECT c_partner_id FROM c) "
        f"AND a.customer_id IS NULL) OR (a.kind = '{AccountKind.CUSTOMER_CREDITS}' AND a.customer_id = $1::int)) "
        "AND EXISTS (SELECT 1 FROM claim) ORDER BY a.id FOR UPDATE), "
        "transfer AS (SELECT nextval(pg_get_serial_sequence('ledger_transfer', 'id')) AS id FROM claim) "
        f"SELECT c.*, locked.*, {columns(BillingPreferences, 'p', 'p_')}, (SELECT id FROM claim) AS claim, "
        "(SELECT id FROM transfer) AS transfer_id "
        "FROM (SELECT 1) one LEFT JOIN c ON true LEFT JOIN locked ON true "
        "LEFT JOIN billing_preferences p ON p.customer_id = c.c_id AND EXISTS (SELECT 1 FROM claim) "
        "ORDER BY locked.id"
    )


async def open_recharge(viewer: Viewer, customer_id: int, claim: Sequence[object]) -> Opened:
    """A recharge's first statement: the customer the viewer may see, the key claimed (`claim`:
    `idempotency.claim_values`), the pool and credits accounts locked, the preferences, the transfer's id."""
    reach = customer_reach(viewer)
    rows = await connections.get("default").execute_query_dict(
        _open_sql(), [customer_id, reach.everything, reach.partner_id, reach.customer_id, *claim]
    )
    first = rows[0]
    return Opened(
        from_row(Customer, first, "c_") if first["c_id"] is not None else None,
        first["claim"],
        [from_row(LedgerAccount, row) for row in rows if row["id"] is not None],
        from_row(BillingPreferences, first, "p_") if first["p_customer_id"] is not None else None,
        first["transfer_id"],
    )


@dataclass(frozen=True, slots=True)
class Recharge:
    """What a recharge writes, as the service decided it."""

    transfer: Transfer  # unsaved, its id drawn by `claim_and_lock`
    customer_id: int
    partner_id: int
    amount: Decimal  # added to the customer's assigned credits and the pool's assigned
    grant_source: GrantSource
    outbox: Sequence[tuple[str, int | None, int | None, JsonObject]]  # (topic, customer, partner, payload)
    audit: AuditEvent  # unsaved (`audit.new_event`)
    claim: int
    outcome: Mapping[str, Any]  # the key's stored response
    wake: bool  # this transaction still has to NOTIFY the relay


_WRITE_SQL = (
    "WITH moved AS (UPDATE ledger_account a SET balance = a.balance + "
    "CASE WHEN a.id = $2 THEN -$4::numeric ELSE $4::numeric END WHERE a.id IN ($2, $3) AND $2 <> $3), "
    "transfer AS (INSERT INTO ledger_transfer (id, debit_account_id, credit_account_id, amount, currency, kind, "
    "debit_balance_after, credit_balance_after, idempotency_key, metadata, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)), "
    "counters AS (INSERT INTO customer_credits (customer_id, assigned, used, expired) VALUES ($12, $4, 0, 0) "
    "ON CONFLICT (customer_id) DO UPDATE SET assigned = customer_credits.assigned + EXCLUDED.assigned), "
    "grant_ AS (INSERT INTO credit_grant (customer_id, source, amount, remaining, expires_at, transfer_id, created_at) "
    "VALUES ($12, $13, $4, $4, NULL, $1, $11)), "
    "pool AS (INSERT INTO partner_pool (partner_id, assigned) VALUES ($14, $4) "
    "ON CONFLICT (partner_id) DO UPDATE SET assigned = partner_pool.assigned + EXCLUDED.assigned), "
    "outbox AS (INSERT INTO outbox_event (topic, customer_id, partner_id, payload, created_at) "
    "SELECT x.topic, x.customer_id, x.partner_id, x.payload::jsonb, $11 "
    "FROM unnest($15::text[], $16::int[], $17::int[], $18::text[]) WITH ORDINALITY "
    "AS x(topic, customer_id, partner_id, payload, n) ORDER BY x.n), "
    f"audit AS (INSERT INTO audit_event ({', '.join(APPEND_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(21, 21 + len(APPEND_COLUMNS)))})), "
    f"done AS (UPDATE idempotency_record SET status = '{IdempotencyStatus.SUCCEEDED}', response = $19::jsonb "
    "WHERE id = $20) "
    f"SELECT 1 AS written FROM ({WAKE_SQL} WHERE $37::bool) w"
)


async def write(r: Recharge) -> None:
    """One statement (in the recharge's transaction, both accounts locked)."""
    t = r.transfer
    outbox = list(zip(*r.outbox, strict=True)) if r.outbox else [(), (), (), ()]
    await connections.get("default").execute_query_dict(
        _WRITE_SQL,
        [
            t.id,
            t.debit_account_id,
            t.credit_account_id,
            t.amount,
            str(t.currency),
            str(t.kind),
            t.debit_balance_after,
            t.credit_balance_after,
            t.idempotency_key,
            to_json(t.metadata),
            t.created_at,
            r.customer_id,
            str(r.grant_source),
            r.partner_id,
            list(outbox[0]),
            list(outbox[1]),
            list(outbox[2]),
            [to_json(p) for p in outbox[3]],
            to_json(r.outcome),
            r.claim,
            *append_values(r.audit),
            r.wake,
        ],
    )
