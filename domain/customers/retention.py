"""Seed 002: disabled customers are deleted after 90 days, and their data cannot be recovered.

Personal data goes (users who belong nowhere else, memberships, sessions, settings, alerts, package notices, usage
detail); its package assignment ends (kept as history) and its storage allocation goes back to the partner's pool;
the ledger stays balanced (accounts and transfers carry ids, not people) and the audit chain stays verifiable (events
are redacted, not deleted).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, User
from domain.alerts.models import Alert, AlertArm
from domain.audit.models import AuditEventType
from domain.audit.services import record, redact
from domain.billing.models import BillingPreferences, CreditGrant, CustomerCredits, RefillRequest
from domain.campaigns.models import Campaign
from domain.customers.models import Customer, CustomerStatus
from domain.features.models import FeatureToggles
from domain.packages.models import EndReason, PackageAssignment, PackageNotice
from domain.storage.services import forget_customer_storage
from domain.usage.models import CapCrossing, MonthlySpend, PhoneNumber, UsageDedup, UsageEvent, UsageHold, UsageRollup
from domain.viewer import Viewer

RETENTION = timedelta(days=90)


async def purge_customer(customer: Customer, cutoff: datetime | None = None) -> bool:
    """Deletes one customer's personal data in one transaction. With `cutoff`, only if the customer is still
    disabled since then (checked under lock: a customer re-enabled meanwhile is kept). True if purged."""
    async with in_transaction():
        if cutoff is not None:
            still_due = await Customer.select_for_update().get_or_none(
                id=customer.id, status=CustomerStatus.DISABLED, disabled_at__lte=cutoff
            )
            if still_due is None:
                return False
        members: list[int] = await Membership.filter(customer_id=customer.id).values_list(  # type: ignore[assignment]
            "user_id", flat=True
        )
        user_ids = set(members)
        elsewhere = set(
            await Membership.filter(user_id__in=list(user_ids))
            .exclude(customer_id=customer.id)
            .values_list("user_id", flat=True)
        )
        orphans = sorted(user_ids - elsewhere)
        await redact(customer_id=customer.id, user_ids=orphans)
        await PackageAssignment.filter(current_customer_id=customer.id).update(
            current_customer_id=None, ended_at=datetime.now(UTC), end_reason=EndReason.PURGED
        )
        storage_returned = await forget_customer_storage(customer)
        for model in (
            Campaign,
            FeatureToggles,
            BillingPreferences,
            Alert,
            AlertArm,
            PhoneNumber,
            UsageHold,
            RefillRequest,
            CreditGrant,
            CustomerCredits,
            UsageEvent,
            UsageRollup,
            UsageDedup,
            MonthlySpend,
            CapCrossing,
            PackageNotice,
        ):
            await model.filter(customer_id=customer.id).delete()
        await Membership.filter(customer_id=customer.id).delete()
        await User.filter(id__in=orphans).delete()
        await Customer.filter(id=customer.id).delete()
        await record(
            Viewer.system("retention"),
            AuditEventType.DATA_CHANGE,
            "customer.purge",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={
                "users_deleted": len(orphans),
                "storage_mb_to_pool": storage_returned,
                "disabled_at": customer.disabled_at.isoformat() if customer.disabled_at else None,
            },
        )
    return True


async def purge_disabled_customers(at: datetime | None = None) -> list[int]:
    """Customers disabled for 90 days or more; returns the ids purged."""
    cutoff = (at or datetime.now(UTC)) - RETENTION
    due = await Customer.filter(status=CustomerStatus.DISABLED, disabled_at__lte=cutoff).order_by("id")
    return [c.id for c in due if await purge_customer(c, cutoff)]
