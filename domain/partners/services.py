"""Creating and editing partners (platform admins) and their staff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, Role, User
from domain.accounts.services import NewUser, check_user_unique, create_user, hash_password_async, org_key
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.common.commands import UNSET
from domain.common.json import JsonLike
from domain.common.validation import Validator
from domain.errors import ErrorCode
from domain.partners.commands import PartnerBranding, PartnerCreate, PartnerUpdate
from domain.partners.models import Partner
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
    """Partner admins (and platform admins) change the name, sender email, branding and rate card."""
    require_partner_staff(viewer, admin=True)
    partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
    v = Validator()
    updates: dict[str, str | None] = {}
    if command.name is not UNSET:
        updates["name"] = v.text("name", command.name, required=True, max_length=200)
    if command.sender_email is not UNSET:
        updates["sender_email"] = v.email("sender_email", command.sender_email, required=False) or None
    branding = command.branding or PartnerBranding()  # not sent, or null: no change
    if branding.logo_url is not UNSET:
        logo = v.text("logo_url", branding.logo_url, max_length=500) or None
        if logo and not logo.startswith("https://"):
            v.add("logo_url", "Use an https:// URL.")
        updates["logo_url"] = logo
    for color, value in (("primary_color", branding.primary_color), ("secondary_color", branding.secondary_color)):
        if value is not UNSET:
            if value is None:
                v.add(color, "Choose a colour.", ErrorCode.REQUIRED)
            updates[color] = v.color(color, value)
    rates = clean_rates(v, command.rate_card) if command.rate_card else {}
    v.raise_if_invalid()
    async with in_transaction():
        partner = await Partner.select_for_update().get(id=partner.id)
        before = {k: getattr(partner, k) for k in updates}
        for key, value in updates.items():
            setattr(partner, key, value)
        diff = changes(before, updates)
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
    return partner
