"""Feature toggles: decode ids, call the features service, load what the payload shows."""

from __future__ import annotations

from typing import Any

from domain.features import services
from resolvers.common import Outcome, attempt, decode_global_id
from resolvers.context import Context


async def customer_features_update(ctx: Context, data: dict[str, Any]) -> Outcome[services.FeaturesUpdated]:
    async def run() -> services.FeaturesUpdated:
        customer_id = decode_global_id(data.pop("customer_id"), "Customer", "customer_id")
        return await services.customer_features_update(ctx.viewer, customer_id, data)

    return await attempt(run())


async def features_of(ctx: Context, customer_ids: list[int]) -> list[services.FeatureState | None]:
    """Feature states of visible customers (None for the others), batched per request."""
    return await ctx.loaders.features_by_customer.load_many(customer_ids)
