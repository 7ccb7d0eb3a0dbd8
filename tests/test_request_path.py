"""The lean per-request path (issue 13): operations run by schema/execution.py from validated documents kept in a
bounded cache, inputs built by schema/inputs.py, JSON POSTs answered by the view's fast path, and POSTs without an
`Origin` through one collapsed middleware layer. Each must answer exactly what the general path answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    coerce_input_value,
)
from starlette.applications import Starlette
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import StrawberryObjectDefinition

import schema.extensions
import server.graphql
from domain.viewer import Viewer
from schema import schema as app_schema
from schema.execution import execute_operation
from schema.extensions import (
    MAX_DEPTH,
    PREPARED_MAX_ENTRIES,
    SHARED_DOCUMENT_MAX_CHARS,
    PreparedDocument,
    field_suggestions,
    operation_rules,
    prepare,
)
from schema.inputs import InputBuilder
from tests.conftest import GQL, Factory, gid
from tests.test_http import GRJ, nested

# --- input objects ---------------------------------------------------------------------------------------------

SCALAR_SAMPLES: dict[str, Any] = {
    "String": "text",
    "ID": "Q3VzdG9tZXI6MQ==",  # a valid global id (Customer:1) wherever a GlobalID is expected
    "Int": 3,
    "Float": 1.5,
    "Boolean": True,
    "Decimal": "12.50",
    "DateTime": "2026-03-04T05:06:07Z",
    "Date": "2026-03-04",
    "JSON": {"a": [1, "b"]},
}


def sample(type_: GraphQLInputType, *, nulls: bool, depth: int = 0) -> Any:
    """A JSON value of `type_` with every field sent (nullable ones as null when `nulls`); raises LookupError for a
    type with no sample (an upload)."""
    if isinstance(type_, GraphQLNonNull):
        return sample(type_.of_type, nulls=False, depth=depth)
    if nulls and depth > 0:
        return None
    if isinstance(type_, GraphQLList):
        return [sample(type_.of_type, nulls=False, depth=depth + 1)]
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLScalarType):
        return SCALAR_SAMPLES[type_.name]
    assert isinstance(type_, GraphQLInputObjectType)
    return {name: sample(f.type, nulls=nulls, depth=depth + 1) for name, f in type_.fields.items()}


def required_only(type_: GraphQLInputObjectType) -> dict[str, Any]:
    """The value with only the non-null fields sent (the others take their defaults)."""
    return {
        name: sample(f.type, nulls=False, depth=1)
        for name, f in type_.fields.items()
        if isinstance(f.type, GraphQLNonNull)
    }


@contextmanager
def generic_conversion() -> Iterator[None]:
    """Strawberry's own conversion, field by field: every InputBuilder taken off for the block."""
    builders = [
        (c.definition, c.definition.from_input)
        for c in app_schema.schema_converter.type_map.values()
        if isinstance(c.definition, StrawberryObjectDefinition) and isinstance(c.definition.from_input, InputBuilder)
    ]
    for definition, _ in builders:
        definition.from_input = None
    try:
        yield
    finally:
        for definition, builder in builders:
            definition.from_input = builder


def test_every_input_type_is_built_as_strawberry_would() -> None:
    registry = app_schema.schema_converter.scalar_registry
    context = InputContext(info=None, config=app_schema.config, scalar_registry=registry, path=())
    compared = 0
    for concrete in app_schema.schema_converter.type_map.values():
        definition = concrete.definition
        if not isinstance(definition, StrawberryObjectDefinition) or not definition.is_input:
            continue
        assert isinstance(definition.from_input, InputBuilder), definition.name
        graphql_type = app_schema._schema.type_map[definition.name]
        assert isinstance(graphql_type, GraphQLInputObjectType)
        for nulls in (False, True):
            try:
                value = coerce_input_value(sample(graphql_type, nulls=nulls), graphql_type)
            except (LookupError, Exception):  # no sample for an upload, or a value one of its scalars refuses
                continue
            for with_optional in (value, coerce_input_value(required_only(graphql_type), graphql_type)):
                ours = definition.from_input(definition.origin, with_optional, context)
                with generic_conversion():
                    theirs = convert_argument(with_optional, definition.origin, registry, app_schema.config)
                assert ours == theirs, definition.name
                assert type(ours) is type(theirs)
                compared += 1
    assert compared >= 150  # 81 input types today, each with and without its optional fields


