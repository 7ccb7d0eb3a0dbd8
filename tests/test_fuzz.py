"""Schema fuzzing: operations generated from the schema itself (hypothesis-graphql), sent as real HTTP requests
through the ASGI app by signed-in users (a partner admin and a customer member), on whatever database the suite
runs on.

The oracle, for every response, whatever the operation and its arguments:
1. the status is not 5xx, and the body is GraphQL-shaped JSON (`data` and/or `errors`);
2. no error has the code INTERNAL_SERVER_ERROR: every generated operation is valid against the schema, so anything
   it provokes is the client's doing and must be answered with a code that says what to fix (an unexpected
   exception is masked with that code, which is exactly what this catches);
3. every error carries `extensions.code`;
4. no error message reads like a Python exception or leaks the stack: an exception class name (`ValueError`,
   `KeyError`…), "Traceback", "object has no attribute", "invalid literal for int()", "NoneType", or the name of a
   database driver. Quoted text in a message is removed first: coercion errors echo the client's own input.

Arguments mix the ids of real objects (the tenant's own and another tenant's) with malformed ones, and DateTime,
Date and Decimal values at and beyond their edges, as well as arbitrary strings.

A fixed, small number of examples keeps it under ~30 s in CI (derandomized, so CI is repeatable); set
FUZZ_EXAMPLES=500 to explore with new random examples locally.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from graphql import print_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema, nodes

from domain.accounts.models import Role
from schema import schema
from tests.conftest import GQL, Factory, gid

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None
SETTINGS = settings(
    max_examples=EXAMPLES or 40,
    derandomize=EXAMPLES is None,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
STEP_TIMEOUT = 120

# Root fields left out of the fuzzing: a multipart upload (hypothesis-graphql cannot send a file).
EXCLUDED = {"avatarUpload"}

SDL = print_schema(schema._schema)
PYTHON_EXCEPTION = re.compile(
    r"Traceback|\b[A-Z][A-Za-z]*(Error|Exception)\b|object has no attribute|invalid literal|NoneType"
    r"|is not subscriptable|unexpected keyword|asyncpg|tortoise|sqlite|psycopg|File \"",
)
QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")


def quoted_removed(message: str) -> str:
    return QUOTED.sub('""', message)


def violations(status: int, body: Any) -> list[str]:
    """What the oracle (module docstring) finds wrong with one response; empty when it holds."""
    if status >= 500:
        return [f"HTTP {status}"]
    if not isinstance(body, dict) or not ({"data", "errors"} & body.keys()):
        return [f"not a GraphQL response: {body!r:.200}"]
    found = []
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if code is None:
            found.append(f"uncoded error: {error}")
        elif code == "INTERNAL_SERVER_ERROR":
            found.append(f"internal error for a client's request: {error}")
        if PYTHON_EXCEPTION.search(quoted_removed(str(error.get("message", "")))):
            found.append(f"a Python exception in the message: {error}")
    return found


def global_id(type_name: str, raw: str) -> str:
    return base64.b64encode(f"{type_name}:{raw}".encode()).decode()


def scalars(ids: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Value strategies for the custom scalars (and ID), as GraphQL value nodes."""
    offsets = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])
    malformed_ids = st.sampled_from(["Wallet", "Customer", "Node", "Partner", "UsageHold", "Package", "nope"]).flatmap(
        lambda name: st.sampled_from(["abc", "0", "-1", "²", "99999999999", "1_0", " 1", ""]).map(
            lambda raw: global_id(name, raw)
        )
    )
    return {
        "ID": st.one_of(st.sampled_from(ids), malformed_ids, st.text(max_size=12)).map(nodes.String),
        "DateTime": st.one_of(
            st.datetimes(timezones=offsets).map(datetime.isoformat),
            st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "9999-12-31T24:00:00"]),
            st.text(max_size=12),
        ).map(nodes.String),
        "Date": st.one_of(
            st.dates().map(date.isoformat), st.sampled_from(["0001-01-01", "9999-12-31"]), st.text(max_size=12)
        ).map(nodes.String),
        "Decimal": st.one_of(
            st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str),
            st.sampled_from(["NaN", "-Infinity", "1e999999", "-0", "0.0000001", str(Decimal(10) ** 30)]),
            st.text(max_size=12),
        ).map(nodes.String),
        "JSON": st.one_of(st.text(max_size=12).map(nodes.String), st.integers().map(nodes.Int)),
    }


class Fuzzer:
    """Posts generated operations from Hypothesis's thread to the session loop, where the app and database live."""

    def __init__(self, client: httpx.AsyncClient, gql: GQL, factory: Factory) -> None:
        self.client = client
        self.gql = gql
        self.factory = factory
        self.loop = asyncio.get_running_loop()
        self.tokens: dict[str, str] = {}
        self.ids: list[str] = []  # global ids of real objects, the fuzzing tenant's and another one's
        self.sent = 0

    async def sign_up(self) -> None:
        """A tenant for the fuzzing users (and another one beside it): anew whenever a generated mutation took the
        users' access away (logout, accountDelete, their customer disabled…), or every later example would be a
        401."""
        own = await self.factory.tenant(customers=2)
        other = await self.factory.tenant(customers=1)
        member = await self.factory.user(role=Role.CUSTOMER_MEMBER, customer=own.customers[0])
        self.tokens = {
            "partner admin": await self.gql.login(own.owner.email),
            "customer member": await self.gql.login(member.email),
        }
        self.ids += [gid("Customer", c.id) for c in own.customers + other.customers]
        self.ids += [gid("Partner", p.id) for p in (own.partner, other.partner)]
        self.ids += [gid("User", u.id) for u in (own.owner, other.owner, member, *own.admins, *other.admins)]

    def check(self, role: str, operation: str) -> None:
        status, body = self.run(self.post(role, operation))
        self.sent += 1
        problems = violations(status, body)
        assert not problems, f"as {role}:\n{operation}\n→ " + "\n→ ".join(problems)
        if status == 401:
            self.run(self.sign_up())

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=STEP_TIMEOUT)

    async def post(self, role: str, operation: str) -> tuple[int, Any]:
        response = await self.client.post(
            "/graphql", json={"query": operation}, headers={"authorization": f"Bearer {self.tokens[role]}"}
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text


@pytest.fixture
async def fuzzer(client: httpx.AsyncClient, gql: GQL, factory: Factory) -> Fuzzer:
    fuzzer = Fuzzer(client, gql, factory)
    await fuzzer.sign_up()
    return fuzzer


@pytest.mark.parametrize("kind", ["query", "mutation"])
async def test_generated_operations_never_fail_unexpectedly(fuzzer: Fuzzer, kind: str) -> None:
    # given operations generated from the schema, with the ids of real objects among their arguments
    root = schema._schema.query_type if kind == "query" else schema._schema.mutation_type
    assert root is not None
    fields = sorted(name for name in root.fields if name not in EXCLUDED)
    operations = from_schema(SDL, fields=fields, custom_scalars=scalars(list(fuzzer.ids)))

    @SETTINGS
    @given(role=st.sampled_from(sorted(fuzzer.tokens)), operation=operations)
    def check(role: str, operation: str) -> None:
        fuzzer.check(role, operation)

    # when / then (Hypothesis runs in a thread: each request is sent on the session loop, which stays free)
    await asyncio.to_thread(check)
    assert fuzzer.sent > 0
