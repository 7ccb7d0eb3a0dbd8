"""Every error code a client can receive is a value of the schema's `ErrorCode` enum (so generated client types
cover it), described in the schema and documented in docs/api.md; the guide lists every root field, and the README
links only inside the repository (a clone has no ../shared/)."""

from __future__ import annotations

import json
import re

import httpx

from schema import schema
from tests.conftest import ROOT

DOCS = ROOT / "docs" / "api.md"


def schema_codes() -> set[str]:
    enum = schema._schema.get_type("ErrorCode")
    return set(enum.values)  # type: ignore[union-attr]


def codes_of(response: httpx.Response) -> set[str]:
    body = response.json()
    if "error" in body:  # the ingestion endpoint's shape
        return {body["error"]["code"]}
    return {e["extensions"]["code"] for e in body["errors"]}


async def test_transport_failures_answer_codes_of_the_enum(client: httpx.AsyncClient) -> None:
    aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(40)) + " }"
    # when each kind of failure a client can cause is provoked
    responses = [
        await client.post("/graphql", json={"query": "{ me { id } }"}, headers={"authorization": "Bearer nope"}),
        await client.post("/graphql", content=b"{", headers={"content-type": "application/json"}),
        await client.get("/graphql", params={"query": "mutation { logout { errors { code } } }"}),
        await client.post("/graphql", json={"query": "{ me { id } }"}, headers={"accept": "text/csv"}),
        await client.post("/graphql", content=b"x" * 1_000_001, headers={"content-type": "application/json"}),
        await client.post("/graphql", content=b"{}", headers={"content-type": "text/plain"}),
        await client.post("/graphql", json={"query": aliases}),
        await client.post("/graphql", json={"query": "{ nope }"}),
        await client.post("/graphql", json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "a" * 64}}}),
        await client.post("/v1/usage/events", json=[], headers={"authorization": "Bearer nope"}),
    ]
    # then every code is one of the enum's
    received = set().union(*(codes_of(r) for r in responses))
    assert received >= {
        "UNAUTHENTICATED",
        "BAD_REQUEST",
        "METHOD_NOT_ALLOWED",
        "NOT_ACCEPTABLE",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "QUERY_TOO_COMPLEX",
        "INVALID",
        "PERSISTED_QUERY_NOT_FOUND",
    }, received
    assert received <= schema_codes(), received - schema_codes()


def test_every_code_is_described_in_the_schema_and_documented() -> None:
    enum = schema._schema.get_type("ErrorCode")
    undescribed = [name for name, value in enum.values.items() if not value.description]  # type: ignore[union-attr]
    assert undescribed == []
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", DOCS.read_text(), re.M))
    assert schema_codes() - documented == set(), "codes missing from docs/api.md"


def test_the_readme_points_only_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)[^)]*\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert "../shared" not in readme
    assert all((ROOT / link).exists() for link in local), [link for link in local if not (ROOT / link).exists()]
    assert json.dumps(local)  # the README does link the guide
    assert "docs/api.md" in local


def test_the_guide_lists_every_root_field() -> None:
    guide = DOCS.read_text()
    fields = {
        name
        for root in ("Query", "Mutation", "Subscription")
        for name in schema._schema.get_type(root).fields  # type: ignore[union-attr]
    }
    missing = sorted(name for name in fields if f"`{name}" not in guide)
    assert missing == [], f"root fields missing from docs/api.md: {missing}"
