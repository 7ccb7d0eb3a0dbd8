"""GraphQL over HTTP at /graphql: the public `graphql-http` audit against a real server, then the rules the audit
does not cover (limits, masking, body cap, auth, suggestions, request ids), each through the ASGI app."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

import resolvers.accounts
from schema.extensions import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from server.graphql import GraphQLView
from server.logging import RequestIdMiddleware
from server.settings import Settings
from tests import servers
from tests.conftest import TEST_DATABASE_URL
from tests.servers import fresh_database

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
GRJ = {"accept": GRAPHQL_RESPONSE_JSON}
NPM_PREFIX = Path("/tmp/partnerdesk-graphql-http")
AUDIT_JS = """
const { auditServer } = require(process.argv[1] + '/node_modules/graphql-http');
auditServer({ url: process.argv[2] }).then((results) => {
  process.stdout.write(JSON.stringify(results.map(({ id, name, status, reason }) => ({ id, name, status, reason }))));
});
"""


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def the_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "data" not in body, body
    assert len(body["errors"]) == 1, body
    return body["errors"][0]


# --- the graphql-http audit against uvicorn ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def graphql_http() -> Path:
    """graphql-http from npm, installed once into a cache directory under /tmp; skipped (loudly) without node."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"{' and '.join(missing)} not installed: the graphql-http audit was NOT run"
        print(f"\n!!!!!!!!!! {message} !!!!!!!!!!", file=sys.stderr)
        pytest.skip(message)
    if not (NPM_PREFIX / "node_modules" / "graphql-http" / "package.json").exists():
        subprocess.run(
            ["npm", "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund", "graphql-http@1", "graphql@16"],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    return NPM_PREFIX


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """`uvicorn server.app:create_app --factory` on a free loopback port, over a freshly migrated database."""
    with fresh_database(tmp_path) as url, servers.live_server(url, tmp_path) as base:
        yield f"{base}/graphql"


@pytest.mark.slow
def test_graphql_http_audit_passes_without_warnings(graphql_http: Path, live_server: str) -> None:
    # when
    run = subprocess.run(
        ["node", "-e", AUDIT_JS, str(graphql_http), live_server],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # then
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    counts = {status: sum(r["status"] == status for r in results) for status in ("ok", "warn", "error")}
    print(
        f"\ngraphql-http audit: {counts['ok']} ok, {counts['warn']} warnings, {counts['error']} errors"
        f" of {len(results)}"
    )
    failures = [f"{r['status']} {r['id']} {r['name']}: {r['reason']}" for r in results if r["status"] != "ok"]
    assert failures == [], "\n".join(failures)
    assert counts["ok"] == len(results) >= 61


# --- media types and status codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/json", "application/json"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON};q=0.5", "application/json"),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, */*", "application/json"),
    ],
)
async def test_response_media_type_follows_accept(client: httpx.AsyncClient, accept: str | None, expected: str) -> None:
    # when
    headers = {"accept": accept} if accept is not None else {}
    response = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    # then
    assert response.status_code == 200, response.text
    assert media_type(response) == expected
    assert "charset=utf-8" in response.headers["content-type"]
    assert "accept" in response.headers["vary"].lower()
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_accept_without_a_json_type_is_406(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ __typename }"}, headers={"accept": "text/xml"})
    assert response.status_code == 406
    assert the_error(response)["extensions"]["code"] == "NOT_ACCEPTABLE"


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{", None),  # parse
        ("{ thisFieldDoesNotExist }", None),  # validation
        ("query($s: CustomerStatus) { customers(filter: {status: $s}) { totalCount } }", {"s": "NOPE"}),  # coercion
        ("query($n: Int) { customers(first: $n) { totalCount } }", {"n": "ten"}),  # coercion of a scalar
    ],
    ids=["parse", "validation", "enum-coercion", "scalar-coercion"],
)
async def test_request_errors_have_no_data_and_400_under_graphql_response_json(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None
) -> None:
    payload = {"query": query, "variables": variables}
    # when
    strict = await client.post("/graphql", json=payload, headers=GRJ)
    legacy = await client.post("/graphql", json=payload, headers={"accept": "application/json"})
    # then
    assert strict.status_code == 400, strict.text
    assert media_type(strict) == GRAPHQL_RESPONSE_JSON
    assert legacy.status_code == 200, legacy.text  # the spec keeps 200 for application/json clients
    assert media_type(legacy) == "application/json"
    for response in (strict, legacy):
        error = the_error(response)  # no `data` entry under either media type
        assert "Unexpected error" not in error["message"]


