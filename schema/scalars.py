"""Scalars and small value types shared by every domain: Money, JSON, Decimal, and the DateTime every input
goes through."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from operator import methodcaller

import dateutil.parser
import strawberry
from strawberry.scalars import JSON
from strawberry.schema.types.base_scalars import wrap_parser
from strawberry.types.scalar import ScalarDefinition

__all__ = ["JSON", "DateTimeDefinition", "Decimal", "Money"]


def _parse_datetime(value: str) -> datetime:
    """ISO 8601, as Strawberry's DateTime, but only instants that exist in UTC: "0001-01-01T00:00:00+05:00" is
    a valid string, yet converting it to UTC (as every comparison with stored timestamps does, in Python or in
    the database driver) overflows, which surfaced as an internal error far from the input."""
    parsed = dateutil.parser.isoparse(value)
    if parsed.tzinfo is not None:
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("It is outside the years 1 to 9999 in UTC.") from None
    return parsed


# Replaces Strawberry's DateTime (same name, description and output) in schema/__init__.py.
DateTimeDefinition = ScalarDefinition(
    name="DateTime",
    description="Date with time (isoformat)",
    specified_by_url=None,
    serialize=methodcaller("isoformat"),
    parse_value=wrap_parser(_parse_datetime, "DateTime", exceptions=(ValueError, OverflowError)),
    parse_literal=None,
    origin=datetime,
)


@strawberry.type(description="An amount of money. `amount` is a Decimal sent as a string; never a float.")
class Money:
    amount: Decimal
    currency: str


def money(amount: Decimal, currency: str) -> Money:
    """Exact amount; USD keeps at least two decimals ("12.50"), more only when the value has them."""
    value = amount.normalize()
    exponent = value.as_tuple().exponent
    if currency == "USD" and isinstance(exponent, int) and exponent > -2:
        value = value.quantize(Decimal("0.01"))
    return Money(amount=value, currency=currency)


def usd(amount: Decimal) -> Money:
    return money(amount, "USD")
