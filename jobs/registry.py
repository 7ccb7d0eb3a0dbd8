"""Imports every actor module so the broker knows them."""

from __future__ import annotations


def load_actors() -> None:
    import jobs.maintenance  # noqa: F401
