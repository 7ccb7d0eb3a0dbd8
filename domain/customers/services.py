"""Creating, editing, disabling and enabling customers (seed 002)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from domain.access.services import revoke_credentials_of_customer
from domain.accounts.models import Membership, Role
from domain.accounts.services import (
    NewUser,
    check_user_unique,
    create_user,
    hash_password_async,
    now,
    org_key,
    revoke_sessions_of_customer,
)
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.common.commands import UNSET
from domain.common.validation import Validator
from domain.customers.commands import CustomerCreate, CustomerDisable, CustomerEnable, CustomerUpdate
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode
from domain.events import services as events
from domain.partners.models import Partner
from domain.portal.services import apply_auto_invite
from domain.viewer import Viewer
from domain.visibility import get_visible, require_customer_manager, require_partner_staff, restrict

ADDRESS_FIELDS = {"phone": 24, "country": 100, "state": 100, "city": 100, "zip": 20, "address1": 200, "address2": 200}


@dataclass(slots=True)
class CustomerCreated:
    customer: Customer
    user: Any


def _clean_address(v: Validator, command: CustomerCreate | CustomerUpdate) -> dict[str, str]:
    """The address fields the command carries, cleaned (an update's unsent fields left out)."""
    out: dict[str, str] = {}
    for name, max_length in ADDRESS_FIELDS.items():
        value = getattr(command, name)
        if value is UNSET:
            continue
        cleaned = v.phone(name, value) if name == "phone" else v.text(name, value, max_length=max_length)
        if cleaned is not None:
            out[name] = cleaned
    return out


async def _target_partner(viewer: Viewer, partner_id: int | None) -> Partner:
    require_partner_staff(viewer)
    if viewer.is_platform_admin:
        if partner_id is None:
            raise DomainError.single(ErrorCode.REQUIRED, "Choose the partner this customer belongs to.", "partner_id")
        return await get_visible(Partner, viewer, partner_id, field="partner_id")
    if partner_id is not None and partner_id != viewer.partner_id:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Partner not found.", "partner_id")
    return await Partner.get(id=viewer.partner_id)


async def customer_create(viewer: Viewer, command: CustomerCreate) -> CustomerCreated:
    """Creates the customer and its first CUSTOMER_ADMIN user; nothing is written unless every field is valid."""
    partner = await _target_partner(viewer, command.partner_id)
    v = Validator()
    username = v.username("username", command.username)
    first_name = v.text("first_name", command.first_name, required=True, max_length=100)
    last_name = v.text("last_name", command.last_name, required=True, max_length=100)
    email = v.email("email", command.email)
    company = v.text("company_name", command.company_name, required=True, max_length=200)
    job_title = v.text("role", command.role, max_length=100)
    address = _clean_address(v, command)
    password = v.password("password", command.password, "password_confirmation", command.password_confirmation)
    await check_user_unique(v, username, email)
    v.raise_if_invalid()
    assert username and email and password and company

    pw_hash = await hash_password_async(password)
    async with in_transaction():
        customer = Customer(partner=partner, name=company, **address)
        await customer.save()
        user = await create_user(
            NewUser(
                username=username,
                email=email,
                password=password,
                first_name=first_name or "",
                last_name=last_name or "",
                phone=address.get("phone", ""),
                job_title=job_title or "",
            ),
            pw_hash,
        )
        await Membership.create(
            user=user, role=Role.CUSTOMER_ADMIN, customer=customer, org_key=org_key(customer_id=customer.id)
        )
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "customer.create",
            object_type="Customer",
            object_id=customer.id,
            partner_id=partner.id,
            customer_id=customer.id,
            details={"name": company, "admin_user_id": user.id, "admin_username": username, **address},
        )
        if command.package_id is not None:
            # same transaction: a package that cannot apply (archived, pool too small, rules) creates nothing
            from domain.packages.services import package_assign_to_new_customer  # packages build on customers

            await package_assign_to_new_customer(viewer, customer.id, command.package_id)
        await apply_auto_invite(customer, bool(command.auto_invite))
    return CustomerCreated(customer, user)


def _snapshot(customer: Customer) -> dict[str, Any]:
    return {"company_name": customer.name, **{k: getattr(customer, k) for k in ADDRESS_FIELDS}}


async def customer_update(viewer: Viewer, command: CustomerUpdate) -> Customer:
    """Partial update: only the fields sent change."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    v = Validator()
    updates = _clean_address(v, command)
    if command.company_name is not UNSET:
        name = v.text("company_name", command.company_name, required=True, max_length=200)
        if name:
            updates["name"] = name
    v.raise_if_invalid()
    async with in_transaction():
        customer = await Customer.select_for_update().get(id=customer.id)
        before = _snapshot(customer)
        for key, value in updates.items():
            setattr(customer, key, value)
        diff = changes(before, _snapshot(customer))
        if diff:
            await customer.save()
            await record(
                viewer,
                AuditEventType.DATA_CHANGE,
                "customer.update",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={"changes": diff},
            )
    return customer


async def _set_status(viewer: Viewer, customer_id: int, status: CustomerStatus) -> Customer:
    require_partner_staff(viewer)
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    async with in_transaction():
        customer = await Customer.select_for_update().get(id=customer.id)
        if customer.status == status:
            return customer
        revoked: dict[str, int] = {}
        before = customer.status
        customer.status = status
        customer.disabled_at = now() if status == CustomerStatus.DISABLED else None
        await customer.save(update_fields=["status", "disabled_at", "updated_at"])
        if status == CustomerStatus.DISABLED:
            keys, tokens = await revoke_credentials_of_customer(customer.id)
            revoked = {
                "sessions_revoked": await revoke_sessions_of_customer(customer.id),
                "api_keys_revoked": keys,
                "embeds_revoked": tokens,  # "token" would read as a secret and be scrubbed
            }
            await events.emit(events.ACCESS_REVOKED, customer_id=customer.id, partner_id=customer.partner_id)
        disabled = status == CustomerStatus.DISABLED
        await events.emit(
            events.CUSTOMER_DISABLED if disabled else events.CUSTOMER_ENABLED,
            customer_id=customer.id,
            partner_id=customer.partner_id,
        )
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            f"customer.{'disable' if status == CustomerStatus.DISABLED else 'enable'}",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"changes": {"status": {"before": before, "after": status}}, **revoked},
        )
    return customer


async def customer_disable(viewer: Viewer, command: CustomerDisable) -> Customer:
    """Its users can no longer sign in, their sessions end and its API keys and embed tokens are revoked (enabling
    it again brings none of them back); data and metering are untouched."""
    return await _set_status(viewer, command.customer_id, CustomerStatus.DISABLED)


async def customer_enable(viewer: Viewer, command: CustomerEnable) -> Customer:
    return await _set_status(viewer, command.customer_id, CustomerStatus.ACTIVE)


def search_customers(viewer: Viewer, status: CustomerStatus | None = None, search: str | None = None) -> Any:
    """The viewer's customers, filtered; a queryset for the API layer to paginate."""
    qs = restrict(Customer, viewer)
    if status is not None:
        qs = qs.filter(status=status)
    if search:
        if "\x00" in search:
            raise DomainError.single(ErrorCode.INVALID, "Must not contain NUL characters.", "search")
        term = search.strip()[:100]
        if term:
            from tortoise.expressions import Q

            matching_users = Membership.filter(
                Q(user__email_key__icontains=term) | Q(user__username_key__icontains=term)
            ).values("customer_id")
            from tortoise.expressions import Subquery

            qs = qs.filter(Q(name__icontains=term) | Q(id__in=Subquery(matching_users)))
    return qs
