"""Regressions from the adversarial review (issue 11), through the ASGI app: operations that ran unbounded, requests
that answered a 500 or a masked internal error for a mistake of the client's, and production defaults."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

import resolvers.accounts
import schema.extensions
from domain.common.validation import json_problem
from domain.reports import links
from server.app import metrics
from server.graphql import GraphQLView
from server.logging import RequestIdMiddleware
from server.settings import Settings
from tests.conftest import GQL, TEST_DATABASE_URL, Factory, gid

GRJ = {"accept": "application/graphql-response+json"}
NESTED_PAGES = """
query($partner: ID!, $outer: Int, $inner: Int) {
  partner(id: $partner) {
    customers(first: $outer) { nodes { partner { customers(first: $inner) { nodes { partner {
      customers(first: 3) { nodes { id } } } } } } } }
  }
}"""


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def internal(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in body.get("errors", []) if (e.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR"]


def app_with(settings: Settings, *routes: Route) -> Starlette:
    """The GraphQL view (and any other routes) configured with `settings`, mounted alone."""
    view = GraphQLView(settings)
    app = Starlette(
        routes=[Route("/graphql", view, methods=["GET", "POST"]), *routes], middleware=[Middleware(RequestIdMiddleware)]
    )
    app.state.settings = settings
    return app


@pytest.fixture
async def prod_client(database: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(app_env="prod", secret_key="p" * 48, database_url=TEST_DATABASE_URL)
    app = app_with(settings, Route("/metrics", metrics))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


# --- item 4: query cost --------------------------------------------------------------------------------------------


async def test_nested_pages_past_the_cost_limit_are_refused_before_running(
    client: httpx.AsyncClient, gql: GQL, factory: Factory
) -> None:
    # given the review's query: a partner's customers, each with its partner's customers, each with …
    tenant = await factory.tenant(customers=2)
    token = await gql.login(tenant.owner.email)
    variables = {"partner": gid("Partner", tenant.partner.id), "outer": 100, "inner": 100}
    # when
    refused = await client.post(
        "/graphql", json={"query": NESTED_PAGES, "variables": variables}, headers={**GRJ, **bearer(token)}
    )
    small = await client.post(
        "/graphql",
        json={"query": NESTED_PAGES, "variables": {**variables, "outer": 10, "inner": 10}},
        headers={**GRJ, **bearer(token)},
    )
    # then: a request error with the limit's code, and nothing in it tells how far one may go
    assert refused.status_code == 400, refused.text
    [error] = refused.json()["errors"]
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert not re.search(r"\d", error["message"]), error["message"]
    assert "data" not in refused.json()
    # the same document with small pages (taken from the variables) runs
    assert small.status_code == 200, small.text
    assert len(small.json()["data"]["partner"]["customers"]["nodes"]) == 2


async def test_a_query_running_past_the_timeout_is_stopped_with_a_coded_error(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a server whose operations may run 50 ms, and a deliberately slow resolver
    async def slow_me(ctx: Any) -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(resolvers.accounts, "me", slow_me)
    settings = Settings(execution_timeout_seconds=0.05, database_url=TEST_DATABASE_URL)
    transport = httpx.ASGITransport(app=app_with(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        # when
        response = await client.post("/graphql", json={"query": "{ me { id } }"}, headers=GRJ)
    # then: the operation had started, so `data` is there (null) and the status 200
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "TIMEOUT"}


# --- item 6: a failed field no longer cancels its siblings' shared loads ---------------------------------------------


async def test_a_failing_field_beside_a_shared_load_answers_json(
    client: httpx.AsyncClient, gql: GQL, factory: Factory
) -> None:
    # given the review's query: `b.campaigns` fails (bad cursor) while `a` and `b` wait for the same loader key
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    customer = gid("Customer", tenant.customers[0].id)
    query = (
        f'{{ a: customer(id: "{customer}") {{ features {{ id }} }}'
        f' b: customer(id: "{customer}") {{ features {{ id }} campaigns(after: "x") {{ totalCount }} }} }}'
    )
    # when
    response = await client.post("/graphql", json={"query": query}, headers=bearer(token))
    # then
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"]["a"]["features"]["id"]
    assert body["data"]["b"] is None
    [error] = body["errors"]
    assert error["path"] == ["b", "campaigns"]
    assert error["extensions"] == {"code": "INVALID", "field": "after"}


# --- item 10: small 500s -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer pd_live_\xb2_x", b"Bearer pd_embed_\xb2_x", b"Bearer pd_live_1\xb2_secret", b"Bearer pd_sess_\xb2"],
    ids=["api-key-id", "embed-id", "api-key-digit-suffix", "session"],
)
async def test_a_unicode_digit_in_a_token_is_401(client: httpx.AsyncClient, authorization: bytes) -> None:
    # when (latin-1 header bytes: b"\xb2" arrives as "²", which str.isdigit() accepts and int() refuses)
    response = await client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers=[(b"authorization", authorization)]
    )
    # then
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "path",
    [
        "/exports/%C2%B2.1900000000.c2lnbmF0dXJl",
        "/exports/1.%C2%B2.c2lnbmF0dXJl",
        "/exports/1." + "9" * 5000 + ".c2lnbmF0dXJl",
        "/exports/1.1900000000.%C3%A9t%C3%A9",
    ],
    ids=["unicode-report-id", "unicode-expiry", "5000-digit-expiry", "unicode-signature"],
)
async def test_malformed_export_links_are_403(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 403, response.text


async def test_export_links_still_verify() -> None:
    # given a link signed for an hour
    token = links.sign(42, datetime.now(UTC) + timedelta(hours=1))
    # then it verifies, and once altered it does not
    assert links.verify(token) == 42
    with pytest.raises(links.LinkInvalid):
        links.verify(token[:-1] + ("A" if token[-1] != "A" else "B"))


@pytest.mark.parametrize(
    "raw",
    [
        *("Wallet:abc", "SpendingCap:abc", "CreditBalance:abc", "FeatureToggles:abc", "Node:1", "Customer:²"),
        *("Wallet:-1", "Customer:1_0", "Customer: 1", "Wallet:99999999999", "Error:1", "Query:1"),
    ],
)
async def test_node_with_a_malformed_id_is_null(
    client: httpx.AsyncClient, gql: GQL, factory: Factory, raw: str
) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    node_id = base64.b64encode(raw.encode()).decode()
    # when
    response = await client.post(
        "/graphql",
        json={"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": node_id}},
        headers=bearer(token),
    )
    # then: like any id that names nothing the viewer can see (DESIGN: "null when it does not exist")
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"node": None}}


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("query($v: DateTime) { auditEvents(filter: {from: $v}) { totalCount } }", "0001-01-01T00:00:00+05:00"),
        ("query($v: DateTime) { auditEvents(filter: {to: $v}) { totalCount } }", "9999-12-31T23:59:59-05:00"),
        (
            "query($c: ID!, $v: DateTime) { usageEvents(customerId: $c, filter: {from: $v}) { totalCount } }",
            "0001-01-01T00:00:00+00:01",
        ),
        (
            "query($c: ID!, $v: DateTime) { usageEvents(customerId: $c, filter: {to: $v}) { totalCount } }",
            "9999-12-31T23:00:00-01:00",
        ),
    ],
    ids=["audit-from-year-1", "audit-to-year-9999", "usage-from-year-1", "usage-to-year-9999"],
)
async def test_datetimes_outside_utc_are_invalid(
    client: httpx.AsyncClient, gql: GQL, factory: Factory, query: str, value: str
) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    variables = {"c": gid("Customer", tenant.customers[0].id), "v": value} if "$c" in query else {"v": value}
    # when
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={**GRJ, **bearer(token)}
    )
    # then
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "INVALID"
    assert "DateTime" in error["message"]


async def test_datetimes_at_the_edges_of_utc_still_filter(
    client: httpx.AsyncClient, gql: GQL, factory: Factory
) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.owner.email)
    query = '{ auditEvents(filter: {from: "0001-01-01T00:00:00Z", to: "9999-12-31T23:59:59Z"}) { totalCount } }'
    # when
    response = await client.post("/graphql", json={"query": query}, headers=bearer(token))
    # then
    assert response.status_code == 200, response.text
    assert response.json()["data"]["auditEvents"]["totalCount"] > 0


# --- item 11: production defaults ----------------------------------------------------------------------------------

INTROSPECTION = "{ __schema { queryType { name } } }"


async def test_prod_refuses_introspection_to_anonymous_callers(
    prod_client: httpx.AsyncClient, gql: GQL, factory: Factory
) -> None:
    # given
    tenant = await factory.tenant(customers=0)
    token = await gql.login(tenant.owner.email)
    # when
    anonymous = await prod_client.post("/graphql", json={"query": INTROSPECTION}, headers=GRJ)
    by_type = await prod_client.post("/graphql", json={"query": '{ __type(name: "Customer") { name } }'}, headers=GRJ)
    typename = await prod_client.post("/graphql", json={"query": "{ __typename }"}, headers=GRJ)
    signed_in = await prod_client.post("/graphql", json={"query": INTROSPECTION}, headers={**GRJ, **bearer(token)})
    # then
    for refused in (anonymous, by_type):
        assert refused.status_code == 400, refused.text
        assert [e["extensions"]["code"] for e in refused.json()["errors"]] == ["FORBIDDEN"]
    assert typename.json() == {"data": {"__typename": "Query"}}
    assert signed_in.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_a_setting_keeps_introspection_public_in_prod(database: str) -> None:
    settings = Settings(app_env="prod", secret_key="p" * 48, public_introspection=True, database_url=TEST_DATABASE_URL)
    transport = httpx.ASGITransport(app=app_with(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/graphql", json={"query": INTROSPECTION})
    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_introspection_stays_open_outside_prod(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": INTROSPECTION})
    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_prod_metrics_need_the_metrics_token(prod_client: httpx.AsyncClient, database: str) -> None:
    # given a production server without METRICS_TOKEN, and one with
    settings = Settings(app_env="prod", secret_key="p" * 48, metrics_token="scrape-me", database_url=TEST_DATABASE_URL)
    transport = httpx.ASGITransport(app=app_with(settings, Route("/metrics", metrics)))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as guarded:
        # when
        without_token = await prod_client.get("/metrics")
        anonymous = await guarded.get("/metrics")
        wrong = await guarded.get("/metrics", headers=bearer("guess"))
        right = await guarded.get("/metrics", headers=bearer("scrape-me"))
    # then
    assert without_token.status_code == 404
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200 and "partnerdesk_asyncio_tasks" in right.text


async def test_metrics_stay_open_outside_prod(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200


class Recorder:
    """Stands in for a structlog logger: which level each event was logged at, and with what."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))

        return record


