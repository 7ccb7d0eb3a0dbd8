"""API keys and embed tokens of a customer: issue, revoke, list."""

from __future__ import annotations

from typing import Any

from domain.access import services
from domain.access.models import ApiKey, EmbedToken
from resolvers.common import Outcome, Page, attempt, decode_global_id, paginate
from resolvers.context import Context


async def api_keys(ctx: Context, customer_id: Any, first: int | None, after: str | None) -> Page[ApiKey]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await services.api_keys_of(ctx.viewer, pk), first, after, newest_first=True)


async def embed_tokens(ctx: Context, customer_id: Any, first: int | None, after: str | None) -> Page[EmbedToken]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await services.embed_tokens_of(ctx.viewer, pk), first, after, newest_first=True)


async def api_key_create(ctx: Context, data: dict[str, Any]) -> Outcome[services.ApiKeyIssued]:
    async def run() -> services.ApiKeyIssued:
        return await services.api_key_create(
            ctx.viewer,
            decode_global_id(data["customer_id"], "Customer", "customer_id"),
            data["name"],
            data["permissions"],
            data["tier"],
            data.get("rate_limit_per_minute"),
        )

    return await attempt(run())


async def api_key_revoke(ctx: Context, api_key_id: Any) -> Outcome[ApiKey]:
    async def run() -> ApiKey:
        return await services.api_key_revoke(ctx.viewer, decode_global_id(api_key_id, "ApiKey", "api_key_id"))

    return await attempt(run())


async def embed_token_create(ctx: Context, data: dict[str, Any]) -> Outcome[services.EmbedTokenIssued]:
    async def run() -> services.EmbedTokenIssued:
        return await services.embed_token_create(
            ctx.viewer,
            decode_global_id(data["customer_id"], "Customer", "customer_id"),
            data["sections"],
            data["expires_in_seconds"],
        )

    return await attempt(run())


async def embed_token_revoke(ctx: Context, embed_token_id: Any) -> Outcome[EmbedToken]:
    async def run() -> EmbedToken:
        return await services.embed_token_revoke(
            ctx.viewer, decode_global_id(embed_token_id, "EmbedToken", "embed_token_id")
        )

    return await attempt(run())
