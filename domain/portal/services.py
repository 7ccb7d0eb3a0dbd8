"""A customer's portal (seed 001): its settings (`customerPortalSettingsUpdate`) and the customer's own branding
over its partner's (`customerBrandingUpdate`), both managed by the partner's admins (or platform admins).

Switching the portal itself on or off goes through the features rules (`customer_features_update`), so the
eligibility checks and the dependants it switches off stay in one place. Turning on auto-invite, or the portal with
auto-invite on, invites the customer's admins once (domain/portal/invites.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.common.commands import UNSET, Patch
from domain.common.json import JsonObject
from domain.common.validation import Validator
from domain.customers.models import Customer
from domain.errors import DomainError, FieldError
from domain.features.commands import CustomerFeaturesUpdate
from domain.features.models import FeatureToggles
from domain.features.services import customer_features_update
from domain.partners.branding import Branding, clean_welcome, resolved
from domain.partners.models import Partner
from domain.portal import logos
from domain.portal.commands import CustomerBrandingUpdate, CustomerPortalSettingsUpdate
from domain.portal.invites import invite_if_due
from domain.portal.models import CaseVisibility, CustomerBranding, PortalSettings
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff

SETTINGS = ("auto_invite", "chat_enabled", "document_upload")


@dataclass(frozen=True, slots=True)
class PortalState:
    customer_id: int
    enabled: bool
    settings: PortalSettings


async def portal_states(customer_ids: Sequence[int]) -> dict[int, PortalState]:
    """`Customer.portal` of many customers in two queries (DataLoader batch); defaults where nothing is stored."""
    ids = list(customer_ids)
    stored = {row.customer_id: row for row in await PortalSettings.filter(customer_id__in=ids)}
    enabled = dict(await FeatureToggles.filter(customer_id__in=ids).values_list("customer_id", "portal_enabled"))
    default_on = FeatureToggles(customer_id=0).portal_enabled
    return {
        cid: PortalState(cid, bool(enabled.get(cid, default_on)), stored.get(cid) or PortalSettings(customer_id=cid))
        for cid in ids
    }


@dataclass(frozen=True, slots=True)
class PortalUpdated:
    state: PortalState
    switched_off: list[str]  # feature toggles the portal going off switched off (as customerFeaturesUpdate says)


def _audited(settings: PortalSettings) -> JsonObject:
    return {
        **{name: bool(getattr(settings, name)) for name in SETTINGS},
        "case_visibility": str(settings.case_visibility),
    }


async def _lock_settings(customer_id: int) -> PortalSettings:
    await PortalSettings.bulk_create([PortalSettings(customer_id=customer_id)], ignore_conflicts=True)
    return await PortalSettings.select_for_update().get(customer_id=customer_id)


async def customer_portal_settings_update(viewer: Viewer, command: CustomerPortalSettingsUpdate) -> PortalUpdated:
    """Partial update by the partner's admins; refused whole when any part is (a portal the features rules
    refuse comes back with their code on `enabled`)."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_partner_staff(viewer, admin=True)
    v = Validator()
    sent: dict[str, object] = {}
    for name in SETTINGS:
        value: Patch[bool | None] = getattr(command, name)
        if value is None:
            v.add(name, "Must be true or false.")
        elif value is not UNSET:
            sent[name] = value
    if command.case_visibility is None:
        v.add("case_visibility", "Choose ALL, ASSIGNED or NONE.")
    elif command.case_visibility is not UNSET:
        sent["case_visibility"] = CaseVisibility(command.case_visibility)
    if command.enabled is None:
        v.add("enabled", "Must be true or false.")
    v.raise_if_invalid()

    switched_off: list[str] = []
    async with in_transaction():
        if command.enabled is not UNSET:
            try:
                updated = await customer_features_update(
                    viewer, CustomerFeaturesUpdate(customer.id, portal_enabled=command.enabled)
                )
            except DomainError as exc:
                # the features service names its toggle; this mutation's input calls it `enabled`
                field = {"portal_enabled": "enabled"}
                raise DomainError(
                    FieldError(field.get(e.field or "", e.field), e.message, e.code) for e in exc.errors
                ) from None
            switched_off = updated.switched_off
        settings = await _lock_settings(customer.id)
        before = _audited(settings)
        for name, new in sent.items():
            setattr(settings, name, new)
        diff = changes(before, _audited(settings))
        if diff:
            await settings.save()
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "customer_portal.update",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={"changes": diff},
            )
        await invite_if_due(customer.id, customer.partner_id)
    return PortalUpdated((await portal_states([customer.id]))[customer.id], switched_off)


