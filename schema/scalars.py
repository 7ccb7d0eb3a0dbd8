"""Scalars and small value types shared by every domain: Money, JSON, Decimal."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

__all__ = ["JSON", "Decimal", "Money"]


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
