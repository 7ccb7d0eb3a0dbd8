"""Relay plumbing: model-backed Node types and generic connections with totalCount."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, Self, TypeVar

import strawberry
from strawberry import relay

from resolvers.common import Page
from schema.common import Info

N = TypeVar("N")
V = TypeVar("V", bound=type)

# domain class → how to build the GraphQL object that shows it (`shows`, `view_of`)
_VIEWS: dict[type, Callable[[Any], Any]] = {}


def shows(*sources: type) -> Callable[[V], V]:
    """Class decorator: this GraphQL type shows these domain objects (rows or read models); `view_of` builds it.

    Types of one schema module refer to another's by `strawberry.lazy` in their annotations and build its objects
    with `view_of`, so no schema module imports another at run time (no import cycles between them).
    """

    def register(cls: V) -> V:
        build = getattr(cls, "of", None) or getattr(cls, "from_model")  # noqa: B009
        for source in sources:
            _VIEWS[source] = build
        return cls

    return register


def view_of(source: Any) -> Any:
    """The GraphQL object showing a domain object (of a class some type registered with `shows`)."""
    return _VIEWS[type(source)](source)


def maybe_view(source: Any | None) -> Any | None:
    return None if source is None else view_of(source)


class ModelNode(relay.Node):
    """A Node built from a Tortoise row: fields are copied by name, the row kept as `model`.

    `loader` names the per-request DataLoader that fetches visible rows by id for `node(id:)`.
    """

    loader: ClassVar[str]
    renamed: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_model(cls, model: Any) -> Self:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name == "model":
                kwargs["model"] = model
                continue
            attr = cls.renamed.get(f.name, f.name)
            if hasattr(model, attr):
                kwargs[f.name] = getattr(model, attr)
        return cls(**kwargs)

    @classmethod
    def maybe(cls, model: Any | None) -> Self | None:
        return None if model is None else cls.from_model(model)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Self | None]:
        ids: list[int | None] = []
        for raw in node_ids:
            try:
                ids.append(int(raw))
            except (TypeError, ValueError):
                ids.append(None)
        loader = getattr(info.context.loaders, cls.loader)
        valid = [i for i in ids if i is not None]
        rows = dict(zip(valid, await loader.load_many(valid), strict=True))
        return [cls.maybe(rows.get(i)) if i is not None else None for i in ids]


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type
class Connection(Generic[N]):
    edges: list[Edge[N]]
    page_info: PageInfo
    total_count: int

    @strawberry.field(description="The nodes of `edges`, for clients that need no cursors.")
    def nodes(self) -> list[N]:
        return [e.node for e in self.edges]

    @classmethod
    def of(cls, page: Page[Any], node_type: Any = None) -> Connection[Any]:
        """A page as a connection; its items shown by `node_type.from_model`, or by `view_of` without one."""
        build = node_type.from_model if node_type is not None else view_of
        edges = [Edge(cursor=c, node=build(m)) for m, c in zip(page.items, page.cursors, strict=True)]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
            total_count=page.total_count,
        )