# --- validated documents -----------------------------------------------------------------------------------------


@strawberry.type
class OtherQuery:
    hello: str = "world"


OTHER = strawberry.Schema(query=OtherQuery)


def test_a_document_is_never_served_for_another_schema_or_other_rules() -> None:
    rules = operation_rules()
    # when
    here = prepare(app_schema._schema, "{ hello }", rules, hidden=True)
    there = prepare(OTHER._schema, "{ hello }", rules, hidden=True)
    here_again = prepare(app_schema._schema, "{ hello }", rules, hidden=True)
    no_introspection = prepare(
        app_schema._schema, "{ __schema { queryType { name } } }", operation_rules(False), hidden=True
    )
    introspection = prepare(app_schema._schema, "{ __schema { queryType { name } } }", rules, hidden=True)
    # then
    assert isinstance(here, PreparedDocument) and isinstance(there, PreparedDocument)
    assert [e.message for e in here.errors] == ["Cannot query field 'hello' on type 'Query'."]
    assert there.errors == ()
    assert here_again is here  # cached
    assert isinstance(no_introspection, PreparedDocument) and isinstance(introspection, PreparedDocument)
    assert [e.extensions["code"] for e in no_introspection.errors] == ["FORBIDDEN"]
    assert introspection.errors == ()


def test_the_document_cache_is_bounded_and_skips_long_texts() -> None:
    rules = operation_rules()
    for i in range(PREPARED_MAX_ENTRIES + 50):
        prepare(app_schema._schema, f"{{ a{i}: __typename }}", rules, hidden=True)
    assert len(schema.extensions._prepared) <= PREPARED_MAX_ENTRIES
    long = "{ __typename " + " " * SHARED_DOCUMENT_MAX_CHARS + "}"
    first, second = (prepare(app_schema._schema, long, rules, hidden=True) for _ in range(2))
    assert isinstance(first, PreparedDocument) and isinstance(second, PreparedDocument)
    assert first is not second
    assert not any(key[1] == long for key in schema.extensions._prepared)


async def test_operation_names_that_match_nothing_are_not_kept() -> None:
    query = "query A { __typename } query B { __typename }"
    for i in range(50):
        with pytest.raises(CannotGetOperationTypeError):
            await execute_operation(app_schema, query, operation_name=f"X{i}", context_value=_Context(Viewer()))
    for name in ("A", "B", None):
        result = await execute_operation(app_schema, query, operation_name=name, context_value=_Context(Viewer()))
        assert result.errors is None and result.data == {"__typename": "Query"}
    prepared = prepare(app_schema._schema, query, operation_rules(), hidden=True)
    assert isinstance(prepared, PreparedDocument) and set(prepared._operations) == {"A", "B"}


async def test_a_cached_document_still_enforces_the_depth_limit(client: httpx.AsyncClient) -> None:
    for query, expected in ((nested(MAX_DEPTH + 1), "QUERY_TOO_COMPLEX"), (nested(MAX_DEPTH), None)):
        for _ in range(3):  # parsed and validated once, answered the same every time
            response = await client.post("/graphql", json={"query": query}, headers=GRJ)
            errors = response.json().get("errors") or []
            codes = {e["extensions"]["code"] for e in errors}
            if expected:
                assert response.status_code == 400 and codes == {expected}, response.text
            else:
                assert "QUERY_TOO_COMPLEX" not in codes, response.text


