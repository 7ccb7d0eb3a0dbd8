"""Helpers for turning GraphQL inputs into plain dicts for the domain."""

from __future__ import annotations

import dataclasses
from typing import Any

import strawberry

from resolvers.context import Context


def input_data(value: Any) -> dict[str, Any]:
    """Fields of a Strawberry input as a dict, leaving out those the client did not send (UNSET)."""
    return {
        f.name: getattr(value, f.name)
        for f in dataclasses.fields(value)
        if getattr(value, f.name) is not strawberry.UNSET
    }


# What every field and mutation of the schema receives: `info.context` is the typed per-request Context.
Info = strawberry.Info[Context, None]
