"""Input objects built from a plan made once per type (Strawberry's `from_input` hook), not by Strawberry's generic
conversion, which resolved every field's annotation and recomputed its GraphQL name on every request: a small
mutation's input cost ~25 µs, `usageRecord`'s events ~10 µs each.

graphql-core has already coerced the value (scalars parsed, enums as members, nothing missing that is required);
what is left is what Strawberry's `convert_argument` does, branch for branch: `None` and `UNSET` stay as they are,
leaves (scalars, enums) as they are, a list of leaves copied (graphql-core may share a default list between
requests), a `GlobalID` decoded from its string, an input object built with its fields' values under their Python
names (absent fields without a default: `None`). Any other type (none in this schema today) goes through
Strawberry's own conversion. Types with `Maybe` fields keep Strawberry's way: a `from_input` hook would make
Strawberry skip the check of their explicit nulls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

import strawberry
from strawberry.relay import GlobalID
from strawberry.relay.types import GlobalIDValueError, InvalidGlobalIDError
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import StrawberryList, StrawberryMaybe, StrawberryObjectDefinition, StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.lazy_type import LazyType
from strawberry.types.unset import UNSET

Convert = Callable[[Any, InputContext, str], Any]  # (value, the input's context, the field's GraphQL name)


class InputBuilder:
    """The `from_input` of one input type: its fields' plan is made on first use (the schema is complete then)."""

    def __init__(self, definition: StrawberryObjectDefinition, registry: Mapping[object, Any]) -> None:
        self.definition = definition
        self.registry = registry
        self._plan: list[tuple[str, str, Convert | None]] | None = None
        self._absent: dict[str, None] = {}

    def plan(self, context: InputContext) -> list[tuple[str, str, Convert | None]]:
        if self._plan is None:
            definition = self.definition
            self._absent = {
                f.python_name: None
                for f in definition.fields
                if f.default_value is MISSING and f.default_factory is MISSING
            }
            self._plan = [
                (
                    context.config.name_converter.from_field(f),
                    f.python_name,
                    self.converter(f.resolve_type(type_definition=definition)),
                )
                for f in definition.fields
            ]
        return self._plan

    def __call__(self, cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
        plan = self.plan(context)
        kwargs: dict[str, Any] = dict(self._absent)
        for graphql_name, python_name, convert in plan:
            if graphql_name in value:
                item = value[graphql_name]
                kwargs[python_name] = (
                    item if convert is None or item is None or item is UNSET else convert(item, context, graphql_name)
                )
        return cls(**kwargs)

    def _is_leaf(self, type_: Any) -> bool:
        if isinstance(type_, LazyType):
            type_ = type_.resolve_type()
        if type_ is GlobalID:  # a scalar, yet decoded (below)
            return False
        return (
            is_scalar(type_, self.registry) or isinstance(type_, StrawberryEnumDefinition) or has_enum_definition(type_)
        )

    def converter(self, type_: Any) -> Convert | None:
        """How to convert a value of `type_` (neither None nor UNSET); None: as it is."""
        if isinstance(type_, StrawberryOptional) and not isinstance(type_, StrawberryMaybe):
            type_ = type_.of_type  # None and UNSET never reach a converter
        if isinstance(type_, LazyType):
            type_ = type_.resolve_type()
        if self._is_leaf(type_):
            return None
        if type_ is GlobalID:
            return _global_id
        if isinstance(type_, StrawberryList):
            item = type_.of_type
            if isinstance(item, StrawberryOptional) and not isinstance(item, StrawberryMaybe):
                item = item.of_type
            if self._is_leaf(item):
                return _copied
            convert_item = self.converter(item)
            if convert_item is None:  # cannot happen: only leaves convert as they are
                return _generic(type_)

            def each(value: Any, context: InputContext, name: str) -> Any:
                return [x if x is None or x is UNSET else convert_item(x, context, name) for x in value]

            return each
        nested = getattr(type_, "__strawberry_definition__", None)
        if isinstance(nested, StrawberryObjectDefinition) and isinstance(nested.from_input, InputBuilder):
            build, cls = nested.from_input, type_

            def built(value: Any, context: InputContext, name: str) -> Any:
                return build(cls, value, context)

            return built
        return _generic(type_)


def _global_id(value: Any, context: InputContext, name: str) -> Any:
    try:
        return GlobalID.from_id(value)
    except GlobalIDValueError as error:  # like the built-in scalars, instead of the decoding error
        raise InvalidGlobalIDError(f'Value cannot represent a GlobalID: "{value}".') from error


def _copied(value: Any, context: InputContext, name: str) -> Any:
    return list(value)


def _generic(type_: Any) -> Convert:
    def convert(value: Any, context: InputContext, name: str) -> Any:
        return convert_argument(
            value, type_, context.scalar_registry, context.config, context.info, path=(*context.path, name)
        )

    return convert


def install_input_builders(schema: strawberry.Schema) -> int:
    """Gives every input type of `schema` without a `from_input` (and without `Maybe` fields) an `InputBuilder`;
    returns how many."""
    registry = schema.schema_converter.scalar_registry
    count = 0
    for concrete in list(schema.schema_converter.type_map.values()):
        definition = concrete.definition
        if not isinstance(definition, StrawberryObjectDefinition) or not definition.is_input:
            continue
        if definition.from_input is not None or any(isinstance(f.type, StrawberryMaybe) for f in definition.fields):
            continue
        definition.from_input = InputBuilder(definition, registry)
        count += 1
    return count
