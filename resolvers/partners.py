"""Partners: reads and platform-admin writes."""

from __future__ import annotations

from typing import Any

from domain.errors import ErrorCode, FieldError
from domain.partners import services
from domain.partners.models import Partner
from domain.visibility import restrict
from resolvers.common import Outcome, Page, attempt, decode_global_id, paginate
from resolvers.context import Context


async def partner(ctx: Context, id: str) -> Partner | None:
    try:
        pk = decode_global_id(id, "Partner", "id")
    except Exception:
        return None
    return await ctx.loaders.partner_by_id.load(pk)


async def partners(ctx: Context, first: int | None, after: str | None) -> Page[Partner]:
    return await paginate(restrict(Partner, ctx.viewer), first, after)


async def partner_create(ctx: Context, data: dict[str, Any]) -> Outcome[services.PartnerCreated]:
    return await attempt(services.partner_create(ctx.viewer, data))


async def partner_update(ctx: Context, data: dict[str, Any]) -> Outcome[Partner]:
    async def run() -> Partner:
        pk = decode_global_id(data.pop("partner_id"), "Partner", "partner_id")
        return await services.partner_update(ctx.viewer, pk, data)

    return await attempt(run())


def refused(field: str, message: str) -> Outcome[Any]:
    return Outcome(None, [FieldError(field, message, ErrorCode.INVALID)])
