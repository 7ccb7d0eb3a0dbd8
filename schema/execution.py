"""How every GraphQL operation runs (over HTTP, and one-shot operations on a socket): the guards of
schema/extensions.py and schema/access_guard.py around graphql-core's executor, as one straight function.

It does what Strawberry's `Schema.execute` did with the guards as schema extensions, in the same order and with the
same results, errors and logs, without the cost of extension hooks (each hook of each extension was wrapped in a
fresh context manager on every request: at call rate that cost more than the operations it guarded):

1. no query → `MissingQueryError`; the text parsed (token limit) and validated (depth, aliases, introspection)
   once per distinct text, schema, rules and suggestion setting (`PreparedDocument`, a bounded cache);
2. the operation to run: `operationName`, else the first one (Strawberry's choice); none → `CannotGetOperationTypeError`,
   a type the transport does not allow (a mutation over GET) → `InvalidOperationTypeError`;
3. validation errors → no execution;
4. the cost limit (kept with the document when no page size comes from the variables), then a machine token's
   permissions (checked against the document's root fields, kept with it too);
5. graphql-core's execution (`BoundedExecution`: the time limit);
6. errors the client caused logged at INFO, then every error made fit for the client (`client_errors`).

An exception raised by the guards themselves answers one error, logged but not masked here: the transports mask it
(`mask_unexpected` over HTTP, `client_error` on sockets), as they did when Strawberry caught it outside its hooks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import GraphQLError, execute
from strawberry.exceptions import MissingQueryError
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.await_maybe import await_maybe
from strawberry.utils.operation import get_first_operation

from domain.viewer import Viewer
from schema.access_guard import forbidden, refusal
from schema.extensions import client_errors, log_client_error, operation_rules, prepare, suggestions_hidden

DEFAULT_ALLOWED_OPERATION_TYPES = frozenset(OperationType)


def _logged(errors: list[GraphQLError], request_id: str | None) -> list[GraphQLError]:
    for error in errors:
        log_client_error(error, request_id)
    return errors


async def execute_operation(
    strawberry_schema: Any,
    query: str | None,
    variable_values: dict[str, Any] | None = None,
    context_value: Any | None = None,
    root_value: Any | None = None,
    operation_name: str | None = None,
    allowed_operation_types: Iterable[OperationType] | None = None,
    operation_extensions: dict[str, Any] | None = None,
) -> ExecutionResult:
    """Runs one operation of `strawberry_schema` (see the module docstring); raises only what Strawberry raised
    (no query, no operation to run, an operation type not allowed), for the transport to answer."""
    if not query:
        raise MissingQueryError
    allowed = DEFAULT_ALLOWED_OPERATION_TYPES if allowed_operation_types is None else allowed_operation_types
    request_id = getattr(context_value, "request_id", None)
    hidden = suggestions_hidden()
    schema = strawberry_schema._schema
    try:
        rules = operation_rules(getattr(context_value, "introspection", True))
        prepared = prepare(schema, query, rules, hidden=hidden)
        if isinstance(prepared, list):  # does not parse
            errors = client_errors(_logged(prepared, request_id), request_id or "", hidden=hidden)
            return ExecutionResult(None, errors, extensions={})
        document = prepared.document
        # the operation Strawberry runs: the named one, else the first one (under its name, if it has one)
        if operation_name is None:
            first = get_first_operation(document)
            operation_name = first.name.value if first is not None and first.name is not None else None
        operation = prepared.operation(operation_name)
        if operation is None:
            raise CannotGetOperationTypeError(operation_name)
        operation_type = OperationType(operation.operation.value)
        if operation_type not in allowed:
            raise InvalidOperationTypeError(operation_type)
        if prepared.errors:
            errors = _logged(list(prepared.errors), request_id)
            return ExecutionResult(None, client_errors(errors, request_id or "", hidden=hidden), extensions={})

        # refusals set before execution: nothing runs, and (as before) they are not logged as client errors
        refused = prepared.cost_error(operation_name, variable_values)
        viewer: Viewer | None = getattr(context_value, "viewer", None)
        if viewer is not None and viewer.is_machine:
            reason = refusal(viewer, schema, document, operation_name, prepared.roots(operation_name))
            if reason:
                if operation_type is OperationType.SUBSCRIPTION:
                    raise forbidden(reason)  # answered like an exception of the guard (below)
                refused = forbidden(reason)
        if refused is not None:
            return ExecutionResult(None, client_errors([refused], request_id or "", hidden=hidden), extensions={})

        result = await await_maybe(
            execute(
                schema,
                document,
                root_value=root_value,
                context_value=context_value,
                variable_values=variable_values,
                operation_name=operation_name,
                executor_class=strawberry_schema.execution_context_class,
                is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]  # a TypeGuard in all but name
                operation_extensions=operation_extensions,
            )
        )
    except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError):
        raise
    except Exception as exc:  # answered as the operation's one error, masked by the transport
        error = exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
        return ExecutionResult(None, _logged([error], request_id), extensions={})
    if not result.errors:
        return ExecutionResult(result.data, None, extensions={})
    errors = client_errors(_logged(list(result.errors), request_id), request_id or "", hidden=hidden)
    return ExecutionResult(result.data, errors, extensions={})
