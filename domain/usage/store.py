"""Set-based SQL for metering batches: a handful of statements per batch, whatever its size.

PostgreSQL gets array parameters (`unnest`) so each statement text is constant and prepared once; SQLite gets the
same statements with row values. Both return which idempotency keys were new, so duplicates are found by the
unique index and never charged twice, even between concurrent batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

import msgspec
from msgspec.structs import astuple
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from domain.common.json import JsonObject, to_json

_partitions_ready: set[tuple[str, date]] = set()


def _conn() -> BaseDBAsyncClient:
    return connections.get("default")


def is_postgres() -> bool:
    return _conn().capabilities.dialect == "postgres"


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


# Any constant shared by every process: partition DDL of usage_event takes this transaction-level advisory lock.
_PARTITION_LOCK = 7_220_001


async def ensure_partitions(months: Sequence[date]) -> None:
    """Creates the monthly partitions of usage_event that do not exist yet (PostgreSQL; a no-op on SQLite).

    Runs outside the batch transaction: DDL on the parent table should hold its lock only for an instant; the
    housekeeping job creates next month's partition ahead of time, so batches find theirs made. Creation is
    serialised by a transaction-level advisory lock, and the check reads `pg_class` with a fresh snapshot: after
    waiting on that lock, `to_regclass()` (and `CREATE TABLE IF NOT EXISTS`) could still answer from a stale
    catalog cache and create the table a second time (DuplicateTableError). A duplicate that slips past anyway is
    caught in the block.
    """
    if not is_postgres():
        return
    conn = _conn()
    db = getattr(conn, "database", "") or ""
    for month in sorted(set(months)):
        if (db, month) in _partitions_ready:
            continue
        name = f"usage_event_{month:%Y_%m}"
        await conn.execute_script(
            "DO $$ BEGIN "
            f"PERFORM pg_advisory_xact_lock({_PARTITION_LOCK}); "
            "IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class "
            f"WHERE relname = '{name}' AND relnamespace = current_schema()::regnamespace) THEN "
            f"CREATE TABLE {name} PARTITION OF usage_event "
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}'); "
            "END IF; "
            "EXCEPTION WHEN duplicate_table THEN NULL; "
            "END $$"
        )
        _partitions_ready.add((db, month))


def forget_partitions() -> None:
    """For tests that drop tables behind our back."""
    _partitions_ready.clear()


_CLAIM_PG = (
    "WITH t AS (SELECT c, k FROM unnest($1::int[], $2::text[]) AS t(c, k)), "
    "ins AS (INSERT INTO usage_dedup (customer_id, idempotency_key, created_at) SELECT c, k, $3 FROM t "
    "ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING customer_id, idempotency_key) "
    "SELECT c AS customer_id, k AS idempotency_key FROM t "
    "WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.customer_id = t.c AND ins.idempotency_key = t.k)"
)


async def claim_keys(pairs: Sequence[tuple[int, str]], at: datetime) -> set[tuple[int, str]]:
    """Inserts (customer_id, idempotency_key) pairs; returns those that were new."""
    if not pairs:
        return set()
    conn = _conn()
    if is_postgres():
        # Returns the keys that were already there (usually none) rather than the 1,000 new ones: decoding a row
        # per event cost more client CPU than the insert itself.
        rows = await conn.execute_query_dict(_CLAIM_PG, [[p[0] for p in pairs], [p[1] for p in pairs], at])
        return set(pairs) - {(row["customer_id"], row["idempotency_key"]) for row in rows}
    placeholders = ",".join("(?, ?, ?)" for _ in pairs)
    values: list[Any] = []
    for customer_id, key in pairs:
        values += [customer_id, key, _sqlite_value(at)]
    rows = await conn.execute_query_dict(
        f"INSERT INTO usage_dedup (customer_id, idempotency_key, created_at) VALUES {placeholders} "
        "ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING customer_id, idempotency_key",
        values,
    )
    return {(row["customer_id"], row["idempotency_key"]) for row in rows}


async def release_keys(pairs: Sequence[tuple[int, str]]) -> None:
    """Deletes claimed (customer_id, idempotency_key) pairs whose events were refused after all."""
    if not pairs:
        return
    conn = _conn()
    if is_postgres():
        await conn.execute_query(
            "DELETE FROM usage_dedup WHERE (customer_id, idempotency_key) IN "
            "(SELECT * FROM unnest($1::int[], $2::text[]))",
            [[p[0] for p in pairs], [p[1] for p in pairs]],
        )
        return
    await conn.execute_many(
        "DELETE FROM usage_dedup WHERE customer_id = ? AND idempotency_key = ?", [list(p) for p in pairs]
    )


# usage_event's columns as a batch writes them: (column, PostgreSQL type, key in the batch's JSON, SQL for a key
# left out). PostgreSQL reads a batch's rows from one JSON document (`json_to_recordset`), lexing every key of every
# row: short keys, and none for a null, an empty metadata object or an empty case type, cut its parse by about a
# third (and msgspec's encoding with it). `recorded_at` is the batch's, one parameter.
EVENT_FIELDS: tuple[tuple[str, str, str, str | None], ...] = (
    ("customer_id", "int", "c", None),
    ("partner_id", "int", "p", None),
    ("unit_type", "text", "u", None),
    ("quantity", "numeric", "q", None),
    ("occurred_at", "timestamptz", "o", None),
    ("idempotency_key", "text", "k", None),
    ("unit_price", "numeric", "up", None),
    ("cost", "numeric", "co", None),
    ("funding", "text", "f", None),
    ("paid", "bool", "pd", None),
    ("credits", "numeric", "cr", "0"),
    ("case_type", "text", "t", "''"),
    ("metadata", "jsonb", "m", "'{}'::jsonb"),
    ("hold_id", "bigint", "h", "NULL"),
    ("transfer_id", "bigint", "tr", "NULL"),
    ("direction", "text", "d", "NULL"),
    ("from_number", "text", "fn", "NULL"),
    ("to_number", "text", "tn", "NULL"),
    ("duration_seconds", "int", "ds", "NULL"),
    ("segments", "int", "sg", "NULL"),
    ("campaign_id", "int", "cp", "NULL"),
    ("call_id", "text", "ci", "NULL"),
)


class EventRow(msgspec.Struct, omit_defaults=True, rename={f[0]: f[2] for f in EVENT_FIELDS}):
    """One usage_event row as a batch writes it (`insert_events`, `store_pg.write_batch`), but its `recorded_at`:
    encoded as the batch statements read it (`event_rows_sql`), defaults left out. Built positionally on the hot
    path (a quarter of the cost of keywords): the fields after `metadata` are a `_Details`' in its order."""

    customer_id: int
    partner_id: int
    unit_type: str
    quantity: Decimal
    occurred_at: datetime
    idempotency_key: str
    unit_price: Decimal
    cost: Decimal
    funding: str
    paid: bool
    credits: Decimal = Decimal(0)
    case_type: str = ""
    metadata: JsonObject = msgspec.field(default_factory=dict)
    hold_id: int | None = None
    transfer_id: int | None = None
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    duration_seconds: int | None = None
    segments: int | None = None
    campaign_id: int | None = None
    call_id: str | None = None


