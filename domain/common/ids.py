"""Global ids as the API writes them (Relay): base64 of "Type:pk". One reading of them for every entry point —
GraphQL inputs (resolvers/commands.py) and the ingestion endpoint's events alike."""

from __future__ import annotations

import base64
import binascii

# Every type named by a global id has a 32-bit primary key (IntField, `integer` on PostgreSQL).
MAX_PK = 2**31 - 1


def encode(type_name: str, pk: object) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def pk_of(raw: str) -> int | None:
    """The primary key in the id part: ASCII digits within 1 … MAX_PK, or None. (`int()` also takes " 7", "1_0"
    and "-3", and a number beyond the column's range is a database error.)"""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
        return None
    pk = int(raw)
    return pk if 0 < pk <= MAX_PK else None


def parse(value: object) -> tuple[str, int] | None:
    """(type name, primary key) of a global id, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        type_name, _, raw = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    pk = pk_of(raw)
    return (type_name, pk) if pk is not None else None


def decode(value: object, expected: str | tuple[str, ...]) -> int | None:
    """The primary key behind a global id of one of the `expected` types, or None."""
    parsed = parse(value)
    names = (expected,) if isinstance(expected, str) else expected
    return parsed[1] if parsed is not None and parsed[0] in names else None
