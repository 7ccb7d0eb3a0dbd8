"""The rules metering shares between recording usage and authorizing it: who may report usage, what pays for it,
and how much one event or batch may carry."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from domain.billing.models import BillingMode, BillingPreferences
from domain.usage.models import Funding, UnitType
from domain.viewer import Viewer
from domain.visibility import require_partner_staff

MAX_BATCH = 1000
MAX_AGE = timedelta(days=35)
CLOCK_SKEW = timedelta(minutes=5)
HOLD_TTL = timedelta(minutes=15)
ZERO = Decimal(0)
MICRO = Decimal("0.000001")
METADATA_MAX_DEPTH = 8
METADATA_MAX_BYTES = 4096
# The most of a unit type one event may report: far above a real call, campaign, mailbox or number plan, so an
# absurd quantity is refused where it arrives instead of filling the partner's revenue. One batch may carry
# BATCH_FACTOR times as much for one customer.
QUANTITY_LIMITS: dict[UnitType, Decimal] = {
    UnitType.VOICE_MINUTES: Decimal(10_000),
    UnitType.SMS_SEGMENTS: Decimal(100_000),
    UnitType.CHAT_TURNS: Decimal(100_000),
    UnitType.EMAILS: Decimal(1_000_000),
    UnitType.PHONE_NUMBER_MONTHS: Decimal(1_000),
    UnitType.STORAGE_MB: Decimal(10_000_000),  # 10 TB-months
}
BATCH_FACTOR = 100


def require_recorder(viewer: Viewer) -> None:
    """The platform's metering pipeline (platform admins) and partner staff may report usage, and so may a
    customer's own API key for that customer (restrict() keeps it there; its WRITE permission is checked with
    every other operation's in domain.access.policy)."""
    if viewer.api_key_id is not None and viewer.customer_id is not None:
        return
    require_partner_staff(viewer)


def funding_of(ai_credits: bool, prefs: BillingPreferences) -> Funding:
    if ai_credits:
        return Funding.CREDITS
    return Funding.WALLET if prefs.billing_mode == BillingMode.REFILLABLE_WALLET else Funding.INVOICE
