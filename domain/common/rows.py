"""Model instances from rows of raw SQL, as a read through the ORM would have built them.

The per-call money path reads and writes with a few hand-written statements on PostgreSQL (each ORM statement cost
~150–250 µs of client CPU against ~40 µs through the driver); the services downstream still take model instances.
`columns` names a model's columns for a SELECT (under a prefix, so several models can share one row) and
`from_row` builds the instance with each field's own conversion (enums, JSON, decimals at their scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from tortoise import connections
from tortoise.models import Model

M = TypeVar("M", bound=Model)

# Whether the hot paths on PostgreSQL (usage authorize and record, credits recharge) write with their own statements
# rather than through the ORM; tests switch it off to compare both paths on one database.
RAW_SQL = True


def raw_sql() -> bool:
    """The hot paths' own statements apply: PostgreSQL (the connection of the current transaction, if any)."""
    return RAW_SQL and connections.get("default").capabilities.dialect == "postgres"


def columns(model: type[Model], alias: str, prefix: str = "") -> str:
    """`alias.column AS prefix+column, …` for every column of `model`. Call once Tortoise is initialised (a foreign
    key's column, `partner_id`, exists only then): build statements on first use, not at import."""
    return ", ".join(f"{alias}.{column} AS {prefix}{column}" for column in model._meta.fields_db_projection_reverse)


def from_row(model: type[M], row: Mapping[str, Any], prefix: str = "") -> M:
    """The instance a read of the ORM gives (saved, every field converted) from a row holding `columns(model, …,
    prefix)`."""
    meta = model._meta
    values = {
        name: meta.fields_map[name].to_python_value(row[prefix + column])
        for column, name in meta.fields_db_projection_reverse.items()
    }
    return model.construct(_saved_in_db=True, **values)


def saved(model: type[M], **values: Any) -> M:
    """The instance `Model.create(**values)` returns, for a row a raw statement just wrote: each value converted
    by its field as a read would (a Decimal at the column's scale: 7 is 7.000000), marked saved."""
    fields = model._meta.fields_map
    converted = {
        name: (fields[name].to_python_value(value) if name in fields else value) for name, value in values.items()
    }
    return model.construct(_saved_in_db=True, **converted)
