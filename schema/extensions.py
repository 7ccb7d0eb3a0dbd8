"""Execution guards from DESIGN.md §3: depth ≤ 12, aliases ≤ 30, tokens ≤ 5,000, a cost ≤ 5,000 objects
(schema/cost.py), queries bounded in time, unexpected errors masked; introspection refused where the transport
says so.

A client that crosses a limit learns which kind of limit it hit, never its value: the numbers would tell an
attacker exactly how far to go. Field suggestions ("Did you mean …?") are hidden unless the transport says the
caller may see them (dev and test do; prod does not), because they let anyone map the schema without
introspection. Every error a client sees carries `extensions.code`: the guards' own, a DomainError's, INVALID for
a request that does not parse, validate or coerce, INTERNAL_SERVER_ERROR (with a request id) for anything
unexpected. Errors the client caused are logged at INFO without a traceback, unexpected ones at ERROR.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from functools import cache, lru_cache
from types import SimpleNamespace
from typing import Any, cast

import structlog
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationType,
    ValidationContext,
    ValidationRule,
    parse,
    specified_rules,
    validate,
)
from graphql import (
    ExecutionResult as CoreExecutionResult,
)
from graphql.pyutils import AwaitableOrValue
from strawberry.extensions import AddValidationRules, MaskErrors, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionResult
from strawberry.utils.str_converters import to_camel_case

from domain.errors import DomainError, ErrorCode
from schema.cost import operation_cost

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 5000
MAX_COST = 5000  # objects an operation may resolve (schema/cost.py); graphql-armor's default maximum cost

# `extensions.code` of the errors these guards produce; the HTTP view maps INTERNAL_ERROR_CODE to a 5xx.
LIMIT_CODE = str(ErrorCode.QUERY_TOO_COMPLEX)
TIMEOUT_CODE = str(ErrorCode.TIMEOUT)
INTERNAL_ERROR_CODE = str(ErrorCode.INTERNAL_SERVER_ERROR)
# A request the server could not parse, validate or coerce: the client's to fix, as INVALID is in payloads.
REQUEST_ERROR_CODE = str(ErrorCode.INVALID)

log = structlog.get_logger("partnerdesk.graphql")

# --- field suggestions -------------------------------------------------------------------------------------------

# Hidden unless a transport turns them on for the current request: forgetting to configure it errs on the safe side.
_suggestions_shown: ContextVar[bool] = ContextVar("partnerdesk_field_suggestions", default=False)
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


@contextmanager
def field_suggestions(shown: bool) -> Iterator[None]:
    """Shows or hides "Did you mean …?" hints for the operations run inside the block (and tasks it starts)."""
    token = _suggestions_shown.set(shown)
    try:
        yield
    finally:
        _suggestions_shown.reset(token)


def show_field_suggestions(shown: bool) -> None:
    """Like `field_suggestions`, for the rest of the current task (a websocket connection's)."""
    _suggestions_shown.set(shown)


def _run_rules(context: Any, hide_suggestions: bool) -> list[GraphQLError]:
    """The same rules Strawberry's `validate_document` runs (the specified rules, those added by the limiters in
    `on_operation`, and Strawberry's own two); `_schema` is the graphql-core schema."""
    return validate(
        context.schema._schema,
        context.graphql_document,
        (*context.validation_rules, MaybeNullValidationRule, OneOfInputValidationRule),
        hide_suggestions=hide_suggestions,
    )


class HideSuggestions(SchemaExtension):
    """Drops "Did you mean …?" hints from error messages when suggestions are hidden.

    Validation runs here with graphql-core's own `hide_suggestions=True` (the rules then never compute a hint);
    Strawberry then skips its validation because `pre_execution_errors` is already set. Variable coercion during
    execution has no such switch reachable from an extension, so any hint left in a message is cut afterwards.
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        hidden = not _suggestions_shown.get()
        if hidden and context.graphql_document is not None and context.validation_rules:
            if context.pre_execution_errors is None:  # SharedDocuments may have validated it already
                context.pre_execution_errors = _run_rules(context, hide_suggestions=True)
        yield

    def on_operation(self) -> Iterator[None]:
        yield
        if _suggestions_shown.get():
            return
        result = self.execution_context.result
        for error in getattr(result, "errors", None) or ():
            if "Did you mean" in error.message:
                error.message = _SUGGESTION.sub("", error.message)


# --- limits ------------------------------------------------------------------------------------------------------


class _OpaqueReports:
    """Stands in for a ValidationContext and reports one fixed message, once, whatever the rule said."""

    def __init__(self, context: ValidationContext, message: str) -> None:
        self._context = context
        self._message = message
        self._reported = False

    def report_error(self, error: GraphQLError) -> None:
        if not self._reported:
            self._reported = True
            # No nodes: the location of the offending field would give the limit away just as well.
            self._context.report_error(GraphQLError(self._message, extensions={"code": LIMIT_CODE}))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _opaque(rule: type[ValidationRule], message: str) -> type[ValidationRule]:
    """Wraps one of Strawberry's limiter rules (they do all their work in `__init__`) to hide its message."""

    class OpaqueLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            rule(cast(ValidationContext, _OpaqueReports(context, message)))

    OpaqueLimit.__name__ = OpaqueLimit.__qualname__ = f"Opaque{rule.__name__}"
    return OpaqueLimit


@cache
def _limit_rules(max_depth: int, max_aliases: int) -> tuple[type[ValidationRule], ...]:
    """Built once per limit pair: the classes are stateless, and building them per operation cost CPU and kept
    four classes alive for as long as each live subscription lasted."""
    return (
        _opaque(depth_validator(max_depth, None), "The operation is nested too deeply."),
        _opaque(alias_validator(max_aliases), "The operation uses too many aliases."),
    )


class RequestLimits(AddValidationRules):
    """Depth and alias limits (validation rules) and the token limit (parser option), with opaque messages.

    Introspection fields do not count towards depth; graphql-core bounds introspection depth by itself.
    """

    def __init__(self, max_depth: int = MAX_DEPTH, max_aliases: int = MAX_ALIASES, max_tokens: int = MAX_TOKENS):
        super().__init__(list(_limit_rules(max_depth, max_aliases)))
        self.max_tokens = max_tokens

    def on_operation(self) -> Iterator[None]:
        # `max_tokens` (unlike `max_lexical_tokens`) counts comments too, so a comment flood is cut short as well.
        self.execution_context.parse_options["max_tokens"] = self.max_tokens
        yield from super().on_operation()
        result = self.execution_context.result
        errors: list[GraphQLError] | None = getattr(result, "errors", None)
        for index, error in enumerate(errors or ()):
            cast(list[GraphQLError], errors)[index] = opaque_parse_limit(error)


def opaque_parse_limit(error: GraphQLError) -> GraphQLError:
    """A parser limit error without its numbers; any other error as it is."""
    # graphql-core ends every parser limit message (tokens, comments, nesting, length) with this sentence and puts
    # the number and the position of the abort in it.
    if isinstance(error, GraphQLSyntaxError) and error.message.endswith("Parsing aborted."):
        nested = "nested too deeply" in error.message  # the parser's own recursion guard
        message = "The operation is nested too deeply." if nested else "The document is too large."
        return GraphQLError(message, extensions={"code": LIMIT_CODE})
    return error


def cost_error(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: dict[str, Any] | None
) -> GraphQLError | None:
    """The error refusing an operation that could resolve more than MAX_COST objects; None when it may run."""
    if operation_cost(schema, document, operation_name, variables) <= MAX_COST:
        return None
    return GraphQLError(
        "The operation asks for too much at once: request smaller pages or fewer nested connections.",
        extensions={"code": LIMIT_CODE},
    )


class QueryCost(SchemaExtension):
    """Refuses, before anything runs, an operation whose pages multiply past MAX_COST objects: a partner's
    customers, each with its partner's customers, each with … would otherwise run for seconds and slow every
    other tenant on the process down. The count needs the variables, so it runs here, not during validation."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.result is None and context.graphql_document is not None:
            variables = context.variables if isinstance(context.variables, dict) else None
            error = cost_error(context.schema._schema, context.graphql_document, context.operation_name, variables)
            if error is not None:
                context.result = ExecutionResult(data=None, errors=[error])  # set before execution: nothing runs
        yield


class BoundedExecution(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor with a time limit (the context's `execution_timeout`) on queries and subscription
    pushes. Mutations run to completion: stopping one after its commit would report a failure for a change that
    happened. A query that runs out of time answers `data: null` and one TIMEOUT error."""

    def execute_operation(self, serially: bool | None = None) -> AwaitableOrValue[Any]:
        result = super().execute_operation(serially)
        timeout = getattr(self.context_value, "execution_timeout", None)
        if timeout is None or self.operation.operation is OperationType.MUTATION or not self.is_awaitable(result):
            return result
        return self._bounded(result, timeout)

    async def _bounded(self, result: Any, seconds: float) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await result
        except TimeoutError:
            log.info("operation_timed_out", request_id=getattr(self.context_value, "request_id", None))
            error = GraphQLError("The operation took too long and was stopped.", extensions={"code": TIMEOUT_CODE})
            return CoreExecutionResult(None, [error])


class _NoIntrospection(ValidationRule):
    """Refuses the two ways into the schema's description (everything else of it lies beneath them)."""

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        if node.name.value in ("__schema", "__type"):
            self.report_error(
                GraphQLError(
                    "Introspection is not available without signing in.",
                    node,
                    extensions={"code": str(ErrorCode.FORBIDDEN)},
                )
            )


class IntrospectionGuard(SchemaExtension):
    """Refuses `__schema` and `__type` when the transport says the caller may not introspect (anonymous callers
    in production: the schema is a map of everything to try). `__typename` stays available."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        if not getattr(context.context, "introspection", True):
            context.validation_rules = (*context.validation_rules, _NoIntrospection)
        yield


# --- parsing -----------------------------------------------------------------------------------------------------


SHARED_DOCUMENT_MAX_CHARS = 10_000  # longer texts are parsed per request: 256 huge ones would pin a lot of memory


@lru_cache(maxsize=256)
def _parse_cached(query: str, options: tuple[tuple[str, Any], ...]) -> DocumentNode:
    return parse(query, **dict(options))


_validated: OrderedDict[tuple[Any, ...], tuple[GraphQLError, ...]] = OrderedDict()  # LRU, as big as the parse cache


class SharedDocuments(SchemaExtension):
    """Parses and validates each distinct operation text once (bounded LRUs) and shares the document, which
    graphql-core never mutates: every live subscription of the same query then holds one AST instead of its own
    copy, and a repeated request skips validation, which cost more CPU than anything else in a small mutation and
    left hundreds of reference cycles (visitors, rule instances) per request for the garbage collector.

    Validation depends only on the schema, the document and the rules (not on variables or the viewer), so its
    errors are shared too (as a tuple; each request gets its own list). A document that does not parse is left to
    Strawberry, which parses it again and reports the error as usual (raising from this hook would escape
    Strawberry's handling of parse errors).
    """

    def __init__(self) -> None:
        super().__init__()
        self._key: tuple[Any, ...] | None = None
        self._document: DocumentNode | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        if context.graphql_document is None and query and len(query) <= SHARED_DOCUMENT_MAX_CHARS:
            with suppress(GraphQLError):
                options = tuple(sorted(context.parse_options.items()))
                context.graphql_document = self._document = _parse_cached(query, options)
                self._key = (query, options)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if (
            self._key is not None
            and context.graphql_document is self._document
            and context.validation_rules
            and context.pre_execution_errors is None
        ):
            hidden = not _suggestions_shown.get()
            key = (id(context.schema), *self._key, tuple(context.validation_rules), hidden)
            errors = _validated.get(key)
            if errors is None:
                errors = _validated[key] = tuple(_run_rules(context, hide_suggestions=hidden))
                if len(_validated) > 256:
                    _validated.popitem(last=False)
            else:
                _validated.move_to_end(key)
            context.pre_execution_errors = list(errors)
        yield


# --- masking -----------------------------------------------------------------------------------------------------


def _is_unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, DomainError | GraphQLError):
        return False
    # Located in the document but not in the response: a scalar refused the client's own input while variables or
    # literals were coerced ("Expected value of type 'Decimal' …"). The client needs that message. Everything else
    # (a resolver's exception has a path, an extension's has no location) is a bug or an outage: masked.
    return error.path is not None or not error.nodes


def _coded(error: GraphQLError) -> GraphQLError:
    """A rule refused a query's argument: say which, with the same codes mutations use in `errors`."""
    first = error.original_error.errors[0]  # type: ignore[union-attr]
    return GraphQLError(
        message=first.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions={"code": str(first.code), "field": to_camel_case(first.field) if first.field else None},
    )


def _anonymised(error: GraphQLError, request_id: str) -> GraphQLError:
    log.error("unexpected_error", request_id=request_id, path=error.path, exc_info=error.original_error)
    return GraphQLError(
        message=f"Unexpected error. Quote request id {request_id} to support.",
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": INTERNAL_ERROR_CODE, "requestId": request_id},
    )


def _with_code(error: GraphQLError) -> GraphQLError:
    """`error` with a code: its own, or INVALID (a request that did not parse, validate or coerce). A copy: the
    validation errors of a document are shared between requests (SharedDocuments)."""
    error = opaque_parse_limit(error)
    if (error.extensions or {}).get("code"):
        return error
    return GraphQLError(
        message=error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions={**(error.extensions or {}), "code": REQUEST_ERROR_CODE},
    )


def log_client_error(error: GraphQLError, request_id: str | None) -> None:
    """An error the client caused, at INFO and without a traceback: it is no fault of ours, yet worth counting.
    Unexpected errors are logged at ERROR, with their traceback, where they are masked."""
    if _is_unexpected(error):
        return
    original = error.original_error
    if isinstance(original, DomainError) and original.errors:
        code: Any = str(original.errors[0].code)
    else:
        code = (error.extensions or {}).get("code") or REQUEST_ERROR_CODE
    log.info("client_error", request_id=request_id, code=code, path=error.path, message=error.message)


def client_error(error: GraphQLError, request_id: str, *, suggestions: bool = False) -> GraphQLError:
    """What a client may see of an error: unexpected ones masked (and logged), DomainErrors with their code and
    field, every other one coded, suggestions cut unless shown. The HTTP path gets the same from the extensions
    below."""
    if _is_unexpected(error):
        return _anonymised(error, request_id)
    log_client_error(error, request_id)
    if isinstance(error.original_error, DomainError):
        return _coded(error)
    if not suggestions and "Did you mean" in error.message:
        error.message = _SUGGESTION.sub("", error.message)
    return _with_code(error)


def mask_unexpected(errors: list[GraphQLError], request_id: str) -> list[GraphQLError]:
    """The transport's last pass: an exception raised by an extension hook reaches the result without passing
    through MaskUnexpectedErrors (Strawberry catches it outside the extensions); it is masked here all the same."""
    return [_anonymised(e, request_id) if _is_unexpected(e) else e for e in errors]


class MaskUnexpectedErrors(MaskErrors):
    """Hides unexpected exceptions behind a message carrying the request id, and logs them with it.

    Validation errors and DomainErrors raised by queries stay readable.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_unexpected)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [
            _coded(e) if isinstance(e.original_error, DomainError) else _with_code(e)
            for e in super()._process_errors(errors)
        ]

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return _anonymised(error, getattr(self.execution_context.context, "request_id", ""))


# --- transports that run graphql-core directly (server/live.py) --------------------------------------------------


def prepare_document(schema: Any, query: str, *, suggestions: bool = False) -> DocumentNode | list[GraphQLError]:
    """The document of `query` parsed and validated for the Strawberry `schema` exactly as over HTTP (token, depth
    and alias limits, Strawberry's rules), from the same caches; or the errors a client may see."""
    options = (("max_tokens", MAX_TOKENS),)
    try:
        if len(query) <= SHARED_DOCUMENT_MAX_CHARS:
            document = _parse_cached(query, options)
        else:
            document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as error:
        return [opaque_parse_limit(error)]
    rules = (*specified_rules, *_limit_rules(MAX_DEPTH, MAX_ALIASES))
    hidden = not suggestions
    key = (id(schema), query, options, rules, hidden)
    errors = _validated.get(key)
    if errors is None:
        context = SimpleNamespace(schema=schema, graphql_document=document, validation_rules=rules)
        errors = tuple(_run_rules(context, hide_suggestions=hidden))
        if len(query) <= SHARED_DOCUMENT_MAX_CHARS:
            _validated[key] = errors
            if len(_validated) > 256:
                _validated.popitem(last=False)
    return list(errors) if errors else document


def default_extensions() -> list[Any]:
    return [RequestLimits, IntrospectionGuard, SharedDocuments, HideSuggestions, QueryCost, MaskUnexpectedErrors]
