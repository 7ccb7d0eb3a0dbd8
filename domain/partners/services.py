"""Creating and editing partners (platform admins) and their staff."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from tortoise.transactions import in_transaction

from domain.access import origins
from domain.accounts.models import Membership, Role, User
from domain.accounts.services import NewUser, check_user_unique, create_user, hash_password_async, org_key
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.common.commands import UNSET
from domain.common.json import JsonLike
from domain.common.validation import Validator
from domain.errors import DomainError, ErrorCode
from domain.partners import domains
from domain.partners.branding import clean_welcome
from domain.partners.commands import PartnerBranding, PartnerCreate, PartnerDomainVerify, PartnerUpdate
from domain.partners.models import Partner, PartnerDomain
from domain.portal import logos
from domain.usage.rating import apply_rates, clean_rates
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff, require_platform_admin


@dataclass(slots=True)
class PartnerCreated:
    partner: Partner
    owner: User


async def partner_create(viewer: Viewer, command: PartnerCreate) -> PartnerCreated:
    """A platform admin creates a partner and its first PARTNER_ADMIN."""
    require_platform_admin(viewer)
    v = Validator()
    name = v.text("name", command.name, required=True, max_length=200)
    email = v.email("owner_email", command.owner_email)
    owner_name = v.text("owner_name", command.owner_name, max_length=200) or ""
    password = v.password("owner_password", command.owner_password)
    await check_user_unique(v, None, email, prefix="owner_")
    v.raise_if_invalid()
    assert name and email and password
    first, _, last = owner_name.partition(" ")
    username = await _free_username(email.split("@")[0])
    pw_hash = await hash_password_async(password)
    async with in_transaction():
        partner = await Partner.create(name=name, sender_email=command.sender_email)
        owner = await create_user(
            NewUser(username=username, email=email, password=password, first_name=first, last_name=last), pw_hash
        )
        await Membership.create(user=owner, role=Role.PARTNER_ADMIN, partner=partner, org_key=org_key(partner.id))
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "partner.create",
            object_type="Partner",
            object_id=partner.id,
            partner_id=partner.id,
            details={"name": name, "owner_user_id": owner.id},
        )
    return PartnerCreated(partner, owner)


async def _free_username(base: str) -> str:
    base = "".join(c for c in base if c.isalnum() or c in "._-")[:40] or "user"
    candidate, n = base, 1
    while await User.filter(username_key=candidate.lower()).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


async def partner_update(viewer: Viewer, command: PartnerUpdate) -> Partner:
    """Partner admins (and platform admins) change the name, branding (logo upload, colours, welcome message,
    sender), custom domains and rate card; only what is sent changes, and nothing when any part is refused."""
    require_partner_staff(viewer, admin=True)
    partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
    v = Validator()
    updates: dict[str, str | None] = {}
    if command.name is not UNSET:
        updates["name"] = v.text("name", command.name, required=True, max_length=200)
    branding = command.branding or PartnerBranding()  # not sent, or null: no change
    if command.sender_email is not UNSET and branding.sender_email is not UNSET:
        v.add("sender_email", "Send the sender email once (branding.senderEmail).")
    sender_email = branding.sender_email if branding.sender_email is not UNSET else command.sender_email
    if sender_email is not UNSET:
        updates["sender_email"] = v.email("sender_email", sender_email, required=False) or None
    if branding.sender_name is not UNSET:
        name = v.text("sender_name", branding.sender_name, max_length=100)
        if name and any(c in name for c in '<>"@,;'):
            v.add("sender_name", "Use a plain name (no <, >, quotes, @, commas or semicolons).")
        updates["sender_name"] = name or None
    if branding.welcome_message is not UNSET:
        updates["welcome_message"] = clean_welcome(v, "welcome_message", branding.welcome_message) or ""
    for color, value in (("primary_color", branding.primary_color), ("secondary_color", branding.secondary_color)):
        if value is not UNSET:
            if value is None:
                v.add(color, "Choose a colour.", ErrorCode.REQUIRED)
            cleaned = v.color(color, value)
            updates[color] = cleaned.upper() if cleaned else cleaned
    if command.domains is None:
        v.add("domains", "Send the complete list of domains (an empty list removes them all).")
    rates = clean_rates(v, command.rate_card) if command.rate_card else {}
    v.raise_if_invalid()
    logo = await logos.read_logo(branding.logo) if branding.logo is not UNSET and branding.logo is not None else None
    logo_name: str | None = None
    replaced: str | None = None
    async with in_transaction():
        partner = await Partner.select_for_update().get(id=partner.id)
        if branding.logo is not UNSET:
            replaced = partner.logo_url
            logo_name = logos.new_logo_name("partner", partner.id, logo[1]) if logo else None
            updates["logo_url"] = logos.logo_url(logo_name) if logo_name else None
        before = {k: getattr(partner, k) for k in updates}
        for key, value in updates.items():
            setattr(partner, key, value)
        diff = changes(before, updates)
        if isinstance(command.domains, list):
            domain_diff = await domains.replace_domains(partner, v, command.domains)
            v.raise_if_invalid()
            if domain_diff is not None:
                diff["domains"] = cast(dict[str, JsonLike], domain_diff)
                origins.invalidate()
        if diff:
            await partner.save()
        if rates:
            rate_diff = await apply_rates(partner.id, rates, datetime.now(UTC))
            if rate_diff:
                diff["rate_card"] = cast(dict[str, JsonLike], rate_diff)
        if diff:
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "partner.update",
                object_type="Partner",
                object_id=partner.id,
                partner_id=partner.id,
                details={"changes": diff},
            )
        if logo_name is not None and logo is not None:
            # written last inside the transaction: a failed write rolls the new URL back
            await asyncio.to_thread(logos.write_logo, logo_name, logo[0])
    if replaced is not None and replaced != partner.logo_url:
        await asyncio.to_thread(logos.remove_logo, replaced)
    return partner


async def partner_domain_verify(viewer: Viewer, command: PartnerDomainVerify) -> Partner:
    """Checks one of the partner's domains now; NOT_ELIGIBLE (naming the record to publish) until its TXT record
    is found."""
    require_partner_staff(viewer, admin=True)
    partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
    v = Validator()
    name = domains.clean_domain(v, "domain", command.domain)
    v.raise_if_invalid()
    row = await PartnerDomain.get_or_none(partner_id=partner.id, domain=name)
    if row is None:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Add the domain to the partner's domains first.", "domain")
    lookup = await domains.lookup(row)
    async with in_transaction():
        row = await PartnerDomain.select_for_update().get(id=row.id)
        was = row.verified_at is not None
        verified = await domains.apply_lookup(row, lookup, datetime.now(UTC))
        if verified != was:
            origins.invalidate()
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "partner.domain_verified" if verified else "partner.domain_unverified",
                object_type="Partner",
                object_id=partner.id,
                partner_id=partner.id,
                details={"domain": row.domain},
            )
    if not verified:
        raise domains.refusal(row)
    return partner
