"""The monthly spending cap (seed 001): spent this month, projection, 80% warning, pause at 100%, resume.

Crossings are recorded once per customer, month, cap value and level (`CapCrossing`), which is what the alert jobs
read. Reaching the cap pauses the customer's running campaigns and refuses authorizations; raising or removing it
resumes exactly the campaigns the cap paused. Both transitions are audited.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from tortoise.transactions import in_transaction

from domain.alerts import services as alerts
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.commands import SpendingCapUpdate
from domain.billing.models import BillingPreferences
from domain.campaigns.models import Campaign, CampaignStatus, PauseReason
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer, ServiceState
from domain.events.services import SPENDING_CAP_CHANGED, emit
from domain.usage.models import CapCrossing, CapLevel, MonthlySpend
from domain.viewer import Viewer
from domain.visibility import get_visible, require_customer_manager

ZERO = Decimal(0)
WARNING_RATIO = Decimal("0.8")


def current_month(at: datetime | None = None) -> date:
    at = at or datetime.now(UTC)
    return date(at.year, at.month, 1)


@dataclass(frozen=True, slots=True)
class CapState:
    customer_id: int
    cap: Decimal | None
    spent: Decimal
    projected: Decimal
    status: str


def cap_status(cap: Decimal | None, spent: Decimal) -> str:
    if cap is None:
        return "NONE"
    if spent >= cap:
        return "REACHED"
    if spent >= cap * WARNING_RATIO:
        return "WARNING"
    return "UNDER"


def projection(spent: Decimal, at: datetime) -> Decimal:
    """Month-to-date spend ÷ elapsed days × days in month (elapsed counts today)."""
    days = calendar.monthrange(at.year, at.month)[1]
    return (spent / at.day * days).quantize(Decimal("0.01"))


async def cap_states(customer_ids: list[int], at: datetime | None = None) -> dict[int, CapState]:
    at = at or datetime.now(UTC)
    month = current_month(at)
    caps = {
        row.customer_id: row.monthly_spending_cap
        for row in await BillingPreferences.filter(customer_id__in=customer_ids).only(
            "customer_id", "monthly_spending_cap"
        )
    }
    spent = {row.customer_id: row.spent for row in await MonthlySpend.filter(customer_id__in=customer_ids, month=month)}
    out = {}
    for cid in customer_ids:
        cap, total = caps.get(cid), spent.get(cid, ZERO)
        out[cid] = CapState(cid, cap, total, projection(total, at), cap_status(cap, total))
    return out


async def spent_this_month(customer_id: int, at: datetime | None = None) -> Decimal:
    row = await MonthlySpend.filter(customer_id=customer_id, month=current_month(at)).first()
    return row.spent if row else ZERO


async def _record_crossing(customer: Customer, month: date, cap: Decimal, level: CapLevel, spent: Decimal) -> bool:
    """True the first time this (customer, month, cap, level) is crossed."""
    before = await CapCrossing.filter(customer_id=customer.id, month=month, cap=cap, level=int(level)).exists()
    if before:
        return False
    await CapCrossing.bulk_create(
        [CapCrossing(customer_id=customer.id, month=month, cap=cap, level=int(level), spent=spent)],
        ignore_conflicts=True,
    )
    return True


async def evaluate(
    customer: Customer,
    viewer: Viewer,
    at: datetime | None = None,
    *,
    prefs: BillingPreferences | None = None,
    spent: Decimal | None = None,
) -> str:
    """Applies the cap to the current month's spend: records crossings, pauses or resumes. Call in a transaction,
    after the spend or the cap changed. Returns the cap status. `prefs` and `spent` (this month's total): when the
    caller has them already in this transaction."""
    at = at or datetime.now(UTC)
    prefs = prefs or await BillingPreferences.filter(customer_id=customer.id).first()
    spent = spent if spent is not None else await spent_this_month(customer.id, at)
    await emit(SPENDING_CAP_CHANGED, customer_id=customer.id, partner_id=customer.partner_id)
    return await apply_cap(customer, viewer, at, prefs=prefs, spent=spent)


async def apply_cap(
    customer: Customer, viewer: Viewer, at: datetime, *, prefs: BillingPreferences | None, spent: Decimal
) -> str:
    """`evaluate` but for announcing the change (`spending_cap.changed`), which the metering path on PostgreSQL
    writes with the rest of its batch: records crossings, pauses or resumes; sends no statement while the spend is
    under the cap (or there is none) and the service is active. Returns the cap status."""
    month = current_month(at)
    cap = prefs.monthly_spending_cap if prefs else None
    status = cap_status(cap, spent)
    if (
        cap is not None
        and status in ("WARNING", "REACHED")
        and await _record_crossing(customer, month, cap, CapLevel.WARNING, spent)
    ):
        if status == "WARNING":  # jumping straight past 100% sends the cap-reached alert alone
            await alerts.on_cap_crossing(customer, 80, f"{month:%Y-%m}", cap, spent)
        await record(
            viewer,
            AuditEventType.BILLING,
            "spending_cap.warning",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"cap": str(cap), "spent": str(spent), "month": month.isoformat()},
        )
    if status == "REACHED":
        assert cap is not None
        if await _record_crossing(customer, month, cap, CapLevel.REACHED, spent):
            await alerts.on_cap_crossing(customer, 100, f"{month:%Y-%m}", cap, spent)
        await _pause(customer, viewer, cap, spent, at)
    elif customer.service_state == ServiceState.PAUSED_CAP:
        await _resume(customer, viewer, cap, spent)
    return status


async def _pause(customer: Customer, viewer: Viewer, cap: Decimal, spent: Decimal, at: datetime) -> None:
    updated = await Customer.filter(id=customer.id, service_state=ServiceState.ACTIVE).update(
        service_state=ServiceState.PAUSED_CAP
    )
    if not updated:
        return
    customer.service_state = ServiceState.PAUSED_CAP
    paused = await Campaign.filter(customer_id=customer.id, status=CampaignStatus.RUNNING).update(
        status=CampaignStatus.PAUSED, pause_reason=PauseReason.CAP, paused_at=at
    )
    await record(
        viewer,
        AuditEventType.BILLING,
        "spending_cap.reached",
        object_type="Customer",
        object_id=customer.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={
            "cap": str(cap),
            "spent": str(spent),
            "campaigns_paused": paused,
            "changes": {"service_state": {"before": "ACTIVE", "after": "PAUSED_CAP"}},
        },
    )


async def _resume(customer: Customer, viewer: Viewer, cap: Decimal | None, spent: Decimal) -> None:
    updated = await Customer.filter(id=customer.id, service_state=ServiceState.PAUSED_CAP).update(
        service_state=ServiceState.ACTIVE
    )
    if not updated:
        return
    customer.service_state = ServiceState.ACTIVE
    resumed = await Campaign.filter(
        customer_id=customer.id, status=CampaignStatus.PAUSED, pause_reason=PauseReason.CAP
    ).update(status=CampaignStatus.RUNNING, pause_reason=None, paused_at=None)
    await record(
        viewer,
        AuditEventType.BILLING,
        "spending_cap.resumed",
        object_type="Customer",
        object_id=customer.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={
            "cap": str(cap) if cap is not None else None,
            "spent": str(spent),
            "campaigns_resumed": resumed,
            "changes": {"service_state": {"before": "PAUSED_CAP", "after": "ACTIVE"}},
        },
    )


async def spending_cap_update(viewer: Viewer, command: SpendingCapUpdate) -> CapState:
    """Sets, raises or removes (None) the monthly cap, then pauses or resumes accordingly."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    v = Validator()
    value = None if command.cap is None else parse_amount(v, "cap", command.cap, places=2)
    v.raise_if_invalid()
    async with in_transaction():
        await BillingPreferences.bulk_create([BillingPreferences(customer_id=customer.id)], ignore_conflicts=True)
        prefs = await BillingPreferences.select_for_update().get(customer_id=customer.id)
        before = prefs.monthly_spending_cap
        customer = await Customer.select_for_update().get(id=customer.id)
        if before != value:
            prefs.monthly_spending_cap = value
            await prefs.save(update_fields=["monthly_spending_cap", "updated_at"])
            await record(
                viewer,
                AuditEventType.BILLING,
                "spending_cap.update",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={
                    "changes": {
                        "monthly_spending_cap": {
                            "before": str(before) if before is not None else None,
                            "after": str(value) if value is not None else None,
                        }
                    }
                },
            )
        await evaluate(customer, viewer)
    return (await cap_states([customer.id]))[customer.id]
