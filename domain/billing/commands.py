"""The write operations on credits, wallets, billing preferences and the spending cap, as typed commands (see
domain/common/commands.py). Amounts arrive as Decimals; the services still check their range and decimals."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from domain.billing.models import BillingMode
from domain.common.commands import UNSET, CustomerId, PartnerId, Patch, Ref, UserId


@dataclass(frozen=True, slots=True)
class PartnerCreditsAdd:
    """Platform admins fund a partner's credit pool from outside."""

    partner_id: PartnerId
    credits: Decimal
    idempotency_key: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerCreditsRecharge:
    """Credits from the partner's pool to the customer."""

    customer_id: CustomerId
    credits: Decimal
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class CustomerCreditsReclaim:
    """Unused credits from the customer back to the partner's pool."""

    customer_id: CustomerId
    credits: Decimal
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class WalletRefill:
    """A manual refill of the customer's USD wallet (the payment is taken outside Partnerdesk)."""

    customer_id: CustomerId
    amount: Decimal
    idempotency_key: str
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class BillingPreferencesUpdate:
    """Only the fields sent change; None clears a value (a billing mode or switch cannot be cleared)."""

    customer_id: CustomerId
    billing_mode: Patch[BillingMode | None] = UNSET
    primary_contact_user_id: Patch[UserId | None] = UNSET
    monthly_spending_cap: Patch[Decimal | None] = UNSET
    cap_alert_at_80: Patch[bool | None] = UNSET
    refill_amount: Patch[Decimal | None] = UNSET
    refill_threshold: Patch[Decimal | None] = UNSET
    low_balance_alert: Patch[bool | None] = UNSET
    refill_processed_alert: Patch[bool | None] = UNSET
    low_credit_threshold: Patch[Decimal | None] = UNSET
    extra_alert_recipients: Patch[list[str] | None] = UNSET
    auto_top_up: Patch[bool | None] = UNSET


@dataclass(frozen=True, slots=True)
class SpendingCapUpdate:
    """Sets, raises or removes (None) the monthly spending cap."""

    customer_id: CustomerId
    cap: Decimal | None


@dataclass(frozen=True, slots=True)
class WalletTopUpCheckout:
    """A card payment page (Stripe Checkout) that tops the wallet up by `amount` once paid."""

    customer_id: CustomerId
    amount: Decimal
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class InvoiceMarkPaid:
    """Records that an open invoice was paid outside Partnerdesk (the manual provider)."""

    invoice_id: Annotated[int, Ref("Invoice")]
    idempotency_key: str
    reference: str | None = None
