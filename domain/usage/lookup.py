"""What a usage batch or an authorization reads before it writes: the customers the viewer may see, with their
billing preferences and feature toggles, the holds and campaigns the events name, and their partners' rate cards.

On PostgreSQL (`raw=True`) it is one statement (the ORM's six cost ~1.2 ms of client CPU on the per-call path);
otherwise the ORM queries of each read model (`restrict`, `preferences_of`, `toggles_of`, `rate_book`), as the
embedded default runs them. Both give the same `Lookup`: stored preferences and toggles, or their unsaved defaults.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, NamedTuple

import msgspec
from tortoise import connections

from domain.billing.models import BillingPreferences
from domain.billing.read import preferences_of
from domain.campaigns.models import Campaign
from domain.common.rows import columns, from_row
from domain.customers.models import Customer
from domain.features.models import FeatureToggles
from domain.features.services import toggles_of
from domain.usage.models import RateCardEntry, UnitType, UsageHold
from domain.usage.rating import RateBook, rate_book
from domain.viewer import Viewer
from domain.visibility import customer_reach, restrict


class HoldRef(NamedTuple):
    """What an event's check needs of the hold it names."""

    customer_id: int
    unit_type: str


@dataclass(frozen=True, slots=True)
class Lookup:
    customers: dict[int, Customer]  # the visible ones among those asked for
    prefs: dict[int, BillingPreferences]  # of each customer found
    toggles: dict[int, FeatureToggles]  # of each customer found
    holds: dict[int, HoldRef]  # the holds asked for that exist
    campaigns: dict[int, int]  # campaign id → its customer, of those asked for that exist
    rates: RateBook  # the rate cards of the customers' partners


async def lookup(
    viewer: Viewer,
    customer_ids: Collection[int],
    hold_ids: Collection[int] = (),
    campaign_ids: Collection[int] = (),
    *,
    raw: bool,
) -> Lookup:
    if raw:
        return await _lookup_sql(viewer, customer_ids, hold_ids, campaign_ids)
    return await _lookup_orm(viewer, customer_ids, hold_ids, campaign_ids)


async def _lookup_orm(
    viewer: Viewer, customer_ids: Collection[int], hold_ids: Collection[int], campaign_ids: Collection[int]
) -> Lookup:
    customers = (
        {c.id: c for c in await restrict(Customer, viewer).filter(id__in=list(customer_ids))} if customer_ids else {}
    )
    holds = (
        {h.id: HoldRef(h.customer_id, str(h.unit_type)) for h in await UsageHold.filter(id__in=list(hold_ids))}
        if hold_ids
        else {}
    )
    # a flat list of (id, customer id) pairs: one query for the batch, only when an event names a campaign
    campaigns: dict[int, int] = (
        dict(await Campaign.filter(id__in=list(campaign_ids)).values_list("id", "customer_id")) if campaign_ids else {}
    )
    found = list(customers)
    return Lookup(
        customers,
        await preferences_of(found) if found else {},
        await toggles_of(found) if found else {},
        holds,
        campaigns,
        await rate_book({c.partner_id for c in customers.values()}),
    )


@cache
def lookup_statement(customers: int, holds: int, campaigns: int) -> str:
    """The statement for a shape of request: how many customers, holds and campaigns it names (0, 1 or many);
    its parameters: the customers, the viewer's reach (`$2`–`$4`), then the holds and campaigns it names, if any.

    One text per shape, each prepared once: PostgreSQL plans a prepared statement anew at every execution (a
    "custom plan", ~250 µs for this one) unless its plan for any parameter values (the "generic plan") is
    estimated no dearer; with array parameters it never is (an array is costed as ten elements), so the per-call
    shapes (one customer, at most one hold, no campaign) name their values as scalars and are planned once."""
    numbers = iter(range(5, 7))

    def match(column: str, cast: str, count: int) -> str:
        """`column` among the values of the next parameter: one value as a scalar, several as an array."""
        n = next(numbers)
        return f"{column} = ${n}::{cast}" if count == 1 else f"{column} = ANY(${n}::{cast}[])"

    holds_of = (
        "(SELECT json_agg(json_build_array(h.id, h.customer_id, h.unit_type)) FROM usage_hold h "
        f"WHERE {match('h.id', 'bigint', holds)})"
        if holds
        else "NULL::json"
    )
    campaigns_of = (
        "(SELECT json_agg(json_build_array(m.id, m.customer_id)) FROM campaign m "
        f"WHERE {match('m.id', 'int', campaigns)})"
        if campaigns
        else "NULL::json"
    )
    customer = "c.id = $1::int" if customers == 1 else "c.id = ANY($1::int[])"
    return (
        f"SELECT {columns(Customer, 'c', 'c_')}, {columns(BillingPreferences, 'p', 'p_')}, "
        f"{columns(FeatureToggles, 't', 't_')}, "
        "(SELECT json_agg(json_build_array(r.unit_type, r.price, r.credit_price, r.effective_from, r.effective_to)) "
        " FROM rate_card_entry r WHERE r.partner_id = c.partner_id) AS rates, "
        f"{holds_of} AS holds, {campaigns_of} AS campaigns "
        "FROM customer c LEFT JOIN billing_preferences p ON p.customer_id = c.id "
        "LEFT JOIN feature_toggles t ON t.customer_id = c.id "
        # the rule of `restrict(Customer, viewer)`, as values (domain/visibility.py)
        f"WHERE {customer} AND ($2::bool OR c.partner_id = $3::int OR c.id = $4::int)"
    )


