"""Demo mode (seed 001): a partner marks a customer as a demo (`customerDemoModeSet`); it then holds generated
sample data (domain/demo/sample.py), has limited features (no API keys, emails only to the outbox folder, no real
payments) and is reset to its sample state every night (UTC) by the `demo_reset` job, exactly once per night even
with several schedulers (the state row is locked and the last reset's date checked under the lock).

Switching demo mode off wipes the sample, so the customer starts clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.customers.models import Customer, CustomerStatus
from domain.demo import sample
from domain.demo.commands import CustomerDemoModeSet
from domain.demo.models import DemoState
from domain.errors import DomainError, ErrorCode
from domain.events import services as events
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff


def now() -> datetime:
    return datetime.now(UTC)


def next_midnight(at: datetime) -> datetime:
    return datetime(at.year, at.month, at.day, tzinfo=UTC) + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DemoView:
    customer_id: int
    enabled: bool
    last_reset_at: datetime | None

    @property
    def next_reset_at(self) -> datetime | None:
        return next_midnight(now()) if self.enabled else None


async def demo_states(customer_ids: Sequence[int]) -> dict[int, DemoView]:
    """`Customer.demo` of many customers in one query (DataLoader batch)."""
    rows = {row.customer_id: row for row in await DemoState.filter(customer_id__in=list(customer_ids))}
    return {
        cid: DemoView(cid, bool(rows[cid].enabled), rows[cid].last_reset_at)
        if cid in rows
        else DemoView(cid, False, None)
        for cid in customer_ids
    }


async def is_demo(customer_id: int) -> bool:
    return await DemoState.filter(customer_id=customer_id, enabled=True).exists()


async def refuse_if_demo(customer_id: int, what: str, field: str | None = None) -> None:
    """NOT_ELIGIBLE for what demo customers cannot have (API keys, real payments)."""
    if await is_demo(customer_id):
        raise DomainError.single(ErrorCode.NOT_ELIGIBLE, f"Demo customers cannot {what}.", field)


async def _lock_state(customer_id: int) -> DemoState:
    await DemoState.bulk_create([DemoState(customer_id=customer_id)], ignore_conflicts=True)
    return await DemoState.select_for_update().get(customer_id=customer_id)


async def _reset(state: DemoState, customer: Customer, at: datetime) -> None:
    """Wipes the previous sample and lays a new one (state row locked, inside the transaction)."""
    await sample.wipe(customer, state.epoch)
    state.epoch += 1
    await sample.lay_sample(customer, state.epoch, at)
    state.last_reset_at = at
    await state.save(update_fields=["epoch", "last_reset_at", "updated_at"])
    await events.emit(events.ACCESS_REVOKED, customer_id=customer.id, partner_id=customer.partner_id)
    for topic in (events.CREDITS_CHANGED, events.WALLET_CHANGED, events.SPENDING_CAP_CHANGED):
        await events.emit(topic, customer_id=customer.id, partner_id=customer.partner_id)


async def customer_demo_mode_set(viewer: Viewer, command: CustomerDemoModeSet) -> DemoView:
    """Partner admins switch a customer's demo mode: on lays the sample (and revokes its API keys), off wipes it."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_partner_staff(viewer, admin=True)
    if command.enabled is None:
        raise DomainError.single(ErrorCode.INVALID, "Must be true or false.", "enabled")
    if command.enabled and customer.status != CustomerStatus.ACTIVE:
        raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "The customer is disabled.", "customer_id")
    async with in_transaction():
        state = await _lock_state(customer.id)
        if bool(state.enabled) == command.enabled:
            return DemoView(customer.id, state.enabled, state.last_reset_at)
        at = now()
        state.enabled = command.enabled
        if command.enabled:
            await _reset(state, customer, at)
        else:
            await sample.wipe(customer, state.epoch)
            state.last_reset_at = None
        await state.save(update_fields=["enabled", "last_reset_at", "updated_at"])
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "customer.demo_mode",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"enabled": command.enabled, "epoch": state.epoch},
        )
    return DemoView(customer.id, state.enabled, state.last_reset_at)


async def reset_demo(customer_id: int, at: datetime | None = None, *, force: bool = False) -> bool:
    """Resets one demo customer to its sample state unless it was reset since the last midnight (UTC) already
    (checked under the state row's lock, so two schedulers reset it once). True when it reset."""
    at = at or now()
    midnight = next_midnight(at) - timedelta(days=1)
    async with in_transaction():
        state = await DemoState.select_for_update().get_or_none(customer_id=customer_id, enabled=True)
        if state is None or (not force and state.last_reset_at is not None and state.last_reset_at >= midnight):
            return False
        customer = await Customer.get_or_none(id=customer_id, status=CustomerStatus.ACTIVE)
        if customer is None:
            return False
        await _reset(state, customer, at)
        await record(
            Viewer.system("demo-reset"),
            AuditEventType.DATA_CHANGE,
            "customer.demo_reset",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"epoch": state.epoch},
        )
    return True


async def reset_demos(at: datetime | None = None) -> int:
    """The nightly job: every demo customer not reset since the last midnight (UTC); returns how many were."""
    states = await DemoState.filter(enabled=True).order_by("customer_id")
    return sum([await reset_demo(state.customer_id, at) for state in states])
