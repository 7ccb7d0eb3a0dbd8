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
