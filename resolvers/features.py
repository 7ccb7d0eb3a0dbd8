"""Feature toggles: the batched read behind `FeatureToggles` nodes (the mutation goes straight to its service)."""

from __future__ import annotations

from domain.features import services
from resolvers.context import Context


async def features_of(ctx: Context, customer_ids: list[int]) -> list[services.FeatureState | None]:
    """Feature states of visible customers (None for the others), batched per request."""
    return await ctx.loaders.features_by_customer.load_many(customer_ids)
