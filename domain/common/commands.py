"""What commands are made of. A command is a frozen dataclass in its domain's `commands.py`, one per write operation:
the operation's input, typed, ids already decoded to primary keys. Services take `(viewer, command)`.

- `UNSET` marks a field the client did not send (an update changes only what was sent; None clears a value).
- `Ref("Customer")`, as `Annotated[int, Ref("Customer")]` (the aliases below), says which kind of object an id field
  names, so the adapter turning an API input into a command (resolvers/commands.py) decodes it once, the same way
  for every operation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Final, Literal, TypeAlias, TypeVar

T = TypeVar("T")


class Unset(enum.Enum):
    """The type of `UNSET` (an enum member, so type checkers narrow `x is UNSET` and `isinstance`)."""

    UNSET = "UNSET"

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET

# A field of an update command: the new value, or UNSET to leave it as it is.
Patch: TypeAlias = T | Literal[Unset.UNSET]


@dataclass(frozen=True, slots=True)
class Ref:
    """Metadata of an id field: the type of object it names (a global id's type name in the API)."""

    type_name: str


CustomerId = Annotated[int, Ref("Customer")]
PartnerId = Annotated[int, Ref("Partner")]
UserId = Annotated[int, Ref("User")]
PackageId = Annotated[int, Ref("Package")]


def sent(value: Patch[T]) -> bool:
    """Whether an update command carries this field."""
    return value is not UNSET


def changes(**fields: object) -> dict[str, object]:
    """The fields of an update that were sent, by name (for audit details and partial writes)."""
    return {name: value for name, value in fields.items() if value is not UNSET}