async def apply_auto_invite(customer: Customer, auto_invite: bool) -> None:
    """At creation (inside its transaction): stores the customer's auto-invite choice and invites its admins when
    the portal is already on."""
    if auto_invite:
        settings = await _lock_settings(customer.id)
        settings.auto_invite = True
        await settings.save(update_fields=["auto_invite", "updated_at"])
        await invite_if_due(customer.id, customer.partner_id)


# ---------------------------------------------------------------- branding


async def brandings_of(customers: Sequence[Customer]) -> dict[int, Branding]:
    """`Customer.branding` (its own values over its partner's) of many customers in two queries."""
    partner_ids = {c.partner_id for c in customers}
    partners = {p.id: p for p in await Partner.filter(id__in=list(partner_ids))}
    own = {row.customer_id: row for row in await CustomerBranding.filter(customer_id__in=[c.id for c in customers])}
    return {c.id: resolved(partners[c.partner_id], own.get(c.id)) for c in customers}


def _colour(v: Validator, field: str, value: Patch[str | None]) -> Patch[str | None]:
    if value is UNSET or value is None:
        return value
    cleaned = v.color(field, value)
    if cleaned is None and not v.has(field):
        v.add(field, "Use a hex colour like #1A2B3C.")
    return cleaned.upper() if cleaned else None


@dataclass(frozen=True, slots=True)
class BrandingUpdated:
    customer: Customer
    branding: Branding


async def customer_branding_update(viewer: Viewer, command: CustomerBrandingUpdate) -> BrandingUpdated:
    """The customer's own logo, colours and welcome message (partner admins); null goes back to the partner's."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_partner_staff(viewer, admin=True)
    v = Validator()
    updates: dict[str, str | None] = {}
    for field in ("primary_color", "secondary_color"):
        value = _colour(v, field, getattr(command, field))
        if value is not UNSET:
            updates[field] = value
    if command.welcome_message is not UNSET:
        updates["welcome_message"] = clean_welcome(v, "welcome_message", command.welcome_message)
    v.raise_if_invalid()
    new_logo: tuple[bytes, str] | None = None
    if command.logo is not UNSET and command.logo is not None:
        new_logo = await logos.read_logo(command.logo)
    name: str | None = None
    replaced: str | None = None
    async with in_transaction():
        await CustomerBranding.bulk_create([CustomerBranding(customer_id=customer.id)], ignore_conflicts=True)
        own = await CustomerBranding.select_for_update().get(customer_id=customer.id)
        before = {k: getattr(own, k) for k in ("logo_url", "primary_color", "secondary_color", "welcome_message")}
        if command.logo is not UNSET:
            replaced = own.logo_url
            if new_logo is not None:
                name = logos.new_logo_name("customer", customer.id, new_logo[1])
                updates["logo_url"] = logos.logo_url(name)
            else:
                updates["logo_url"] = None
        for key, value in updates.items():
            setattr(own, key, value)
        diff = changes(before, {**before, **updates})
        if diff:
            await own.save()
            logo_bytes = {"logo_bytes": len(new_logo[0])} if new_logo is not None else {}
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "customer_branding.update",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={"changes": diff, **logo_bytes},
            )
        if name is not None and new_logo is not None:
            # written last inside the transaction: a failed write rolls the new URL back
            await asyncio.to_thread(logos.write_logo, name, new_logo[0])
    if replaced is not None and replaced != own.logo_url:
        await asyncio.to_thread(logos.remove_logo, replaced)
    partner = await Partner.get(id=customer.partner_id)
    return BrandingUpdated(customer, resolved(partner, own))