EVENT_COLUMNS = (*(f[0] for f in EVENT_FIELDS), "recorded_at")
assert tuple(f[0] for f in EVENT_FIELDS) == EventRow.__struct_fields__


def event_rows_sql(
    rows: str, recorded_at: str, *, alias: str = "r", beside: tuple[str, str] | None = None, transfer_id: str = ""
) -> tuple[str, str]:
    """(FROM item, SELECT list in EVENT_COLUMNS' order) reading the rows of `rows` (a json parameter of encoded
    EventRows) as `alias`. `beside`: (a set-returning call, its column's name) read row by row alongside (ROWS FROM);
    `transfer_id`: the SQL of each row's transfer instead of its own."""
    # jsonb read as text and cast: json_to_recordset's own jsonb columns cost ~2 µs per row more
    definition = ", ".join(f"{key} {'text' if pg == 'jsonb' else pg}" for _, pg, key, _ in EVENT_FIELDS)
    keys = ", ".join(key for _, _, key, _ in EVENT_FIELDS)
    call = f"json_to_recordset({rows})"
    if beside is None:
        source = f"{call} AS {alias}({definition})"
    else:
        source = f"ROWS FROM ({call} AS ({definition}), {beside[0]}) AS {alias}({keys}, {beside[1]})"
    values = []
    for column, pg, key, absent in EVENT_FIELDS:
        value = f"{alias}.{key}::jsonb" if pg == "jsonb" else f"{alias}.{key}"
        if column == "transfer_id" and transfer_id:
            values.append(transfer_id)
        elif absent is None or absent == "NULL":
            values.append(value)
        else:
            values.append(f"coalesce({value}, {absent})")
    return source, ", ".join([*values, recorded_at])


_encode_rows = msgspec.json.Encoder(decimal_format="number").encode


def event_rows_json(rows: Sequence[EventRow]) -> str:
    """The rows as `event_rows_sql` reads them."""
    return _encode_rows(rows).decode()


_FIELDS = EventRow.__struct_fields__
_source, _values = event_rows_sql("$1::json", "$2::timestamptz")
_INSERT_EVENTS_PG = f"INSERT INTO usage_event ({', '.join(EVENT_COLUMNS)}) SELECT {_values} FROM {_source}"