@dataclass
class _Context:
    viewer: Viewer
    request_id: str = "req-path-0001"
    introspection: bool = True
    execution_timeout: float | None = None


async def test_hidden_and_shown_suggestions_and_introspection_are_kept_apart() -> None:
    anonymous = Viewer.anonymous()
    typo, introspect = "{ customerz { totalCount } }", "{ __schema { queryType { name } } }"
    for _ in range(2):
        with field_suggestions(True):
            shown = await execute_operation(app_schema, typo, context_value=_Context(anonymous))
        hidden = await execute_operation(app_schema, typo, context_value=_Context(anonymous))
        refused = await execute_operation(
            app_schema, introspect, context_value=_Context(anonymous, introspection=False)
        )
        allowed = await execute_operation(app_schema, introspect, context_value=_Context(anonymous))
        assert shown.errors and "Did you mean" in shown.errors[0].message
        assert hidden.errors and "Did you mean" not in hidden.errors[0].message
        assert refused.errors and refused.errors[0].extensions == {"code": "FORBIDDEN"}
        assert allowed.errors is None and allowed.data == {"__schema": {"queryType": {"name": "Query"}}}


async def test_the_cost_of_pages_sized_by_variables_is_counted_for_every_request() -> None:
    query = "query($n: Int) { customers(first: $n) { nodes { partner { customers(first: $n) { nodes { id } } } } } }"
    admin = Viewer.system()
    for n, refused in ((2, False), (100, True), (2, False)):
        result = await execute_operation(app_schema, query, {"n": n}, context_value=_Context(admin))
        codes = [e.extensions["code"] for e in result.errors or ()]
        assert codes == (["QUERY_TOO_COMPLEX"] if refused else []), (n, result.errors)
    prepared = prepare(app_schema._schema, query, operation_rules(), hidden=True)
    assert isinstance(prepared, PreparedDocument) and prepared._costs == {}  # never kept: it depends on $n
    static = "{ customers(first: 100) { nodes { partner { customers(first: 100) { nodes { id } } } } } }"
    for _ in range(2):
        result = await execute_operation(app_schema, static, context_value=_Context(admin))
        assert [e.extensions["code"] for e in result.errors or ()] == ["QUERY_TOO_COMPLEX"]


async def test_a_guard_failing_unexpectedly_is_masked_with_the_request_id(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("secret: the cost counter broke")

    monkeypatch.setattr(schema.extensions, "counted_cost", broken)
    # when
    response = await client.post(
        "/graphql",
        json={"query": "{ __typename a: __typename }"},
        headers={**GRJ, "x-request-id": "req-guard-0001"},
    )
    # then: the operation never started: no data, a 500 under application/graphql-response+json
    assert response.status_code == 500, response.text
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"] == "Unexpected error. Quote request id req-guard-0001 to support."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-guard-0001"}
    assert "secret" not in response.text


# --- the fast paths answer what the general ones answer ------------------------------------------------------------


