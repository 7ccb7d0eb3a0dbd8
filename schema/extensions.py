"""Execution guards from DESIGN.md §3: depth ≤ 12, aliases ≤ 30, tokens ≤ 5,000, a cost ≤ 5,000 objects
(schema/cost.py), queries bounded in time, unexpected errors masked; introspection refused where the transport
says so. schema/execution.py applies them to every operation, in this order: parse (token limit), operation type,
validation (depth, aliases, introspection), cost, a machine token's permissions, execution (time limit), masking.

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
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache, lru_cache
from typing import Any, cast

import structlog
from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
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
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.utils.str_converters import to_camel_case

from domain.access.policy import OperationKind
from domain.errors import DomainError, ErrorCode
from schema.access_guard import operation_roots
from schema.cost import counted_cost

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


def suggestions_hidden() -> bool:
    return not _suggestions_shown.get()


def strip_suggestions(errors: list[GraphQLError]) -> None:
    """Cuts "Did you mean …?" out of messages where graphql-core has no switch (variable coercion), in place: call it
    on errors of this request only, never on a cached document's."""
    for error in errors:
        if "Did you mean" in error.message:
            error.message = _SUGGESTION.sub("", error.message)


def _run_rules(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...], hide_suggestions: bool
) -> list[GraphQLError]:
    """graphql-core's validation with `rules` plus Strawberry's own two (what Strawberry's `validate_document` runs);
    with `hide_suggestions` the rules never compute a hint."""
    return validate(
        schema,
        document,
        (*rules, MaybeNullValidationRule, OneOfInputValidationRule),
        hide_suggestions=hide_suggestions,
    )


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
    four classes alive for as long as each live subscription lasted. Introspection fields do not count towards
    depth; graphql-core bounds introspection depth by itself."""
    return (
        _opaque(depth_validator(max_depth, None), "The operation is nested too deeply."),
        _opaque(alias_validator(max_aliases), "The operation uses too many aliases."),
    )


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
    cost, _ = counted_cost(schema, document, operation_name, variables)
    return _cost_refusal(cost)


def _cost_refusal(cost: int) -> GraphQLError | None:
    if cost <= MAX_COST:
        return None
    return GraphQLError(
        "The operation asks for too much at once: request smaller pages or fewer nested connections.",
        extensions={"code": LIMIT_CODE},
    )


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


@cache
def operation_rules(introspection: bool = True) -> tuple[type[ASTValidationRule], ...]:
    """Every rule an operation is validated with (besides Strawberry's two): the specified rules, the depth and
    alias limits and, when the caller may not introspect (anonymous callers in production: the schema is a map of
    everything to try), the refusal of `__schema` and `__type` (`__typename` stays available)."""
    rules = (*specified_rules, *_limit_rules(MAX_DEPTH, MAX_ALIASES))
    return rules if introspection else (*rules, _NoIntrospection)


# --- documents ---------------------------------------------------------------------------------------------------


SHARED_DOCUMENT_MAX_CHARS = 10_000  # longer texts are parsed per request: 256 huge ones would pin a lot of memory
PREPARED_MAX_ENTRIES = 256  # validated documents kept per process (as many as parsed ones)
PARSE_OPTIONS: tuple[tuple[str, Any], ...] = (("max_tokens", MAX_TOKENS),)


@lru_cache(maxsize=PREPARED_MAX_ENTRIES)
def _parse_cached(query: str, options: tuple[tuple[str, Any], ...]) -> DocumentNode:
    return parse(query, **dict(options))


class PreparedDocument:
    """A parsed and validated document with what every request of it would otherwise recompute: its validation
    errors (shared: copy one before changing it), and per operation name its operation, its kind and root fields
    (a machine token's check) and, when no page size comes from the variables, its cost.

    graphql-core never mutates a document, so one instance serves every request (and every live subscription) of
    the same text, keyed by everything validation depends on: the schema, the text, the parser options, the rules
    and whether hints are hidden. Nothing in it depends on the variables or the viewer."""

    __slots__ = ("_costs", "_operations", "_roots", "document", "errors", "schema")

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, errors: tuple[GraphQLError, ...]) -> None:
        self.schema = schema
        self.document = document
        self.errors = errors
        self._operations: dict[str | None, OperationDefinitionNode] = {}
        self._roots: dict[str | None, tuple[OperationKind, tuple[str, ...]] | None] = {}
        self._costs: dict[str | None, int] = {}

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        """The operation Strawberry runs for an `operationName` (None: the first one in the document). Only
        operations found are kept: names that match nothing could be sent without end."""
        found = self._operations.get(name)
        if found is None:
            for definition in self.document.definitions:
                if isinstance(definition, OperationDefinitionNode) and (
                    name is None or (definition.name is not None and definition.name.value == name)
                ):
                    self._operations[name] = found = definition
                    break
        return found

    def roots(self, name: str | None) -> tuple[OperationKind, tuple[str, ...]] | None:
        if name not in self._roots:
            self._roots[name] = operation_roots(self.document, name)
        return self._roots[name]

    def cost_error(self, name: str | None, variables: dict[str, Any] | None) -> GraphQLError | None:
        cost = self._costs.get(name)
        if cost is None:
            cost, read_variables = counted_cost(self.schema, self.document, name, variables)
            if not read_variables:
                self._costs[name] = cost
        return _cost_refusal(cost)


_prepared: OrderedDict[tuple[Any, ...], PreparedDocument] = OrderedDict()  # LRU


def prepare(
    schema: GraphQLSchema, query: str, rules: tuple[type[ASTValidationRule], ...], *, hidden: bool
) -> PreparedDocument | list[GraphQLError]:
    """`query` parsed (token limit) and validated with `rules` for the graphql-core `schema`, from the bounded
    caches when the text is short enough; or the parse error (as the parser put it: `opaque_parse_limit` hides a
    limit's numbers). Hints are left out of validation messages when `hidden`."""
    cacheable = len(query) <= SHARED_DOCUMENT_MAX_CHARS
    key = (schema, query, PARSE_OPTIONS, rules, hidden)
    if cacheable:
        prepared = _prepared.get(key)
        if prepared is not None:
            _prepared.move_to_end(key)
            return prepared
    try:
        document = _parse_cached(query, PARSE_OPTIONS) if cacheable else parse(query, **dict(PARSE_OPTIONS))
    except GraphQLError as error:
        return [error]
    prepared = PreparedDocument(schema, document, tuple(_run_rules(schema, document, rules, hidden)))
    if cacheable:
        _prepared[key] = prepared
        if len(_prepared) > PREPARED_MAX_ENTRIES:
            _prepared.popitem(last=False)
    return prepared


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
    validation errors of a document are shared between requests (PreparedDocument)."""
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
    field, every other one coded, suggestions cut unless shown. Operations run by schema/execution.py get the
    same from `client_errors`."""
    if _is_unexpected(error):
        return _anonymised(error, request_id)
    log_client_error(error, request_id)
    if isinstance(error.original_error, DomainError):
        return _coded(error)
    if not suggestions and "Did you mean" in error.message:
        error.message = _SUGGESTION.sub("", error.message)
    return _with_code(error)


def mask_unexpected(errors: list[GraphQLError], request_id: str) -> list[GraphQLError]:
    """The transport's last pass: an exception raised while guarding or starting an operation reaches the result
    unmasked (schema/execution.py, as Strawberry did for its extensions' hooks); it is masked here all the same."""
    return [_anonymised(e, request_id) if _is_unexpected(e) else e for e in errors]


def client_errors(errors: list[GraphQLError], request_id: str, *, hidden: bool) -> list[GraphQLError]:
    """What a client may see of an operation's errors (logged already): unexpected exceptions behind a message
    carrying the request id (and logged with it), DomainErrors with their code and field, every other error coded,
    hints cut when `hidden`. Validation errors and DomainErrors raised by queries stay readable."""
    shown = [
        _anonymised(e, request_id)
        if _is_unexpected(e)
        else _coded(e)
        if isinstance(e.original_error, DomainError)
        else _with_code(e)
        for e in errors
    ]
    if hidden:
        strip_suggestions(shown)
    return shown


# --- transports that run graphql-core directly (server/live.py) --------------------------------------------------


def prepare_document(schema: Any, query: str, *, suggestions: bool = False) -> DocumentNode | list[GraphQLError]:
    """The document of `query` parsed and validated for the Strawberry `schema` exactly as over HTTP (token, depth
    and alias limits, Strawberry's rules), from the same cache; or the errors a client may see."""
    prepared = prepare(schema._schema, query, operation_rules(), hidden=not suggestions)
    if isinstance(prepared, list):
        return [opaque_parse_limit(error) for error in prepared]
    return list(prepared.errors) if prepared.errors else prepared.document
