"""Persisted operations: Apollo's automatic persisted queries (hash first, register on PersistedQueryNotFound, GET by
hash) and the trusted-documents mode (PERSISTED_ONLY) refusing what the clients' documents do not contain."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from server.embed import WIDGET_OPERATIONS
from server.graphql import GraphQLView
from server.persisted import PersistedDocuments, PersistedQueryError, load_allowlist
from server.settings import get_settings
from tests.conftest import REDIS_URL

QUERY = "query Typename { __typename }"
OTHER = "query Other { me { id } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}


def code(response: httpx.Response) -> str:
    return response.json()["errors"][0]["extensions"]["code"]


@pytest.fixture
async def apq_client(database: str) -> AsyncIterator[httpx.AsyncClient]:
    """/graphql with automatic persisted queries kept in this process (a query of its own, never seen before)."""
    view = GraphQLView(get_settings(), PersistedDocuments(only=False, allowlist={}))
    app = Starlette(routes=[Route("/graphql", view, methods=["GET", "POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def test_apq_round_trip(apq_client: httpx.AsyncClient) -> None:
    text = f"query Probe{uuid.uuid4().hex[:8]} {{ __typename }}"
    # when the client sends the hash alone: the server does not know it yet
    unknown = await apq_client.post("/graphql", json={"extensions": apq(text)})
    strict = await apq_client.post(
        "/graphql", json={"extensions": apq(text)}, headers={"accept": "application/graphql-response+json"}
    )
    # then it answers PersistedQueryNotFound, with 200 so Apollo Client retries instead of switching APQ off
    assert unknown.status_code == strict.status_code == 200
    assert unknown.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    assert code(unknown) == code(strict) == "PERSISTED_QUERY_NOT_FOUND"
    assert "data" not in unknown.json()
    # when the client sends the query with its hash: it runs and is registered
    registered = await apq_client.post("/graphql", json={"query": text, "extensions": apq(text)})
    assert registered.json() == {"data": {"__typename": "Query"}}
    # then the hash alone is enough, by POST and by GET (a short URL a CDN can cache)
    by_hash = await apq_client.post("/graphql", json={"extensions": apq(text)})
    by_get = await apq_client.get("/graphql", params={"extensions": json.dumps(apq(text))})
    assert by_hash.json() == by_get.json() == {"data": {"__typename": "Query"}}
    assert by_get.status_code == 200
    assert {"accept", "authorization"} <= {v.strip().lower() for v in by_get.headers["vary"].split(",")}


async def test_apq_refuses_a_hash_that_does_not_match_and_mutations_by_get(apq_client: httpx.AsyncClient) -> None:
    # when
    mismatch = await apq_client.post("/graphql", json={"query": QUERY, "extensions": apq(OTHER)})
    version = await apq_client.post(
        "/graphql", json={"extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha(QUERY)}}}
    )
    not_hex = await apq_client.post(
        "/graphql", json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "x" * 64}}}
    )
    mutation = "mutation { logout { errors { code } } }"
    await apq_client.post("/graphql", json={"query": mutation, "extensions": apq(mutation)})
    by_get = await apq_client.get("/graphql", params={"extensions": json.dumps(apq(mutation))})
    # then
    for response in (mismatch, version, not_hex):
        assert response.status_code == 400 and code(response) == "BAD_REQUEST"
    assert by_get.status_code == 405  # a registered mutation still needs POST


@pytest.fixture
def allowlist(tmp_path: Path) -> Path:
    """The clients' documents, as graphql-codegen's client preset writes them (`persisted-documents.json`)."""
    path = tmp_path / "persisted-documents.json"
    path.write_text(json.dumps({sha(QUERY): QUERY}))
    return path


@pytest.fixture
async def trusted_client(database: str, allowlist: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = get_settings().model_copy(update={"persisted_only": True, "persisted_documents": allowlist})
    persisted = PersistedDocuments.for_deployment(
        only=True, path=allowlist, builtin=WIDGET_OPERATIONS.values(), redis_url=None, key_prefix="pd"
    )
    app = Starlette(routes=[Route("/graphql", GraphQLView(settings, persisted), methods=["GET", "POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def test_persisted_only_runs_the_clients_documents_and_refuses_the_rest(
    trusted_client: httpx.AsyncClient,
) -> None:
    # when the clients' document is sent by hash, by documentId, by GET, or as its exact text
    by_hash = await trusted_client.post("/graphql", json={"extensions": apq(QUERY)})
    by_id = await trusted_client.post("/graphql", json={"documentId": f"sha256:{sha(QUERY)}"})
    by_get = await trusted_client.get("/graphql", params={"documentId": sha(QUERY)})
    as_text = await trusted_client.post("/graphql", json={"query": QUERY})
    # then it runs
    for response in (by_hash, by_id, by_get, as_text):
        assert response.json() == {"data": {"__typename": "Query"}}, response.text
    # when anything else is sent: as text, as text with its hash (APQ's registration), or by an unknown hash
    other = await trusted_client.post("/graphql", json={"query": OTHER})
    register = await trusted_client.post("/graphql", json={"query": OTHER, "extensions": apq(OTHER)})
    unknown = await trusted_client.post("/graphql", json={"extensions": apq(OTHER)})
    again = await trusted_client.post("/graphql", json={"extensions": apq(OTHER)})
    # then it is refused with a code, nothing runs and nothing is registered
    assert other.status_code == register.status_code == 400
    assert code(other) == code(register) == "PERSISTED_QUERY_NOT_IN_LIST"
    assert "data" not in other.json()
    assert code(unknown) == code(again) == "PERSISTED_QUERY_NOT_FOUND"


async def test_the_embed_widgets_documents_are_always_trusted(trusted_client: httpx.AsyncClient) -> None:
    persisted = PersistedDocuments.for_deployment(
        only=True, path=None, builtin=WIDGET_OPERATIONS.values(), redis_url=None, key_prefix="pd"
    )
    for text in WIDGET_OPERATIONS.values():
        assert await persisted.resolve(text, None) == text  # the socket asks the same question
    with pytest.raises(PersistedQueryError) as refused:
        await persisted.resolve("subscription { creditsUpdated(customerId: 1) { id } }", None)
    assert refused.value.code == "PERSISTED_QUERY_NOT_IN_LIST"


def test_apollo_manifests_and_bad_files(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": "abc", "name": "Typename", "type": "query", "body": QUERY}],
            }
        )
    )
    assert load_allowlist(manifest) == {"abc": QUERY, sha(QUERY): QUERY}
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([QUERY]))
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_allowlist(broken)


def test_persisted_only_needs_an_allowlist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PERSISTED_DOCUMENTS"):
        get_settings().model_validate({"persisted_only": True})
    with pytest.raises(ValueError, match="no file"):
        get_settings().model_validate({"persisted_documents": str(tmp_path / "missing.json")})


@pytest.mark.redis
async def test_registered_documents_are_shared_through_redis() -> None:
    prefix = f"pd-test-{uuid.uuid4().hex[:6]}"
    first = PersistedDocuments(only=False, allowlist={}, redis_url=REDIS_URL, key_prefix=prefix)
    second = PersistedDocuments(only=False, allowlist={}, redis_url=REDIS_URL, key_prefix=prefix)
    try:
        # when one process registers a document
        assert await first.resolve(QUERY, apq(QUERY)) == QUERY
        # then another finds it by hash
        assert await second.resolve(None, apq(QUERY)) == QUERY
    finally:
        await first.close()
        await second.close()
