"""Names for JSON-shaped data the domain stores as it is: audit details, outbox payloads, metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeAlias

import msgspec

# Evaluable at run time (commands may carry JSON: resolvers/commands.py reads their annotations).
JsonValue: TypeAlias = str | int | float | Decimal | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]

# What a function that only reads JSON-shaped data accepts (`record(details=…)`, `emit(**payload)`): read-only
# views, so a caller's `dict[str, list[str]]` is one too (`dict` and `list` are invariant: a `list[str]` is not a
# `list[JsonValue]`).
JsonLike: TypeAlias = "str | int | float | Decimal | bool | Sequence[JsonLike] | Mapping[str, JsonLike] | None"
JsonMapping: TypeAlias = "Mapping[str, JsonLike]"

# Decimals as JSON numbers: exact (PostgreSQL reads them with numeric's own parser), and metadata that arrived with
# fractional numbers (the ingestion endpoint decodes them as Decimal) stays numeric.
_encoder = msgspec.json.Encoder(decimal_format="number")


def to_json(value: Any) -> str:
    """JSON text for a `json`/`jsonb` parameter of raw SQL (what a JSONField stores, Decimals exact)."""
    return _encoder.encode(value).decode()