@pytest.fixture
async def full_stack(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The same app without its lane for POSTs without Origin: Starlette's middleware stack and router for all."""

    async def through_starlette(scope: Any, receive: Any, send: Any) -> None:
        await Starlette.__call__(app, scope, receive, send)

    transport = httpx.ASGITransport(app=through_starlette, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


BODIES: list[tuple[bytes, dict[str, str]]] = [
    (b'{"query": "{ __typename }"}', {}),
    (b'{"query": "query Q { __typename } query R { me { id } }"}', {}),
    (b'{"query": "query Q { __typename } query R { me { id } }", "operationName": "R"}', GRJ),
    (b'{"query": "query Q { __typename }", "operationName": "Nope"}', {}),
    (b'{"query": "{ mee }"}', GRJ),
    (b'{"query": "{ mee }"}', {}),
    (b'{"query": "{"}', GRJ),
    (b'{"query": "query($n: Int!) { customers(first: $n) { totalCount } }", "variables": {"n": "x"}}', GRJ),
    (b'{"query": "query($n: Int!) { customers(first: $n) { totalCount } }", "variables": {"n": 1}}', {}),
    (b'{"query": "mutation { logout { ok } }"}', {}),
    (b'{"query": "subscription { __typename }"}', GRJ),
    (b'{"query": null}', {}),
    (b'{"query": ""}', GRJ),
    (b'{"query": 7}', {}),
    (b'{"query": "{ __typename }", "variables": [1]}', {}),
    (b'{"query": "{ __typename }", "extensions": 3}', {}),
    (b'{"query": "{ __typename }", "operationName": 5}', {}),
    (b'{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "' + b"0" * 64 + b'"}}}', {}),
    (b'{"documentId": "sha256:' + b"0" * 64 + b'"}', {}),
    (b"[]", {}),
    (b'[{"query": "{ __typename }"}]', {}),
    (b"42", {}),
    (b'{ "not JSON', {}),
    (b'{"query": "\xff"}', {}),
    (b'{"query": "{ __typename }"}', {"accept": "text/html"}),
    (b'{"query": "{ __typename }"}', {"accept": "application/json; q=0.5, application/graphql-response+json"}),
    (b'{"query": "{ __typename }"}', {"content-type": "Application/JSON; charset=UTF-8"}),
    (b'{"query": "{ __typename }"}', {"content-type": " application/json ; charset=utf-8"}),
    (b'{"query": "{ __typename }"}', {"content-type": "application/json,text/plain"}),
    (b'{"query": "{ __typename }"}', {"authorization": "Bearer nope"}),
]


def _comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    body = response.json() if response.content else None
    return response.status_code, sorted(response.headers.multi_items()), body


@pytest.mark.parametrize(("content", "headers"), BODIES)
async def test_a_post_answers_as_through_the_full_stack_and_strawberry(
    client: httpx.AsyncClient,
    full_stack: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    content: bytes,
    headers: dict[str, str],
) -> None:
    sent = {"content-type": "application/json", "x-request-id": "req-same-0001", **headers}
    # when: the lane and the JSON fast path; the full middleware stack; Strawberry's own request handling
    fast = await client.post("/graphql", content=content, headers=sent)
    stack = await full_stack.post("/graphql", content=content, headers=sent)
    monkeypatch.setattr(server.graphql, "_is_json", lambda content_type: False)
    general = await full_stack.post("/graphql", content=content, headers=sent)
    # then
    assert _comparable(fast) == _comparable(stack) == _comparable(general), fast.text
    assert fast.headers["x-request-id"] == "req-same-0001"
    assert fast.headers["vary"].endswith(", Origin")  # what CORS adds to an answer to a request without Origin


async def test_an_api_key_gets_its_rate_limit_headers_on_the_lane(
    gql: GQL, factory: Factory, client: httpx.AsyncClient
) -> None:
    from tests.test_access import enable, new_key

    tenant = await factory.tenant()
    customer = tenant.customers[0]
    await enable(customer, api_access=True)
    admin = await gql.login(tenant.admins[0].email)
    secret = await new_key(gql, admin, customer, ["READ"], tier="ENTERPRISE", limit=5)
    # when
    answers = [
        await client.post(
            "/graphql",
            json={
                "query": "query($id: ID!) { customer(id: $id) { id } }",
                "variables": {"id": gid("Customer", customer.id)},
            },
            headers={"authorization": f"Bearer {secret}"},
        )
        for _ in range(2)
    ]
    # then
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert [a.headers["ratelimit"].split(";")[1] for a in answers] == ["r=4", "r=3"]
    assert {a.headers["ratelimit-policy"] for a in answers} == {'"api-key";q=5;w=60'}
    assert all(len(a.headers["x-request-id"]) >= 8 for a in answers)
    assert json.loads(answers[0].content)["data"]["customer"]["id"] == gid("Customer", customer.id)
