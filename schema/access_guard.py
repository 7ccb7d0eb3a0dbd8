"""Applies `domain.access.policy` to every GraphQL operation of an API key or an embed token, before it runs
(schema/execution.py over HTTP and for one-shot operations on a socket, server/live.py for subscriptions).

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


def operation_roots(document: DocumentNode, operation_name: str | None) -> tuple[OperationKind, tuple[str, ...]] | None:
    """The kind and root fields (introspection left out) of the operation a machine token's check reads; None when
    the document has no such operation (graphql-core reports that itself). Depends on the document only: kept with
    the validated document (schema/extensions.py)."""
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        return None
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    fields = (f for f in _root_fields(operation.selection_set, fragments, set()) if not f.startswith("__"))
    return OperationKind(operation.operation.value), tuple(fields)


def refusal(
    viewer: Viewer,
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    roots: tuple[OperationKind, tuple[str, ...]] | None = None,
) -> str | None:
    """Why a machine token may not run this operation; None when it may. `roots`: `operation_roots` of the same
    document and operation, when the caller has them already."""
    roots = roots or operation_roots(document, operation_name)
    if roots is None:
        return None
    kind, fields = roots
    for field in fields:
        reason = machine_refusal(viewer, kind, field)
        if reason:
            return reason
    if viewer.embed_token_id is not None:
        type_info = TypeInfo(schema)
        embed_fields = _EmbedFields(viewer, type_info)
        visit(document, TypeInfoVisitor(type_info, embed_fields))
        if embed_fields.refused:
            return "Embed tokens can only read the sections they were issued for."
    return None


def forbidden(reason: str) -> GraphQLError:
    """The one error of an operation a machine token may not run."""
    return GraphQLError(reason, extensions={"code": str(ErrorCode.FORBIDDEN)})