async def insert_events(rows: Sequence[EventRow], recorded_at: datetime) -> None:
    """Inserts event rows, recorded at `recorded_at`."""
    if not rows:
        return
    conn = _conn()
    if is_postgres():
        await conn.execute_query(_INSERT_EVENTS_PG, [event_rows_json(rows), recorded_at])
    else:
        placeholders = "(" + ",".join("?" for _ in EVENT_COLUMNS) + ")"
        when = _sqlite_value(recorded_at)
        values_list = [
            [
                *(
                    to_json(v) if name == "metadata" else _sqlite_value(v)
                    for name, v in zip(_FIELDS, astuple(r), strict=True)
                ),
                when,
            ]
            for r in rows
        ]
        await conn.execute_many(
            f"INSERT INTO usage_event ({', '.join(EVENT_COLUMNS)}) VALUES {placeholders}", values_list
        )


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return str(value.astimezone(UTC))  # the text form Tortoise writes, so comparisons agree
    if isinstance(value, bool):
        return int(value)
    return value


# (customer_id, day, unit_type, events, quantity, cost, credits, unpaid_cost)
RollupRow: TypeAlias = tuple[int, date, str, int, Decimal, Decimal, Decimal, Decimal]
# (customer_id, day, unit_type, case_type, campaign_id or 0, events, quantity, cost, credits, unpaid_cost)
RollupDetailRow: TypeAlias = tuple[int, date, str, str, int, int, Decimal, Decimal, Decimal, Decimal]


def adding(table: str, key: str) -> str:
    return (
        f"ON CONFLICT ({key}) DO UPDATE SET events = {table}.events + EXCLUDED.events, "
        f"quantity = {table}.quantity + EXCLUDED.quantity, cost = {table}.cost + EXCLUDED.cost, "
        f"credits = {table}.credits + EXCLUDED.credits, unpaid_cost = {table}.unpaid_cost + EXCLUDED.unpaid_cost"
    )


_ADD_DETAILS_PG = (
    "INSERT INTO usage_rollup_detail (customer_id, day, unit_type, case_type, campaign_id, events, quantity, cost, "
    "credits, unpaid_cost) SELECT * FROM unnest($1::int[], $2::date[], $3::text[], $4::text[], $5::int[], $6::int[], "
    "$7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[]) "
    + adding("usage_rollup_detail", "customer_id, day, unit_type, case_type, campaign_id")
)


async def add_rollup_details(rows: Sequence[RollupDetailRow]) -> None:
    """Adds to the rollups by case type and campaign: one statement per batch on PostgreSQL."""
    if not rows:
        return
    rows = sorted(rows, key=lambda r: r[:5])  # the same row order in every batch: no deadlock between them
    if is_postgres():
        await _conn().execute_query(_ADD_DETAILS_PG, [list(c) for c in zip(*rows, strict=True)])
        return
    conn = _conn()
    for row in rows:
        key = [row[0], row[1].isoformat(), row[2], row[3], row[4]]
        where = "customer_id = ? AND day = ? AND unit_type = ? AND case_type = ? AND campaign_id = ?"
        existing = await conn.execute_query_dict(
            f"SELECT events, quantity, cost, credits, unpaid_cost FROM usage_rollup_detail WHERE {where}", key
        )
        if existing:  # SQLite stores decimals as text: add them in Python to stay exact
            e = existing[0]
            sums = [
                str(Decimal(e[n]) + v)
                for n, v in zip(("quantity", "cost", "credits", "unpaid_cost"), row[6:], strict=True)
            ]
            await conn.execute_query(
                "UPDATE usage_rollup_detail SET events = ?, quantity = ?, cost = ?, credits = ?, unpaid_cost = ? "
                f"WHERE {where}",
                [e["events"] + row[5], *sums, *key],
            )
        else:
            await conn.execute_query(
                "INSERT INTO usage_rollup_detail (customer_id, day, unit_type, case_type, campaign_id, events, "
                "quantity, cost, credits, unpaid_cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [*key, row[5], *(str(v) for v in row[6:])],
            )


