"""What every schema module shares: the typed `Info` its fields receive."""

from __future__ import annotations

import strawberry

from resolvers.context import Context

# What every field and mutation of the schema receives: `info.context` is the typed per-request Context.
Info = strawberry.Info[Context, None]
