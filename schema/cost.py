"""What an operation may cost before it runs: how many objects it can resolve.

Every field of an object type (or a list of them) costs one per object it is resolved on; a field that takes
`first` (a connection) multiplies the lists directly beneath it (`nodes`, `edges`) by its page size, so a
connection nested in a connection costs the product of their pages. Leaves cost nothing (they are read from rows
already loaded), nor do introspection fields (graphql-core bounds introspection itself). Other lists count once:
their length is bounded by the domain (a user's memberships, a rate card). Everything is an upper bound: both
branches of `@skip`/`@include` and every fragment of an abstract type count.

The count needs the variables (`first: $n`), so it runs after validation, once per execution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    is_composite_type,
    is_list_type,
    value_from_ast_untyped,
)

from resolvers.common import DEFAULT_PAGE, MAX_PAGE

# Far beyond any limit: what a document too convoluted to count costs.
UNCOUNTABLE = 2**62


def operation_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None
) -> int:
    """The cost of the operation `operation_name` of a validated `document` with these (raw) variables."""
    return counted_cost(schema, document, operation_name, variables)[0]


def counted_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None
) -> tuple[int, bool]:
    """`operation_cost` and whether it read any variable: when it did not, the cost is the same for every request
    of this document and operation (schema/extensions.py keeps it with the validated document)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0, False
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0, False
    counter = _Counter(schema, document, operation, variables or {})
    try:
        return counter.selections(operation.selection_set, root, None), counter.read_variables
    except RecursionError:  # thousands of fragments spreading each other: no honest client sends that
        return UNCOUNTABLE, counter.read_variables


class _Counter:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.variables = dict(variables)
        self.defaults = {
            d.variable.name.value: value_from_ast_untyped(d.default_value)
            for d in operation.variable_definitions or ()
            if d.default_value is not None
        }
        # a fragment costs the same wherever it is spread (for the same page size): counted once
        self.memo: dict[tuple[str, int | None], int] = {}
        self.read_variables = False  # whether a page size came from the variables

    def selections(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType, page: int | None) -> int:
        """The cost of one object of type `parent`; `page` is its own page size when `parent` is a connection."""
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                own = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selections(selection.selection_set, own or parent, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value, page)
        return total

    def fragment(self, name: str, page: int | None) -> int:
        key = (name, page)
        if key not in self.memo:
            definition = self.fragments.get(name)
            own = self.schema.get_type(definition.type_condition.name.value) if definition else None
            self.memo[key] = self.selections(definition.selection_set, own, page) if definition and own else 0
        return self.memo[key]

    def field(self, node: FieldNode, parent: GraphQLNamedType, page: int | None) -> int:
        name = node.name.value
        definition = getattr(parent, "fields", {}).get(name) if not name.startswith("__") else None
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if not is_composite_type(named):
            return 0
        count = page if page is not None and is_list_type(get_nullable_type(definition.type)) else 1
        own_page = self.page_size(node) if "first" in definition.args else None
        return count * (1 + self.selections(node.selection_set, named, own_page))

    def page_size(self, node: FieldNode) -> int:
        """`first` as the resolver will see it: absent or null is the default page; beyond the bounds the
        resolver refuses it, so the bound is what it can cost; a value that will not coerce costs the most."""
        argument = next((a for a in node.arguments or () if a.name.value == "first"), None)
        value: Any = None
        if argument is not None:
            if isinstance(argument.value, VariableNode):
                self.read_variables = True
                name = argument.value.name.value
                value = self.variables.get(name, self.defaults.get(name))
            elif isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif not isinstance(argument.value, NullValueNode):
                value = MAX_PAGE
        if value is None:
            return DEFAULT_PAGE
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            return MAX_PAGE
        return min(max(value, 0), MAX_PAGE)