async def add_rollups(rows: Sequence[RollupRow]) -> None:
    """Adds (customer_id, day, unit_type, events, quantity, cost, credits, unpaid_cost) to the daily rollups."""
    if not rows:
        return
    conn = _conn()
    update = adding("usage_rollup", "customer_id, day, unit_type")
    # sorted: concurrent batches touch rollup rows in the same order and cannot deadlock
    rows = sorted(rows, key=lambda r: (r[0], r[1], r[2]))
    if is_postgres():
        cols = list(zip(*rows, strict=True))
        await conn.execute_query(
            "INSERT INTO usage_rollup (customer_id, day, unit_type, events, quantity, cost, credits, unpaid_cost) "
            "SELECT * FROM unnest($1::int[], $2::date[], $3::text[], $4::int[], $5::numeric[], $6::numeric[], "
            "$7::numeric[], $8::numeric[]) " + update,
            [list(c) for c in cols],
        )
    else:
        for row in rows:
            # SQLite stores decimals as text: add them in Python to stay exact
            existing = await conn.execute_query_dict(
                "SELECT events, quantity, cost, credits, unpaid_cost FROM usage_rollup "
                "WHERE customer_id = ? AND day = ? AND unit_type = ?",
                [row[0], row[1].isoformat(), row[2]],
            )
            if existing:
                e = existing[0]
                await conn.execute_query(
                    "UPDATE usage_rollup SET events = ?, quantity = ?, cost = ?, credits = ?, unpaid_cost = ? "
                    "WHERE customer_id = ? AND day = ? AND unit_type = ?",
                    [
                        e["events"] + row[3],
                        str(Decimal(e["quantity"]) + row[4]),
                        str(Decimal(e["cost"]) + row[5]),
                        str(Decimal(e["credits"]) + row[6]),
                        str(Decimal(e["unpaid_cost"]) + row[7]),
                        row[0],
                        row[1].isoformat(),
                        row[2],
                    ],
                )
            else:
                await conn.execute_query(
                    "INSERT INTO usage_rollup (customer_id, day, unit_type, events, quantity, cost, credits, "
                    "unpaid_cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [row[0], row[1].isoformat(), row[2], row[3], *(str(v) for v in row[4:])],
                )


async def add_spend(customer_id: int, month: date, amount: Decimal) -> Decimal:
    """Adds to a customer's monthly spend; returns the new total."""
    conn = _conn()
    if is_postgres():
        rows = await conn.execute_query_dict(
            "INSERT INTO monthly_spend (customer_id, month, spent) VALUES ($1, $2, $3) "
            "ON CONFLICT (customer_id, month) DO UPDATE SET spent = monthly_spend.spent + EXCLUDED.spent "
            "RETURNING spent",
            [customer_id, month, amount],
        )
        return Decimal(rows[0]["spent"])
    rows = await conn.execute_query_dict(
        "SELECT spent FROM monthly_spend WHERE customer_id = ? AND month = ?", [customer_id, month.isoformat()]
    )
    if rows:
        total = Decimal(rows[0]["spent"]) + amount
        await conn.execute_query(
            "UPDATE monthly_spend SET spent = ? WHERE customer_id = ? AND month = ?",
            [str(total), customer_id, month.isoformat()],
        )
        return total
    await conn.execute_query(
        "INSERT INTO monthly_spend (customer_id, month, spent) VALUES (?, ?, ?)",
        [customer_id, month.isoformat(), str(amount)],
    )
    return amount


async def add_spends(rows: Sequence[tuple[int, date, Decimal]]) -> dict[tuple[int, date], Decimal]:
    """Adds (customer_id, month, amount) to many customers' monthly spend in one statement, in key order so
    concurrent batches take the rows in the same order; returns each (customer_id, month)'s new total."""
    totals: dict[tuple[int, date], Decimal] = {}
    for customer_id, month, amount in rows:
        totals[(customer_id, month)] = totals.get((customer_id, month), Decimal(0)) + amount
    keys = sorted(totals)
    if not keys:
        return {}
    if not is_postgres():
        return {(c, m): await add_spend(c, m, totals[(c, m)]) for c, m in keys}
    found = await _conn().execute_query_dict(
        "INSERT INTO monthly_spend (customer_id, month, spent) "
        "SELECT * FROM unnest($1::int[], $2::date[], $3::numeric[]) "
        "ON CONFLICT (customer_id, month) DO UPDATE SET spent = monthly_spend.spent + EXCLUDED.spent "
        "RETURNING customer_id, month, spent",
        [[c for c, _ in keys], [m for _, m in keys], [totals[k] for k in keys]],
    )
    return {(row["customer_id"], row["month"]): Decimal(row["spent"]) for row in found}


async def lock_spend(customer_id: int, month: date) -> Decimal:
    """Locks a customer's spend row of `month` (creating it at zero) and returns its total, in one statement on
    PostgreSQL (an upsert that changes nothing still takes the row lock). Call inside a transaction."""
    if is_postgres():
        rows = await _conn().execute_query_dict(
            "INSERT INTO monthly_spend (customer_id, month, spent) VALUES ($1, $2, 0) "
            "ON CONFLICT (customer_id, month) DO UPDATE SET spent = monthly_spend.spent RETURNING spent",
            [customer_id, month],
        )
        return Decimal(rows[0]["spent"])
    return await add_spend(customer_id, month, Decimal(0))  # SQLite runs one write transaction at a time
