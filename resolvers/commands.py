"""The one adapter from an API input to a domain command: `to_command(input, WalletRefill)`, and `perform`, which
runs a mutation through it.

Every field of the command is read from the input attribute of the same name: a global id is decoded where the
command's field is marked with `Ref` (domain/common/commands.py), a nested command (or a list of them) is built the
same way, and a field the client did not send (Strawberry's UNSET) becomes the domain's UNSET. An id of the wrong
kind, or one that does not decode, is refused as NOT_FOUND on that field before anything runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, TypeVar, get_args, get_origin

import strawberry

from domain.common.commands import UNSET, Ref
from domain.viewer import Viewer
from resolvers.common import Outcome, attempt, decode_global_id
from resolvers.context import Context

C = TypeVar("C")
R = TypeVar("R")


async def perform(
    ctx: Context, service: Callable[[Viewer, C], Awaitable[R]], value: object, command: type[C]
) -> Outcome[R]:
    """Runs a mutation: the input as a `command`, handed with the viewer to its domain `service`; a refusal (a bad
    id included) comes back as the payload's errors."""

    async def run() -> R:
        return await service(ctx.viewer, to_command(value, command))

    return await attempt(run())


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    ref: str | None  # the type name of a global id field
    many: bool  # a list (of ids or of nested commands)
    nested: type | None  # a nested command's class


def to_command(value: object, command: type[C]) -> C:
    """`command` built from the input object `value` (see the module docstring)."""
    kwargs: dict[str, Any] = {}
    for f in _fields(command):
        raw = getattr(value, f.name, strawberry.UNSET)
        kwargs[f.name] = _convert(f, raw)
    return command(**kwargs)


def _convert(f: _Field, raw: Any) -> Any:
    if raw is strawberry.UNSET:
        return UNSET
    if raw is None:
        return None
    if f.ref is not None:
        if f.many:
            return [decode_global_id(item, f.ref, f.name) for item in raw]
        return decode_global_id(raw, f.ref, f.name)
    if f.nested is not None:
        return [to_command(item, f.nested) for item in raw] if f.many else to_command(raw, f.nested)
    return raw


def _fields(command: type) -> tuple[_Field, ...]:
    return _fields_of(command)


@cache
def _fields_of(command: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(command, include_extras=True)
    return tuple(_describe(f.name, hints[f.name]) for f in dataclasses.fields(command) if f.init)


def _describe(name: str, hint: Any) -> _Field:
    ref: str | None = None
    many = False
    nested: type | None = None
    for part in _parts(hint):
        if get_origin(part) is typing.Annotated:
            base, *metadata = get_args(part)
            ref = next((m.type_name for m in metadata if isinstance(m, Ref)), ref)
            part = base
        if get_origin(part) in (list, tuple):
            many = True
            (part, *_) = get_args(part)
            if get_origin(part) is typing.Annotated:
                base, *metadata = get_args(part)
                ref = next((m.type_name for m in metadata if isinstance(m, Ref)), ref)
                part = base
        if isinstance(part, type) and dataclasses.is_dataclass(part):
            nested = part
    return _Field(name, ref, many, nested)


def _parts(hint: Any) -> list[Any]:
    """The members of a union (`X | None`, `Patch[X]`), or the hint itself."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        return list(get_args(hint))
    return [hint]
