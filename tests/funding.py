"""Money for test customers, as the platform's external funding sends it: a funded wallet, granted AI credits."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tortoise.transactions import in_transaction

from domain.billing.commands import BillingPreferencesUpdate
from domain.billing.credits import grant_credits
from domain.billing.models import BillingMode, GrantSource
from domain.billing.preferences import billing_preferences_update
from domain.customers.models import Customer
from domain.features.services import set_ai_credits
from domain.ledger import services as ledger
from domain.ledger.models import Currency, TransferKind
from tests.conftest import SYSTEM


async def fund_wallet(customer: Customer, amount: str, **prefs: Any) -> None:
    """Puts the customer on the refillable wallet (with `prefs`) and pays `amount` USD into it."""
    await billing_preferences_update(
        SYSTEM, BillingPreferencesUpdate(customer.id, billing_mode=BillingMode.REFILLABLE_WALLET, **prefs)
    )
    async with in_transaction():
        await ledger.post(
            ledger.external_funding(Currency.USD, customer.partner_id),
            ledger.customer_wallet(customer.id, customer.partner_id),
            Decimal(amount),
            TransferKind.WALLET_REFILL,
        )


async def fund_credits(customer: Customer, credits: str, expires_at: datetime | None = None) -> None:
    """Turns AI credits on for the customer and grants it `credits` (expiring at `expires_at`, if given)."""
    await set_ai_credits(customer.id, True)
    async with in_transaction():
        transfer = await ledger.post(
            ledger.external_funding(Currency.CREDITS, customer.partner_id),
            ledger.customer_credits(customer.id, customer.partner_id),
            Decimal(credits),
            TransferKind.CREDITS_GRANT,
        )
        await grant_credits(customer, Decimal(credits), GrantSource.ADJUSTMENT, transfer, expires_at)
