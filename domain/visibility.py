"""The one place that decides which rows a viewer may see (NetBox's `restrict()`).

Every resolver, loader and service reads tenant data through `restrict(Model, viewer)`. Rows outside the
viewer's reach are simply absent, so callers answer NOT_FOUND and never reveal that they exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tortoise.expressions import Q, Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet

from domain.access.models import ApiKey, EmbedToken
from domain.accounts.models import Membership, Session, User
from domain.alerts.models import Alert
from domain.audit.models import AuditEvent
from domain.campaigns.models import Campaign
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode, forbidden
from domain.ledger.models import LedgerAccount, Transfer
from domain.packages.models import Package, PackageAssignment
from domain.partners.models import Partner
from domain.reports.models import ReportSchedule, UsageReport
from domain.usage.models import UsageEvent, UsageHold
from domain.viewer import Viewer

M = TypeVar("M", bound=Model)
_NOTHING = Q(id__in=[])


def _partner(v: Viewer) -> Q | None:
    if v.is_partner_staff or v.is_customer_user:
        return Q(id=v.partner_id)
    return _NOTHING


def _customer(v: Viewer) -> Q | None:
    if v.is_partner_staff:
        return Q(partner_id=v.partner_id)
    if v.is_customer_user:
        return Q(id=v.customer_id)
    return _NOTHING


def _membership(v: Viewer) -> Q | None:
    if v.is_partner_staff:
        return Q(partner_id=v.partner_id) | Q(customer_id__in=Subquery(_customer_ids_of_partner(v.partner_id)))
    if v.is_customer_user:
        return Q(customer_id=v.customer_id) | Q(user_id=v.user_id)
    if v.user_id is not None:
        return Q(user_id=v.user_id)
    return _NOTHING


def _customer_ids_of_partner(partner_id: int | None) -> QuerySet[Any]:
    return Customer.filter(partner_id=partner_id).values("id")


def _user(v: Viewer) -> Q | None:
    if not v.is_authenticated:
        return _NOTHING
    visible_memberships = Membership.filter(_membership(v)).values("user_id")
    return Q(id__in=Subquery(visible_memberships)) | Q(id=v.user_id)


def _audit_event(v: Viewer) -> Q | None:
    if v.is_partner_staff:
        return Q(partner_id=v.partner_id)
    if v.is_customer_admin:
        return Q(customer_id=v.customer_id)
    return _NOTHING


def _transfer(v: Viewer) -> Q | None:
    if v.is_partner_staff:
        accounts = LedgerAccount.filter(partner_id=v.partner_id).values("id")
    elif v.is_customer_user:
        accounts = LedgerAccount.filter(customer_id=v.customer_id).values("id")
    else:
        return _NOTHING
    return Q(debit_account_id__in=Subquery(accounts)) | Q(credit_account_id__in=Subquery(accounts))


def _by_visible_customer(v: Viewer) -> Q | None:
    if v.is_partner_staff:
        return Q(customer_id__in=Subquery(_customer_ids_of_partner(v.partner_id)))
    if v.is_customer_user:
        return Q(customer_id=v.customer_id)
    return _NOTHING


def _access_credential(v: Viewer) -> Q | None:
    """API keys and embed tokens: partner admins and customer admins (an API key only with ADMIN)."""
    if v.is_partner_admin:
        return Q(partner_id=v.partner_id)
    if v.is_customer_admin and (v.api_key_id is None or "ADMIN" in v.api_permissions):
        return Q(customer_id=v.customer_id)
    return _NOTHING


def _package(v: Viewer) -> Q | None:
    """Partner staff see their partner's packages, customer users the packages their customer was given."""
    if v.is_partner_staff:
        return Q(partner_id=v.partner_id)
    if v.is_customer_user:
        return Q(id__in=Subquery(PackageAssignment.filter(customer_id=v.customer_id).values("package_id")))
    return _NOTHING


def _session(v: Viewer) -> Q | None:
    return Q(user_id=v.user_id) if v.user_id is not None else _NOTHING


_RULES: dict[type[Model], Callable[[Viewer], Q | None]] = {
    Partner: _partner,
    Customer: _customer,
    Membership: _membership,
    User: _user,
    AuditEvent: _audit_event,
    Session: _session,
    Transfer: _transfer,
    UsageEvent: _by_visible_customer,
    UsageHold: _by_visible_customer,
    Campaign: _by_visible_customer,
    Alert: _by_visible_customer,
    ApiKey: _access_credential,
    EmbedToken: _access_credential,
    UsageReport: _by_visible_customer,
    ReportSchedule: _by_visible_customer,
    Package: _package,
    PackageAssignment: _by_visible_customer,
}


def restrict(model: type[M], viewer: Viewer) -> QuerySet[M]:
    """All rows of `model` the viewer may see. Platform admins see everything; anonymous viewers nothing."""
    if viewer.is_platform_admin:
        return model.all()
    if not viewer.is_authenticated and model is not Session:
        return model.filter(_NOTHING)
    rule = _RULES.get(model)
    if rule is None:
        raise LookupError(f"No visibility rule for {model.__name__}")
    condition = rule(viewer)
    return model.all() if condition is None else model.filter(condition)


async def get_visible(model: type[M], viewer: Viewer, pk: Any, *, field: str | None = None) -> M:
    """One visible row by primary key, or NOT_FOUND (also for rows that exist beyond the viewer's reach)."""
    obj = await restrict(model, viewer).get_or_none(pk=pk) if pk is not None else None
    if obj is None:
        raise DomainError.single(ErrorCode.NOT_FOUND, f"{model.__name__} not found.", field)
    return obj


def require_authenticated(viewer: Viewer) -> None:
    if not viewer.is_authenticated:
        raise DomainError.single(ErrorCode.FORBIDDEN, "Sign in first.")


def require_platform_admin(viewer: Viewer) -> None:
    if not viewer.is_platform_admin:
        raise forbidden("Only platform administrators can do this.")


def require_partner_staff(viewer: Viewer, *, admin: bool = False) -> None:
    """Platform admins or staff of a partner (partner admins only, when `admin`)."""
    if viewer.is_platform_admin:
        return
    if admin and not viewer.is_partner_admin:
        raise forbidden("Only partner administrators can do this.")
    if not viewer.is_partner_staff:
        raise forbidden("Only partner staff can do this.")


def require_customer_manager(viewer: Viewer, customer: Customer) -> None:
    """Partner staff of the customer's partner, or an admin of the customer itself (after a visibility check)."""
    if viewer.is_platform_admin or viewer.is_partner_staff:
        return
    if viewer.is_customer_admin and viewer.customer_id == customer.id:
        return
    raise forbidden("Only partner staff or the customer's administrators can do this.")