def _shape(values: list[int]) -> int:
    return min(len(values), 2)


def _value(values: list[int]) -> int | list[int]:
    """A parameter as its shape names it: one value as a scalar, several (or none) as an array."""
    return values[0] if len(values) == 1 else values


# prices exact: JSON numbers become Decimals from their text
_decode = msgspec.json.Decoder(float_hook=Decimal).decode


async def _lookup_sql(
    viewer: Viewer, customer_ids: Collection[int], hold_ids: Collection[int], campaign_ids: Collection[int]
) -> Lookup:
    customers_, holds_, campaigns_ = list(customer_ids), list(hold_ids), list(campaign_ids)
    rows = await connections.get("default").execute_query_dict(
        lookup_statement(_shape(customers_), _shape(holds_), _shape(campaigns_)),
        [
            _value(customers_),
            *reach_values(viewer),
            *([_value(holds_)] if holds_ else []),
            *([_value(campaigns_)] if campaigns_ else []),
        ],
    )
    return parse(rows)


def reach_values(viewer: Viewer) -> list[object]:
    """`lookup_statement`'s parameters $2–$4: the viewer's reach (`customer_reach`)."""
    reach = customer_reach(viewer)
    return [reach.everything, reach.partner_id, reach.customer_id]


def parse(rows: list[dict[str, Any]]) -> Lookup:
    """The `Lookup` of `lookup_statement`'s rows (rows whose customer columns are null are left out)."""
    rows = [row for row in rows if row["c_id"] is not None]
    customers: dict[int, Customer] = {}
    prefs: dict[int, BillingPreferences] = {}
    toggles: dict[int, FeatureToggles] = {}
    entries: list[RateCardEntry] = []
    partners: set[int] = set()
    for row in rows:
        customer = from_row(Customer, row, "c_")
        customers[customer.id] = customer
        prefs[customer.id] = (
            from_row(BillingPreferences, row, "p_")
            if row["p_customer_id"] is not None
            else BillingPreferences(customer_id=customer.id)
        )
        toggles[customer.id] = (
            from_row(FeatureToggles, row, "t_")
            if row["t_customer_id"] is not None
            else FeatureToggles(customer_id=customer.id)
        )
        if customer.partner_id not in partners and row["rates"] is not None:
            entries += [_rate_entry(customer.partner_id, item) for item in _decode(row["rates"])]
        partners.add(customer.partner_id)
    first: dict[str, Any] = rows[0] if rows else {}
    holds = {h: HoldRef(c, u) for h, c, u in _decode(first["holds"])} if first.get("holds") else {}
    campaigns = {m: c for m, c in _decode(first["campaigns"])} if first.get("campaigns") else {}
    return Lookup(customers, prefs, toggles, holds, campaigns, RateBook(entries))


def _rate_entry(partner_id: int, item: list[Any]) -> RateCardEntry:
    unit_type, price, credit_price, effective_from, effective_to = item
    return RateCardEntry.construct(
        partner_id=partner_id,
        unit_type=UnitType(unit_type),
        price=Decimal(price),
        credit_price=Decimal(credit_price),
        effective_from=datetime.fromisoformat(effective_from),
        effective_to=datetime.fromisoformat(effective_to) if effective_to else None,
    )
