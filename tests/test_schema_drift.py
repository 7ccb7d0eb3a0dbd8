"""schema.graphql is the contract clients generate code from: it must be exactly what the code serves."""

from __future__ import annotations

import difflib

from strawberry.printer import print_schema

from schema import schema
from tests.conftest import ROOT


def test_committed_sdl_matches_the_code() -> None:
    # `make schema` runs `strawberry export-schema schema:schema --output schema.graphql`: the same text + "\n"
    expected = print_schema(schema) + "\n"
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            "schema.graphql (committed)",
            "schema.graphql (from the code)",
        )
    )
    assert committed == expected, f"schema.graphql is out of date: run `make schema` and commit it.\n{diff}"
