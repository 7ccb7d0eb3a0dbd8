"""Payment providers. Stage 1 is manual: the billing team takes payments outside Partnerdesk and records refills
with `walletRefill`. A card provider implements the same protocol later and reports failures through
`report_failure`, which raises the always-on payment-failed alert."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from domain.alerts.services import payment_failed
from domain.customers.models import Customer


class PaymentProvider(Protocol):
    name: str

    async def request_refill(self, customer: Customer, amount: Decimal, reference: str) -> str:
        """Starts collecting `amount`; returns the provider's attempt id."""
        ...


class ManualProvider:
    """Nothing is charged automatically: the refill request itself is the instruction to the billing team."""

    name = "manual"

    async def request_refill(self, customer: Customer, amount: Decimal, reference: str) -> str:
        return f"manual:{customer.id}:{reference}"


async def report_failure(customer: Customer, attempt_id: str, reason: str, amount: Decimal | None = None) -> None:
    """A provider's failed payment: the always-on alert, once per attempt."""
    await payment_failed(customer, attempt_id, reason, amount)
