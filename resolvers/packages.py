"""Packages: decode ids, call the packages service, load what the payload shows."""

from __future__ import annotations

from typing import Any

from domain.packages import services
from domain.packages.models import Package, PackageAssignment
from resolvers.common import Outcome, Page, attempt, decode_global_id, paginate
from resolvers.context import Context


async def packages(ctx: Context, archived: bool | None, first: int | None, after: str | None) -> Page[Package]:
    return await paginate(services.visible_packages(ctx.viewer, archived), first, after)


async def package(ctx: Context, id: str) -> Package | None:
    try:
        pk = decode_global_id(id, "Package", "id")
    except Exception:
        return None
    return await ctx.loaders.package_by_id.load(pk)


async def package_create(ctx: Context, data: dict[str, Any]) -> Outcome[Package]:
    async def run() -> Package:
        if data.get("partner_id") is not None:
            data["partner_id"] = decode_global_id(data["partner_id"], "Partner", "partner_id")
        return await services.package_create(ctx.viewer, data)

    return await attempt(run())


async def package_update(ctx: Context, data: dict[str, Any]) -> Outcome[Package]:
    async def run() -> Package:
        package_id = decode_global_id(data.pop("package_id"), "Package", "package_id")
        return await services.package_update(ctx.viewer, package_id, data)

    return await attempt(run())


async def package_archive(ctx: Context, package_id: str) -> Outcome[Package]:
    async def run() -> Package:
        return await services.package_archive(ctx.viewer, decode_global_id(package_id, "Package", "package_id"))

    return await attempt(run())


async def package_assign(ctx: Context, data: dict[str, Any]) -> Outcome[PackageAssignment]:
    async def run() -> PackageAssignment:
        customer_id = decode_global_id(data["customer_id"], "Customer", "customer_id")
        package_id = decode_global_id(data["package_id"], "Package", "package_id")
        assigned = await services.package_assign(ctx.viewer, customer_id, package_id, data["idempotency_key"])
        return await PackageAssignment.get(id=assigned.assignment_id)

    return await attempt(run())