async def test_validation_errors_stay_readable(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ mee }"}, headers=GRJ)
    assert response.status_code == 400
    message = the_error(response)["message"]
    assert message.startswith("Cannot query field 'mee' on type 'Query'.")
    assert "Did you mean 'me'?" in message  # shown outside prod


async def test_get_runs_queries_and_refuses_mutations(client: httpx.AsyncClient) -> None:
    # when
    query = await client.get("/graphql", params={"query": "{ __typename }"})
    variables = await client.get(
        "/graphql",
        params={"query": "query($n: Int) { customers(first: $n) { totalCount } }", "variables": '{"n": 1}'},
        headers=GRJ,
    )
    no_variables = await client.get("/graphql", params={"query": "{ __typename }", "variables": "null"})
    mutation = await client.get("/graphql", params={"query": "mutation { logout { ok } }"}, headers=GRJ)
    # then
    for response in (query, no_variables):
        assert response.status_code == 200, response.text
        assert response.json() == {"data": {"__typename": "Query"}}
    assert variables.status_code == 200, variables.text
    assert mutation.status_code == 405
    assert mutation.headers["allow"] == "POST"
    assert the_error(mutation)["extensions"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{ "not a JSON', "application/json", 400, "BAD_REQUEST"),
        (b"", "application/json", 400, "BAD_REQUEST"),
        (b"42", "application/json", 400, "BAD_REQUEST"),
        (b"null", "application/json", 400, "BAD_REQUEST"),
        (b'"{ __typename }"', "application/json", 400, "BAD_REQUEST"),
        (b"[]", "application/json", 400, "BAD_REQUEST"),  # batching is off
        (b'{"query": "{ __typename }", "variables": [1]}', "application/json", 400, "BAD_REQUEST"),
        (b'{"query": 7}', "application/json", 400, "BAD_REQUEST"),
        (b'{"qeury": "{ __typename }"}', "application/json", 400, "BAD_REQUEST"),
        (b'{"query": "{ __typename }", "operationName": {"a": 1}}', "application/json", 400, "BAD_REQUEST"),
        (b'{"query": "\xff\xfe"}', "application/json", 400, "BAD_REQUEST"),
        (b'{"variables": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400, "BAD_REQUEST"),
        (b'{"query": "{ __typename }"}', None, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"query": "{ __typename }"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"query=%7B__typename%7D", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"{ __typename }", "application/graphql", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
    ids=[
        "malformed",
        "empty",
        "number",
        "null",
        "string",
        "batch",
        "variables-list",
        "query-not-string",
        "missing-query",
        "operation-name-object",
        "not-utf8",
        "nested-json",
        "no-content-type",
        "text-plain",
        "form",
        "application-graphql",
    ],
)
async def test_bad_requests_get_a_json_4xx_never_a_500(
    client: httpx.AsyncClient, content: bytes, content_type: str | None, status: int, code: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    # when
    response = await client.post("/graphql", content=content, headers=headers)
    # then
    assert response.status_code == status, response.text
    assert media_type(response) == "application/json"
    error = the_error(response)
    assert error["extensions"]["code"] == code
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


# --- limits ------------------------------------------------------------------------------------------------------


def nested(depth: int) -> str:
    """A query whose selections nest `depth` object fields deep: partner → customers → nodes → partner → …
    (pages of one, so that only its depth counts)"""
    fields = ['partner(id: "x")'] + [("customers(first: 1)", "nodes", "partner")[i % 3] for i in range(depth - 1)]
    return "{ " + "".join(f"{field} {{ " for field in fields) + "__typename" + " }" * depth + " }"


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: __typename" for i in range(count)) + " }"


def comments(count: int) -> str:
    # Comments are tokens too: a document cannot dodge the token limit by padding itself with them.
    return "{ __typename }\n" + "# padding\n" * count


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (nested(MAX_DEPTH + 1), "The operation is nested too deeply."),
        (nested(200), "The operation is nested too deeply."),
        (aliases(MAX_ALIASES + 1), "The operation uses too many aliases."),
        (aliases(1500), "The operation uses too many aliases."),  # 4,500 tokens
        ("{ " + "__typename " * (MAX_TOKENS + 1) + "}", "The document is too large."),
        (comments(MAX_TOKENS + 1), "The document is too large."),
        ("{ " + "a(x: 1) " * 50_000 + "}", "The document is too large."),
        ("{ " + "a { " * 50_000 + "}" * 50_000 + " }", "The operation is nested too deeply."),  # parser's guard
    ],
    ids=["depth", "depth-bomb", "aliases", "alias-bomb", "tokens", "comment-tokens", "token-bomb", "nesting-bomb"],
)
async def test_limits_reject_bombs_without_telling_the_limit(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    # when
    response = await client.post("/graphql", json={"query": query}, headers=GRJ)
    # then
    assert response.status_code == 400, response.text[:500]
    error = the_error(response)
    assert error == {"message": message, "extensions": {"code": "QUERY_TOO_COMPLEX"}}


@pytest.mark.parametrize(
    "query", [nested(MAX_DEPTH), aliases(MAX_ALIASES), comments(MAX_TOKENS - 100)], ids=["depth", "aliases", "tokens"]
)
async def test_limits_allow_operations_at_the_limit(client: httpx.AsyncClient, query: str) -> None:
    response = await client.post("/graphql", json={"query": query}, headers=GRJ)
    assert response.status_code == 200, response.text
    assert "errors" not in response.json()


async def test_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    body = json.dumps({"query": "{ __typename }", "variables": {"pad": "x" * 1_000_001}}).encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap must hold while reading
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    # when
    declared = await client.post("/graphql", content=body, headers={"content-type": "application/json"})
    streamed = await client.post("/graphql", content=chunks(), headers={"content-type": "application/json"})
    # then
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert the_error(response)["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


# --- errors, auth, request ids ---------------------------------------------------------------------------------


async def test_unexpected_exception_is_masked_with_the_request_id(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(ctx: Any) -> None:
        raise RuntimeError("secret connection string postgres://admin:hunter2@db")

    monkeypatch.setattr(resolvers.accounts, "me", boom)
    # when
    response = await client.post(
        "/graphql", json={"query": "{ __typename me { id } }"}, headers={**GRJ, "x-request-id": "req-masking-0001"}
    )
    # then: a field error, so the partial data stays and the status is 200
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"__typename": "Query", "me": None}
    [error] = body["errors"]
    assert error["message"] == "Unexpected error. Quote request id req-masking-0001 to support."
    assert error["path"] == ["me"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-masking-0001"}
    assert "hunter2" not in response.text and "RuntimeError" not in response.text


async def test_invalid_bearer_token_is_401_with_www_authenticate(client: httpx.AsyncClient) -> None:
    for authorization in ("Bearer not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer "):
        response = await client.post(
            "/graphql", json={"query": "{ me { id } }"}, headers={"authorization": authorization}
        )
        assert response.status_code == 401, authorization
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert the_error(response)["extensions"]["code"] == "UNAUTHENTICATED"


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    # when
    given = await client.post("/graphql", json={"query": "{ __typename }"}, headers={"x-request-id": "abc-123-def"})
    made = await client.post("/graphql", json={"query": "{ __typename }"})
    unsafe = await client.post("/graphql", json={"query": "{"}, headers={"x-request-id": "<script>"})
    # then
    assert given.headers["x-request-id"] == "abc-123-def"
    assert len(made.headers["x-request-id"]) >= 8
    assert unsafe.headers["x-request-id"] != "<script>"


# --- production ------------------------------------------------------------------------------------------------


@pytest.fixture
async def prod_client(database: str) -> AsyncIterator[httpx.AsyncClient]:
    """The same view configured as in production (APP_ENV=prod), mounted alone."""
    settings = Settings(app_env="prod", secret_key="p" * 48, database_url=TEST_DATABASE_URL)
    view = GraphQLView(settings)
    app = Starlette(
        routes=[Route("/graphql", view, methods=["GET", "POST"])], middleware=[Middleware(RequestIdMiddleware)]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def test_prod_hides_field_suggestions(prod_client: httpx.AsyncClient) -> None:
    # when
    field = await prod_client.post("/graphql", json={"query": "{ mee }"})
    enum_literal = await prod_client.post(
        "/graphql", json={"query": "{ customers(filter: {status: ACTIV}) { totalCount } }"}
    )
    enum_variable = await prod_client.post(
        "/graphql",
        json={
            "query": "query($s: CustomerStatus) { customers(filter: {status: $s}) { totalCount } }",
            "variables": {"s": "ACTIV"},
        },
    )
    # then
    assert the_error(field)["message"] == "Cannot query field 'mee' on type 'Query'."
    for response in (field, enum_literal, enum_variable):
        assert response.status_code == 200
        assert "Did you mean" not in response.text
        assert "ACTIVE" not in response.text, response.text


async def test_prod_serves_no_graphiql(prod_client: httpx.AsyncClient) -> None:
    response = await prod_client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert the_error(response)["extensions"]["code"] == "NOT_FOUND"
