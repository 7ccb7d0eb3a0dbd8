"""Pre-authorizing usage (seed 001): a hold reserves the estimated cost of a call or campaign step against the
spending cap and the balance that pays for it, until the usage that consumes it is recorded, it is released, or
it expires (`HOLD_TTL`). Placing one is a money mutation, idempotent per key (`money_mutation`)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from tortoise.transactions import in_transaction

from domain.billing.cap import current_month
from domain.billing.models import BillingPreferences
from domain.billing.read import preferences_of
from domain.common.json import JsonObject
from domain.common.rows import raw_sql
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer, ServiceState
from domain.errors import DomainError, ErrorCode
from domain.features.services import toggles_of
from domain.ledger import services as ledger
from domain.ledger.idempotency import (
    Kept,
    check_key,
    claim_values,
    money_mutation,
    replay,
    request_hash,
    scoped_key,
)
from domain.usage import store, store_pg
from domain.usage.commands import UsageAuthorize, UsageHoldRelease
from domain.usage.models import Funding, HoldStatus, UnitType, UsageHold
from domain.usage.rating import Rate, rate_book
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
    if raw_sql():
        return await _authorize_sql(viewer, command)
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    unit, estimate, key = _checked(command)

    async def perform() -> UsageHold:
        return await _place_hold(customer, unit, estimate, datetime.now(UTC))

    # no savepoint: `_place_hold` refuses before it writes anything but the (unchanged) month's spend row
    return await money_mutation(
        viewer, OPERATION, key, _request(customer, unit, estimate), perform, HOLD, savepoint=False
    )


OPERATION = "usageAuthorize"


def _checked(command: UsageAuthorize) -> tuple[UnitType, Decimal, str]:
    """The unit type, the estimated quantity and the idempotency key, or INVALID on each field that is not."""
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
    return unit, quantity if quantity is not None else ZERO, key  # set: `v` raised otherwise


def _request(customer: Customer, unit: UnitType, quantity: Decimal) -> JsonObject:
    """What the idempotency key is bound to."""
    return _request_of(customer.id, unit, quantity)


def _request_of(customer_id: int, unit: UnitType, quantity: Decimal) -> JsonObject:
    return {"customer_id": customer_id, "unit_type": str(unit), "estimated_quantity": str(quantity)}


def _payer(customer: Customer, funding: Funding) -> ledger.AccountRef | None:
    """The account a hold reserves against; none under invoice billing."""
    if funding == Funding.CREDITS:
        return ledger.customer_credits(customer.id, customer.partner_id)
    if funding == Funding.WALLET:
        return ledger.customer_wallet(customer.id, customer.partner_id)
    return None


async def _place_hold(customer: Customer, unit: UnitType, quantity: Decimal, now: datetime) -> UsageHold:
    """The hold, if the service is active and the cap and the paying balance (less live holds) allow it."""
    prefs = (await preferences_of([customer.id]))[customer.id]
    ai_credits = (await toggles_of([customer.id]))[customer.id].ai_credits_enabled
    funding = funding_of(ai_credits, prefs)
    payer = _payer(customer, funding)
    # The account that pays is locked before the balance is read, so no charge of `record_usage` (which locks it,
    # and reads the holds, first) commits in between; both take ledger rows before the month's spend row, in that
    # order, so they cannot deadlock.
    balance = (await ledger.lock_accounts(payer))[payer.key].balance if payer is not None else ZERO
    spent = await _lock_customer_month(customer.id, now)
    fresh = await Customer.get(id=customer.id)
    rate = (await rate_book([customer.partner_id])).rate(customer.partner_id, unit, now)
    held_usd, held_credits = await _active_holds(customer.id, now)
    amount, credits = _terms(
        quantity, rate, funding, prefs, fresh.service_state, spent, balance, held_usd, held_credits
    )
    return await UsageHold.create(
        customer_id=customer.id,
        unit_type=unit,
        estimated_quantity=quantity,
        amount=amount,
        credits=credits,
        funding=funding,
        expires_at=now + HOLD_TTL,
    )


def _amounts(quantity: Decimal, rate: Rate, funding: Funding) -> tuple[Decimal, Decimal]:
    """(USD, credits) a hold of `quantity` reserves at `rate`."""
    amount = (quantity * rate.price).quantize(MICRO)
    credits = (quantity * rate.credit_price).quantize(MICRO) if funding == Funding.CREDITS else ZERO
    return amount, credits


def _terms(
    quantity: Decimal,
    rate: Rate,
    funding: Funding,
    prefs: BillingPreferences,
    service_state: str,
    spent: Decimal,
    balance: Decimal,
    held_usd: Decimal,
    held_credits: Decimal,
) -> tuple[Decimal, Decimal]:
    """(USD, credits) the hold reserves, read under the locks: refused while the service is paused, past the cap
    (this month's spend and live holds), or beyond the paying balance less live holds."""
    if service_state != ServiceState.ACTIVE:
        raise DomainError.single(ErrorCode.SERVICE_PAUSED, "Service is paused: the monthly spending cap was reached.")
    amount, credits = _amounts(quantity, rate, funding)
    cap = prefs.monthly_spending_cap
    if cap is not None and spent + held_usd + amount > cap:
        raise DomainError.single(ErrorCode.CAP_REACHED, "This would exceed the monthly spending cap.")
    if funding == Funding.CREDITS and balance - held_credits < credits:
        raise DomainError.single(ErrorCode.INSUFFICIENT_CREDITS, "Not enough AI credits for this.")
    if funding == Funding.WALLET and balance - held_usd < amount:
        raise DomainError.single(ErrorCode.INSUFFICIENT_BALANCE, "The wallet balance is too low for this.")
    return amount, credits


async def _authorize_sql(viewer: Viewer, command: UsageAuthorize) -> UsageHold:
    """`usage_authorize` on PostgreSQL, with the ORM path's rules, locks and outcome in one transaction of two
    statements (`store_pg`): the customer read with the key claimed, its paying accounts and the month's spend
    locked after it; then the hold placed with its key's outcome by the statement that reads the service state and
    the other live holds under those locks. The rules decide from what it read: a refusal takes the hold back and is
    kept as the key's outcome, as `money_mutation` keeps it.

    The first statement locks the customer's wallet and credits accounts alike (which of them pays is decided
    from what it reads). When the one that pays does not exist yet, the transaction is rolled back, the account
    created (empty, committed on its own) and the authorization started over, so no account is ever created
    while the month's spend row is held."""
    try:
        unit, quantity, key = _checked(command)
    except DomainError:
        # an unknown customer answers NOT_FOUND before any invalid field, as on the ORM path
        await get_visible(Customer, viewer, command.customer_id, field="customer_id")
        raise
    return await ledger.with_accounts(lambda: _authorize_once(viewer, command.customer_id, unit, quantity, key))


async def _authorize_once(viewer: Viewer, customer_id: int, unit: UnitType, quantity: Decimal, key: str) -> UsageHold:
    now = datetime.now(UTC)
    scope_key = scoped_key(viewer, OPERATION, key)
    digest = request_hash(OPERATION, _request_of(customer_id, unit, quantity))
    failure: DomainError | None = None
    async with in_transaction():
        claim = claim_values(scope_key, OPERATION, digest, now, postgres=True)
        opened = await store_pg.authorize_open(viewer, customer_id, claim, current_month(now))
        customer = opened.found.customers.get(customer_id)
        if customer is None:
            raise DomainError.single(ErrorCode.NOT_FOUND, "Customer not found.", "customer_id")
        if opened.claim is None:  # another request holds or held the key: wait for it, then replay its outcome
            response = await replay(scope_key, digest)
            return await UsageHold.get(id=response[HOLD.field])
        prefs = opened.found.prefs[customer.id]
        funding = funding_of(opened.found.toggles[customer.id].ai_credits_enabled, prefs)
        payer = _payer(customer, funding)
        if payer is not None and payer.key not in opened.balances:
            raise ledger.FirstUse(payer)  # rolls back the claim and the locks
        balance = opened.balances[payer.key] if payer is not None else ZERO
        assert opened.spent is not None  # locked whenever the claim is this request's
        rate = opened.found.rates.rate(customer.partner_id, unit, now)
        # placed first, decided after: the statement that inserts the hold also reads the state and the other live
        # holds under the locks, and a refusal takes the hold back in the same transaction (one statement saved
        # on the usual path, one added on a refusal)
        amount, credits = _amounts(quantity, rate, funding)
        placed = await store_pg.place_hold(
            [customer.id, str(unit), quantity, amount, credits, str(funding), now + HOLD_TTL, datetime.now(UTC)],
            opened.claim,
            HOLD.field,
            now,
        )
        try:
            terms = _terms(
                quantity,
                rate,
                funding,
                prefs,
                placed.service_state,
                opened.spent,
                balance,
                placed.held_usd,
                placed.held_credits,
            )
        except DomainError as exc:
            failure = exc
            await store_pg.withdraw_hold(placed.hold.id, opened.claim, exc)
        else:
            assert terms == (amount, credits)  # the same rule priced it
            return placed.hold
    assert failure is not None  # every other way out of the block returned or raised
    raise failure  # only after commit, so the refusal is kept


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
