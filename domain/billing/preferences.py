"""Billing preferences (seed 002): billing mode, primary billing contact, spending cap, wallet refill settings and
alert switches. The cap-reached and payment-failed alerts are always on and have no switch."""

from __future__ import annotations

from decimal import Decimal

from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, Role
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.billing.cap import evaluate
from domain.billing.commands import BillingPreferencesUpdate
from domain.billing.models import BillingMode, BillingPreferences
from domain.billing.wallet import open_refill_request_if_needed
from domain.common.commands import UNSET, sent
from domain.common.json import JsonObject, JsonValue
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer, CustomerStatus
from domain.errors import DomainError, ErrorCode
from domain.ledger import services as ledger
from domain.payments.providers import MANUAL, provider
from domain.viewer import Viewer
from domain.visibility import get_visible, require_customer_manager

PREFERENCE_FIELDS = (
    "billing_mode",
    "primary_contact_user_id",
    "monthly_spending_cap",
    "cap_alert_at_80",
    "refill_amount",
    "refill_threshold",
    "low_balance_alert",
    "refill_processed_alert",
    "low_credit_threshold",
    "extra_alert_recipients",
    "auto_top_up",
)
SWITCHES = ("cap_alert_at_80", "low_balance_alert", "refill_processed_alert", "auto_top_up")
USD_AMOUNTS = ("monthly_spending_cap", "refill_amount", "refill_threshold")


def _snapshot(prefs: BillingPreferences) -> JsonObject:
    def plain(value: JsonValue) -> JsonValue:
        return str(value) if isinstance(value, Decimal) else value

    return {f: plain(getattr(prefs, f)) for f in PREFERENCE_FIELDS}


async def _check_primary_contact(v: Validator, customer: Customer, user_id: int | None) -> None:
    if user_id is None:
        return
    is_admin = await Membership.filter(
        user_id=user_id, customer_id=customer.id, role=Role.CUSTOMER_ADMIN, user__is_active=True
    ).exists()
    if not is_admin or customer.status != CustomerStatus.ACTIVE:
        v.add(
            "primary_contact_user_id",
            "The primary billing contact must be an active admin of this customer. Invite or reactivate an admin "
            "first.",
        )


async def _clean(v: Validator, customer: Customer, command: BillingPreferencesUpdate) -> dict[str, object]:
    """The new values of the fields the command carries, checked (failures collected in `v`)."""
    updates: dict[str, object] = {}
    if command.billing_mode is not UNSET:
        if command.billing_mode is None:
            v.add("billing_mode", "Choose a billing mode.", ErrorCode.REQUIRED)
        else:
            updates["billing_mode"] = BillingMode(command.billing_mode)
    if command.primary_contact_user_id is not UNSET:
        await _check_primary_contact(v, customer, command.primary_contact_user_id)
        updates["primary_contact_user_id"] = command.primary_contact_user_id
    for name in USD_AMOUNTS:
        value = getattr(command, name)
        if sent(value):
            allow_zero = name != "monthly_spending_cap"
            updates[name] = None if value is None else parse_amount(v, name, value, places=2, allow_zero=allow_zero)
    if sent(command.low_credit_threshold):
        threshold = command.low_credit_threshold
        updates["low_credit_threshold"] = (
            None if threshold is None else parse_amount(v, "low_credit_threshold", threshold, allow_zero=True)
        )
    for name in SWITCHES:
        value = getattr(command, name)
        if sent(value):
            if not isinstance(value, bool):
                v.add(name, "Must be true or false.")
            else:
                updates[name] = value
    if sent(command.extra_alert_recipients):
        recipients = command.extra_alert_recipients or []
        if len(recipients) > 20:
            v.add("extra_alert_recipients", "At most 20 extra recipients.")
        cleaned = [v.email("extra_alert_recipients", r) for r in recipients[:20]]
        updates["extra_alert_recipients"] = sorted({c.lower() for c in cleaned if c})
    return updates


def _check_auto_top_up(prefs: BillingPreferences) -> None:
    """Charging the saved card needs a card provider, a wallet, and the amount and threshold to charge at."""
    if provider().name == MANUAL:
        raise DomainError.single(
            ErrorCode.NOT_ELIGIBLE, "Automatic top-ups need a card payment provider (Stripe).", "auto_top_up"
        )
    if prefs.billing_mode != BillingMode.REFILLABLE_WALLET:
        raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Automatic top-ups are for refillable wallets.", "auto_top_up")
    if prefs.refill_amount is None or prefs.refill_threshold is None:
        raise DomainError.single(
            ErrorCode.REQUIRED, "Set the refill amount and threshold for automatic top-ups.", "auto_top_up"
        )


async def billing_preferences_update(viewer: Viewer, command: BillingPreferencesUpdate) -> BillingPreferences:
    """Partial update of a customer's billing preferences; cap-reached and payment-failed alerts stay always on."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    v = Validator()
    updates = await _clean(v, customer, command)
    v.raise_if_invalid()

    async with in_transaction():
        await BillingPreferences.bulk_create([BillingPreferences(customer_id=customer.id)], ignore_conflicts=True)
        prefs = await BillingPreferences.select_for_update().get(customer_id=customer.id)
        before = _snapshot(prefs)
        for key, value in updates.items():
            setattr(prefs, key, value)
        # above the refill amount, refilling an empty wallet would leave it below the threshold, its request open
        if (
            prefs.refill_amount is not None
            and prefs.refill_threshold is not None
            and prefs.refill_threshold > prefs.refill_amount
        ):
            raise DomainError.single(
                ErrorCode.INVALID,
                "The refill threshold must not be above the refill amount.",
                "refill_threshold" if "refill_threshold" in updates else "refill_amount",
            )
        if prefs.auto_top_up and "auto_top_up" in updates:
            _check_auto_top_up(prefs)
        diff = changes(before, _snapshot(prefs))
        if diff:
            await prefs.save()
            await record(
                viewer,
                AuditEventType.BILLING,
                "billing_preferences.update",
                object_type="Customer",
                object_id=customer.id,
                partner_id=customer.partner_id,
                customer_id=customer.id,
                details={"changes": diff},
            )
            if "monthly_spending_cap" in diff:
                await evaluate(await Customer.select_for_update().get(id=customer.id), viewer)
            if "refill_threshold" in diff:
                balance = await ledger.balance_of(ledger.customer_wallet(customer.id, customer.partner_id))
                await open_refill_request_if_needed(customer, balance)
    return prefs
