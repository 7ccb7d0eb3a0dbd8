"""Pre-authorizing usage (seed 001): a hold reserves the estimated cost of a call or campaign step against the
spending cap and the balance that pays for it, until the usage that consumes it is recorded, it is released, or
it expires (`HOLD_TTL`). Placing one is a money mutation, idempotent per key (`money_mutation`)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from domain.billing.cap import current_month
from domain.billing.read import preferences_of
from domain.common.json import JsonObject
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer, ServiceState
from domain.errors import DomainError, ErrorCode
from domain.features.services import toggles_of
from domain.ledger import services as ledger
from domain.ledger.idempotency import Kept, check_key, money_mutation
from domain.usage import store
from domain.usage.commands import UsageAuthorize, UsageHoldRelease
from domain.usage.models import Funding, HoldStatus, UnitType, UsageHold
from domain.usage.rating import rate_book
from domain.usage.rules import HOLD_TTL, MICRO, QUANTITY_LIMITS, ZERO, funding_of, require_recorder
from domain.viewer import Viewer
from domain.visibility import get_visible, restrict

HOLD = Kept("hold_id", UsageHold)


async def _active_holds(customer_id: int, now: datetime) -> tuple[Decimal, Decimal]:
    """Σ (USD, credits) of live holds."""
    rows = await UsageHold.filter(customer_id=customer_id, status=HoldStatus.ACTIVE, expires_at__gt=now).values_list(
        "id", "amount", "credits"
    )
    usd = sum((Decimal(a) for _, a, _ in rows), ZERO)
    credits = sum((Decimal(c) for _, _, c in rows), ZERO)
    return usd, credits


async def active_holds_of(customer_ids: list[int], now: datetime) -> dict[int, list[tuple[int, Decimal, Decimal]]]:
    """Live holds (id, USD, credits) of many customers in one query."""
    out: dict[int, list[tuple[int, Decimal, Decimal]]] = defaultdict(list)
    if customer_ids:
        rows = await UsageHold.filter(
            customer_id__in=customer_ids, status=HoldStatus.ACTIVE, expires_at__gt=now
        ).values_list("customer_id", "id", "amount", "credits")
        for customer_id, hold_id, amount, credits in rows:
            out[customer_id].append((hold_id, Decimal(amount), Decimal(credits)))
    return out


async def _lock_customer_month(customer_id: int, now: datetime) -> Decimal:
    """Serialises authorizations of one customer: locks the current month's spend row (created if missing) and
    returns what it holds, in one statement."""
    return await store.lock_spend(customer_id, current_month(now))


async def usage_authorize(viewer: Viewer, command: UsageAuthorize) -> UsageHold:
    """Places a hold for the estimated cost if the service is active and cap and balance allow it."""
    require_recorder(viewer)
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    v = Validator()
    try:
        unit = UnitType(command.unit_type)
    except ValueError:
        v.add("unit_type", "Unknown unit type.")
        unit = UnitType.VOICE_MINUTES
    quantity = parse_amount(v, "estimated_quantity", command.estimated_quantity)
    if quantity is not None and quantity > QUANTITY_LIMITS[unit]:
        v.add("estimated_quantity", f"At most {QUANTITY_LIMITS[unit]:,} {unit} per event.")
    key = check_key(command.idempotency_key)
    v.raise_if_invalid()
    estimate = quantity if quantity is not None else ZERO  # set: `v` raised otherwise

    async def perform() -> UsageHold:
        return await _place_hold(customer, unit, estimate, datetime.now(UTC))

    request: JsonObject = {"customer_id": customer.id, "unit_type": str(unit), "estimated_quantity": str(estimate)}
    # no savepoint: `_place_hold` refuses before it writes anything but the (unchanged) month's spend row
    return await money_mutation(viewer, "usageAuthorize", key, request, perform, HOLD, savepoint=False)


async def _place_hold(customer: Customer, unit: UnitType, quantity: Decimal, now: datetime) -> UsageHold:
    """The hold, if the service is active and the cap and the paying balance (less live holds) allow it."""
    prefs = (await preferences_of([customer.id]))[customer.id]
    ai_credits = (await toggles_of([customer.id]))[customer.id].ai_credits_enabled
    funding = funding_of(ai_credits, prefs)
    payer = (
        ledger.customer_credits(customer.id, customer.partner_id)
        if funding == Funding.CREDITS
        else ledger.customer_wallet(customer.id, customer.partner_id)
    )
    # The account that pays is locked before the balance is read, so no charge of `record_usage` (which locks it,
    # and reads the holds, first) commits in between; both take ledger rows before the month's spend row, in that
    # order, so they cannot deadlock.
    locked = await ledger.lock_accounts(payer) if funding != Funding.INVOICE else {}
    spent = await _lock_customer_month(customer.id, now)
    fresh = await Customer.get(id=customer.id)
    if fresh.service_state != ServiceState.ACTIVE:
        raise DomainError.single(ErrorCode.SERVICE_PAUSED, "Service is paused: the monthly spending cap was reached.")
    rate = (await rate_book([customer.partner_id])).rate(customer.partner_id, unit, now)
    amount = (quantity * rate.price).quantize(MICRO)
    credits = (quantity * rate.credit_price).quantize(MICRO) if funding == Funding.CREDITS else ZERO
    held_usd, held_credits = await _active_holds(customer.id, now)
    cap = prefs.monthly_spending_cap
    if cap is not None and spent + held_usd + amount > cap:
        raise DomainError.single(ErrorCode.CAP_REACHED, "This would exceed the monthly spending cap.")
    if funding == Funding.CREDITS and locked[payer.key].balance - held_credits < credits:
        raise DomainError.single(ErrorCode.INSUFFICIENT_CREDITS, "Not enough AI credits for this.")
    if funding == Funding.WALLET and locked[payer.key].balance - held_usd < amount:
        raise DomainError.single(ErrorCode.INSUFFICIENT_BALANCE, "The wallet balance is too low for this.")
    return await UsageHold.create(
        customer_id=customer.id,
        unit_type=unit,
        estimated_quantity=quantity,
        amount=amount,
        credits=credits,
        funding=funding,
        expires_at=now + HOLD_TTL,
    )


async def usage_hold_release(viewer: Viewer, command: UsageHoldRelease) -> UsageHold:
    require_recorder(viewer)
    hold = await UsageHold.get_or_none(id=command.hold_id)
    if hold is None or not await restrict(Customer, viewer).filter(id=hold.customer_id).exists():
        raise DomainError.single(ErrorCode.NOT_FOUND, "Hold not found.", "hold_id")
    if hold.status == HoldStatus.ACTIVE:
        now = datetime.now(UTC)
        await UsageHold.filter(id=hold.id, status=HoldStatus.ACTIVE).update(
            status=HoldStatus.EXPIRED if hold.expires_at <= now else HoldStatus.RELEASED, closed_at=now
        )
        hold = await UsageHold.get(id=hold.id)
    return hold


async def expire_holds(at: datetime | None = None) -> int:
    """Marks holds past their expiry (they already stopped counting at that instant)."""
    now = at or datetime.now(UTC)
    return await UsageHold.filter(status=HoldStatus.ACTIVE, expires_at__lte=now).update(
        status=HoldStatus.EXPIRED, closed_at=now
    )
