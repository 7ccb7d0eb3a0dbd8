"""Shared resolver plumbing: global ids, pagination, and turning domain failures into payload errors."""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pypika_tortoise import Order, Table
from pypika_tortoise.analytics import RowNumber
from strawberry.utils.str_converters import to_camel_case
from tortoise import connections
from tortoise.functions import Count
from tortoise.models import Model
from tortoise.queryset import QuerySet

from domain.common import ids
from domain.errors import DomainError, ErrorCode, FieldError

T = TypeVar("T")
MAX_PAGE = 100
DEFAULT_PAGE = 20


def camel_errors(errors: Sequence[FieldError]) -> list[FieldError]:
    return [FieldError(to_camel_case(e.field) if e.field else None, e.message, e.code) for e in errors]


@dataclass(slots=True)
class Outcome(Generic[T]):
    value: T | None
    errors: list[FieldError]


async def attempt(awaitable: Awaitable[T]) -> Outcome[T]:
    """Runs a domain call; its DomainError becomes the payload's `errors` (field names camel-cased)."""
    try:
        return Outcome(await awaitable, [])
    except DomainError as exc:
        return Outcome(None, camel_errors(exc.errors))


def encode_global_id(type_name: str, pk: Any) -> str:
    return ids.encode(type_name, pk)


def decode_global_id(value: Any, expected: str | tuple[str, ...], field: str) -> int:
    """The integer pk behind a global id of one of the `expected` types; anything else is NOT_FOUND."""
    pk = ids.decode(value, expected)
    if pk is None:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Not found.", field)
    return pk


def node_pk(raw: str) -> int | None:
    """The primary key in the id part of a global id, or None (domain/common/ids.py)."""
    return ids.pk_of(raw)


def pk_fits(model: type[Model], pk: int) -> bool:
    """Whether `pk` fits the model's primary-key column: an out-of-range literal is a database error on Postgres."""
    bounds = model._meta.pk.constraints
    return bounds.get("ge", -(2**63)) <= pk <= bounds.get("le", 2**63 - 1)


def decode_global_id_typed(value: Any, expected: tuple[str, ...], field: str) -> tuple[str, int]:
    """(type name, pk) of a global id of one of the `expected` types; anything else is NOT_FOUND."""
    parsed = ids.parse(value)
    if parsed is None or parsed[0] not in expected:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Not found.", field)
    return parsed


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    total_count: int
    has_next_page: bool
    has_previous_page: bool


def _cursor(pk: int) -> str:
    return base64.b64encode(f"cursor:{pk}".encode()).decode()


def _cursor_pk(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        kind, _, raw = base64.b64decode(cursor, validate=True).decode().partition(":")
        if kind != "cursor":
            raise ValueError(kind)
        return int(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise DomainError.single(ErrorCode.INVALID, "Invalid cursor.", "after") from None


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise DomainError.single(ErrorCode.INVALID, f"`first` must be between 0 and {MAX_PAGE}.", "first")
    return first


def cursor_pk(model: type[Model], cursor: str | None) -> int | None:
    """The primary key an `after` cursor points past (None: from the start); INVALID when it cannot be one."""
    pk = _cursor_pk(cursor)
    if pk is not None and not pk_fits(model, pk):
        raise DomainError.single(ErrorCode.INVALID, "Invalid cursor.", "after")
    return pk


async def paginate(qs: QuerySet[Any], first: int | None, after: str | None, *, newest_first: bool = False) -> Page[Any]:
    """Keyset pagination by primary key: two queries (count and one page) whatever the position."""
    size = page_size(first)
    after_pk = cursor_pk(qs.model, after)
    total = await qs.count()
    window = qs
    if after_pk is not None:
        window = window.filter(id__lt=after_pk) if newest_first else window.filter(id__gt=after_pk)
    rows = await window.order_by("-id" if newest_first else "id").limit(size + 1)
    has_next = len(rows) > size
    rows = rows[:size]
    return Page(rows, [_cursor(r.id) for r in rows], total, has_next, after_pk is not None)


async def paginate_many(
    qs: QuerySet[Any],
    parent: str,
    parent_ids: Sequence[int],
    size: int,
    after_pk: int | None,
    *,
    newest_first: bool = False,
) -> dict[int, Page[Any]]:
    """`paginate` for many parents at once (a DataLoader's batch): the rows of `qs` grouped by the column
    `parent`, the same page of each group. Three statements whatever the number of parents: the counts, the ids
    of each group's page (a window function numbers the rows of each group), and those rows.

    `size` and `after_pk` are already validated (`page_size`, `cursor_pk`).
    """
    scoped = qs.filter(**{f"{parent}__in": list(parent_ids)})
    totals = dict(await scoped.annotate(total=Count("id")).group_by(parent).values_list(parent, "total"))
    rows_by_parent: dict[int, list[Any]] = defaultdict(list)
    if any(totals.values()):
        window = scoped
        if after_pk is not None:
            window = window.filter(id__lt=after_pk) if newest_first else window.filter(id__gt=after_pk)
        table = Table(qs.model._meta.db_table)
        order = Order.desc if newest_first else Order.asc
        ranked = window.annotate(page_rank=RowNumber().over(table.field(parent)).orderby(table.id, order=order))
        sql, params = _parameterized(ranked.values("id", "page_rank"))
        # `size + 1` rows tell whether there is a next page; an int, so formatting it in is safe
        wanted = await connections.get("default").execute_query_dict(
            f'SELECT "id" FROM ({sql}) AS "ranked" WHERE "page_rank" <= {int(size) + 1}', params
        )
        rows = await qs.model.filter(id__in=[row["id"] for row in wanted]).order_by("-id" if newest_first else "id")
        for row in rows:
            rows_by_parent[getattr(row, parent)].append(row)
    pages: dict[int, Page[Any]] = {}
    for parent_id in parent_ids:
        rows = rows_by_parent.get(parent_id, [])
        chunk = rows[:size]
        pages[parent_id] = Page(
            chunk,
            [_cursor(r.id) for r in chunk],
            totals.get(parent_id, 0),
            len(rows) > size,
            after_pk is not None,
        )
    return pages


def _parameterized(query: Any) -> tuple[str, list[Any]]:
    """The SQL and parameters Tortoise would send for `query` (its own `sql()` drops the parameters)."""
    query.sql()
    sql, params = query.query.get_parameterized_sql()
    return sql, list(params)


def paginate_list(items: Sequence[T], first: int | None, after: str | None, key: Any = lambda x: x.id) -> Page[T]:
    """Same contract over an already loaded list (relations fetched by a DataLoader)."""
    size = page_size(first)
    after_pk = _cursor_pk(after)
    start = 0
    if after_pk is not None:
        start = next((i + 1 for i, item in enumerate(items) if key(item) == after_pk), len(items))
    chunk = list(items[start : start + size])
    return Page(chunk, [_cursor(key(i)) for i in chunk], len(items), start + size < len(items), start > 0)
