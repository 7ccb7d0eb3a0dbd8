"""A customer's API keys and embed tokens, a page at a time. (Issuing and revoking them are mutations that call
their domain service directly: schema/access.py.)"""

from __future__ import annotations

from domain.access import services
from domain.access.models import ApiKey, EmbedToken
from resolvers.common import Page, decode_global_id, paginate
from resolvers.context import Context


async def api_keys(ctx: Context, customer_id: str, first: int | None, after: str | None) -> Page[ApiKey]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await services.api_keys_of(ctx.viewer, pk), first, after, newest_first=True)


async def embed_tokens(ctx: Context, customer_id: str, first: int | None, after: str | None) -> Page[EmbedToken]:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await paginate(await services.embed_tokens_of(ctx.viewer, pk), first, after, newest_first=True)
