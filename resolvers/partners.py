"""Partners: reads (the writes are plain domain services, run by the schema through `perform`)."""

from __future__ import annotations

from domain.partners.models import Partner
from domain.visibility import restrict
from resolvers.common import Page, decode_global_id, paginate
from resolvers.context import Context


async def partner(ctx: Context, id: str) -> Partner | None:
    try:
        pk = decode_global_id(id, "Partner", "id")
    except Exception:
        return None
    return await ctx.loaders.partner_by_id.load(pk)


async def partners(ctx: Context, first: int | None, after: str | None) -> Page[Partner]:
    return await paginate(restrict(Partner, ctx.viewer), first, after)
