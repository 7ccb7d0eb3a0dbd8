"""Rate cards (seed 003): per-partner prices with defaults, versioned so a change applies from that moment on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from domain.common.json import JsonObject
from domain.common.validation import Validator, parse_amount
from domain.errors import ErrorCode
from domain.usage.models import RateCardEntry, UnitType

# USD per unit, and AI credits per unit (1 credit = $0.01 by default)
DEFAULT_RATES: dict[UnitType, tuple[Decimal, Decimal]] = {
    UnitType.VOICE_MINUTES: (Decimal("0.06"), Decimal("6")),
    UnitType.SMS_SEGMENTS: (Decimal("0.01"), Decimal("1")),
    UnitType.CHAT_TURNS: (Decimal("0.01"), Decimal("1")),
    UnitType.EMAILS: (Decimal("0"), Decimal("0")),
    UnitType.PHONE_NUMBER_MONTHS: (Decimal("2.00"), Decimal("200")),
    # $8 per GB-month beyond the allocation, metered in MB-months
    UnitType.STORAGE_MB: (Decimal("0.0078125"), Decimal("0.78125")),
}


@dataclass(frozen=True, slots=True)
class Rate:
    unit_type: UnitType
    price: Decimal
    credit_price: Decimal
    effective_from: datetime | None  # None: the platform default


_DEFAULT_RATES = {unit: Rate(unit, price, credits, None) for unit, (price, credits) in DEFAULT_RATES.items()}


class RateBook:
    """Prices of a set of partners, valid at any instant (for late-arriving events too)."""

    def __init__(self, entries: Iterable[RateCardEntry]) -> None:
        by_key: dict[tuple[int, UnitType], list[RateCardEntry]] = defaultdict(list)
        for entry in entries:
            by_key[(entry.partner_id, UnitType(entry.unit_type))].append(entry)
        # each entry's Rate made once: `rate` runs per metered event
        self._rates: dict[tuple[int, UnitType], list[tuple[datetime, datetime | None, Rate]]] = {
            key: [
                (e.effective_from, e.effective_to, Rate(key[1], e.price, e.credit_price, e.effective_from))
                for e in sorted(rows, key=lambda e: e.effective_from)
            ]
            for key, rows in by_key.items()
        }

    def rate(self, partner_id: int, unit_type: UnitType, at: datetime) -> Rate:
        for start, end, rate in reversed(self._rates.get((partner_id, unit_type), ())):
            if start <= at and (end is None or at < end):
                return rate
        return _DEFAULT_RATES[unit_type]

    def current(self, partner_id: int, at: datetime | None = None) -> list[Rate]:
        at = at or datetime.now(UTC)
        return [self.rate(partner_id, unit, at) for unit in UnitType]


async def rate_book(partner_ids: Iterable[int]) -> RateBook:
    return RateBook(await RateCardEntry.filter(partner_id__in=list(set(partner_ids))))


@dataclass(frozen=True, slots=True)
class RateChange:
    """One unit type's new prices on the partner's rate card, from now on."""

    unit_type: UnitType
    price: Decimal  # USD per unit
    credit_price: Decimal  # AI credits per unit


def clean_rates(
    v: Validator, rates: Sequence[RateChange], field: str = "rate_card"
) -> dict[UnitType, tuple[Decimal, Decimal]]:
    """Validates a rate card input: each unit type once, non-negative prices."""
    wanted: dict[UnitType, tuple[Decimal, Decimal]] = {}
    for i, item in enumerate(rates):
        unit = UnitType(item.unit_type)
        if unit in wanted:
            v.add(f"{field}.{i}.unit_type", "Each unit type once.", ErrorCode.UNIQUE)
        price = parse_amount(v, f"{field}.{i}.price", item.price, allow_zero=True)
        credit_price = parse_amount(v, f"{field}.{i}.credit_price", item.credit_price, allow_zero=True)
        if price is not None and credit_price is not None:
            wanted[unit] = (price, credit_price)
    return wanted


async def apply_rates(partner_id: int, wanted: Mapping[UnitType, tuple[Decimal, Decimal]], now: datetime) -> JsonObject:
    """Closes the current price of each changed unit and opens the new one (inside the caller's transaction, with
    the partner row locked). Returns the changes for the audit log."""
    book = await rate_book([partner_id])
    diff: JsonObject = {}
    for unit, (price, credit_price) in wanted.items():
        current = book.rate(partner_id, unit, now)
        if (current.price, current.credit_price) == (price, credit_price):
            continue
        await RateCardEntry.filter(partner_id=partner_id, unit_type=unit, effective_to=None).update(effective_to=now)
        await RateCardEntry.create(
            partner_id=partner_id, unit_type=unit, price=price, credit_price=credit_price, effective_from=now
        )
        diff[str(unit)] = {
            "before": {"price": str(current.price), "credit_price": str(current.credit_price)},
            "after": {"price": str(price), "credit_price": str(credit_price)},
        }
    return diff
