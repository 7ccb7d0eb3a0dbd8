"""Packages: the list and one package (the mutations go straight to their services)."""

from __future__ import annotations

from domain.packages import services
from domain.packages.models import Package
from resolvers.common import Page, decode_global_id, paginate
from resolvers.context import Context


async def packages(ctx: Context, archived: bool | None, first: int | None, after: str | None) -> Page[Package]:
    return await paginate(services.visible_packages(ctx.viewer, archived), first, after)


async def package(ctx: Context, id: str) -> Package | None:
    try:
        pk = decode_global_id(id, "Package", "id")
    except Exception:
        return None
    return await ctx.loaders.package_by_id.load(pk)