async def test_client_errors_are_logged_at_info_and_unexpected_ones_at_error(
    client: httpx.AsyncClient,
    gql: GQL,
    factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given
    recorder = Recorder()
    monkeypatch.setattr(schema.extensions, "log", recorder)
    tenant = await factory.tenant(customers=1)
    _, other_owner = await factory.partner()
    token = await gql.login(other_owner.email)

    async def boom(ctx: Any) -> None:
        raise RuntimeError("database on fire")

    # when: a typo, a customer of another tenant (NOT_FOUND in a payload-less query), and a bug
    await client.post("/graphql", json={"query": "{ mee }"}, headers=bearer(token))
    await client.post(
        "/graphql",
        json={
            "query": "query($c: ID!) { usageEvents(customerId: $c) { totalCount } }",
            "variables": {"c": gid("Customer", tenant.customers[0].id)},
        },
        headers=bearer(token),
    )
    monkeypatch.setattr(resolvers.accounts, "me", boom)
    await client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={**bearer(token), "x-request-id": "req-logged-0001"}
    )
    # then
    client_errors = [(level, fields) for level, event, fields in recorder.events if event == "client_error"]
    assert [(level, fields["code"]) for level, fields in client_errors] == [("info", "INVALID"), ("info", "NOT_FOUND")]
    assert all("exc_info" not in fields for _, fields in client_errors)
    [unexpected] = [(level, fields) for level, event, fields in recorder.events if event == "unexpected_error"]
    assert unexpected[0] == "error"
    assert unexpected[1]["request_id"] == "req-logged-0001" and isinstance(unexpected[1]["exc_info"], RuntimeError)
    assert not [r for r in caplog.records if r.name == "strawberry.execution"]  # Strawberry's own ERROR lines are gone


# NUL, a lone surrogate and non-ASCII text beside plain letters: what the one-pass check must get right
_TEXT = st.text(alphabet=st.sampled_from(["a", "b", "\x00", "é", "\ud800", '"']), max_size=40)


@given(
    st.dictionaries(_TEXT.filter(lambda t: len(t) <= 12), _TEXT, max_size=8),
    st.integers(min_value=0, max_value=300),
)
@settings(max_examples=300, deadline=None)
def test_flat_metadata_is_judged_as_the_full_walk_judges_it(value: dict[str, str], max_bytes: int) -> None:
    """`json_problem` answers flat text objects in one pass; wrapped in a list (one level and 2 bytes more) the same
    object takes the full walk: both must agree (NUL, surrogates, non-ASCII text, the size limit at its edge)."""
    alone = json_problem(value, max_depth=3, max_bytes=max_bytes)
    walked = json_problem([value], max_depth=4, max_bytes=max_bytes + 2)
    assert (alone is None) == (walked is None)
    if alone is not None and walked is not None and not walked.startswith("Must be at most"):
        assert alone == walked
