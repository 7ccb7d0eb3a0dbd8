"""Applies `domain.access.policy` to every GraphQL operation of an API key or an embed token, before it runs.

The check reads the document, not the results: an API key's permissions are checked against the root fields of
the operation being executed, and an embed token's sections against every field the document selects (with its
parent type, fragments included). A refused operation runs nothing at all and answers one FORBIDDEN error (no
`data`, like any operation that never started).
Sessions skip all of it: people are governed by roles and visibility alone.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import (
    BREAK,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_operation_ast,
    visit,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from domain.access.policy import OperationKind, embed_may_read, machine_refusal
from domain.errors import ErrorCode
from domain.viewer import Viewer


def _root_fields(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: set[str]
) -> Iterator[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            seen.add(selection.name.value)
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                yield from _root_fields(fragment.selection_set, fragments, seen)


class _EmbedFields(Visitor):
    """Stops at the first field an embed token may not read."""

    def __init__(self, viewer: Viewer, type_info: TypeInfo) -> None:
        super().__init__()
        self.viewer = viewer
        self.type_info = type_info
        self.refused: str | None = None

    def enter_field(self, node: FieldNode, *_: object) -> object:
        parent = self.type_info.get_parent_type()
        if parent is not None and not embed_may_read(self.viewer, parent.name, node.name.value):
            self.refused = f"{parent.name}.{node.name.value}"
            return BREAK
        return None


def refusal(viewer: Viewer, schema: GraphQLSchema, document: DocumentNode, operation_name: str | None) -> str | None:
    """Why a machine token may not run this operation; None when it may."""
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        return None  # graphql-core reports the missing operation itself
    kind = OperationKind(operation.operation.value)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    for field in _root_fields(operation.selection_set, fragments, set()):
        if field.startswith("__"):
            continue
        reason = machine_refusal(viewer, kind, field)
        if reason:
            return reason
    if viewer.embed_token_id is not None:
        type_info = TypeInfo(schema)
        fields = _EmbedFields(viewer, type_info)
        visit(document, TypeInfoVisitor(type_info, fields))
        if fields.refused:
            return "Embed tokens can only read the sections they were issued for."
    return None


class MachineAccessGuard(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        viewer: Viewer | None = getattr(context.context, "viewer", None)
        if viewer is not None and viewer.is_machine and context.graphql_document is not None:
            reason = refusal(viewer, context.schema._schema, context.graphql_document, context.operation_name)
            if reason:
                error = GraphQLError(reason, extensions={"code": str(ErrorCode.FORBIDDEN)})
                if context.operation_type is OperationType.SUBSCRIPTION:
                    raise error  # the subscription stream reports it as its one result
                # A result set before execution replaces it: nothing runs.
                context.result = ExecutionResult(data=None, errors=[error])
        yield
