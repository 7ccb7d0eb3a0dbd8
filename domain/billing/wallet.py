"""USD wallets (REFILLABLE_WALLET billing, seed 001): usage charges them, falling below the refill threshold opens
the one refill request, a manual refill (`walletRefill`, idempotent) closes it. Every change is a ledger transfer
in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from domain.alerts import services as alerts
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.commands import WalletRefill
from domain.billing.credits import checked_amount, staff_customer
from domain.billing.models import BillingPreferences, RefillRequest, RefillRequestStatus
from domain.billing.read import preferences_of
from domain.common.json import JsonObject
from domain.common.validation import Validator
from domain.customers.models import Customer
from domain.events.services import AUTO_TOP_UP_REQUESTED, REFILL_REQUESTED, WALLET_CHANGED, WALLET_REFILLED, emit
from domain.ledger import services as ledger
from domain.ledger.idempotency import TRANSFER, check_key, money_mutation
from domain.ledger.models import Currency, LedgerAccount, Transfer, TransferKind
from domain.viewer import Viewer


async def charge_wallet(
    customer: Customer,
    amount: Decimal,
    metadata: JsonObject | None = None,
    locked: Mapping[str, LedgerAccount] | None = None,
    prefs: BillingPreferences | None = None,
) -> Transfer:
    """Usage debits the wallet; falling below the refill threshold opens the one refill request (in a transaction;
    `locked`: the accounts, if the caller locked them already; `prefs`: the customer's, if read already)."""
    transfer = await ledger.post(
        ledger.customer_wallet(customer.id, customer.partner_id),
        ledger.revenue(Currency.USD, customer.partner_id, customer.id),
        amount,
        TransferKind.USAGE_CHARGE,
        metadata=metadata,
        locked=locked,
    )
    await wallet_changed(customer, transfer.debit_balance_after, prefs)
    return transfer


async def wallet_changed(customer: Customer, balance: Decimal, prefs: BillingPreferences | None = None) -> None:
    """After any change to a customer's wallet (in its transaction): refill request, low-balance alert, views.
    `prefs`: the customer's preferences, if the caller read them already."""
    prefs = prefs or (await preferences_of([customer.id]))[customer.id]
    await wallet_checks(customer, balance, prefs)
    await emit(WALLET_CHANGED, customer_id=customer.id, partner_id=customer.partner_id)


async def wallet_checks(customer: Customer, balance: Decimal, prefs: BillingPreferences) -> None:
    """`wallet_changed` but for announcing the change (`wallet.changed`), which the metering path on PostgreSQL
    writes with the rest of its batch: the refill request and the low-balance alert (no statement for a customer
    without a refill threshold or amount)."""
    await open_refill_request_if_needed(customer, balance, prefs)
    await alerts.on_wallet_balance(customer, balance, prefs)


async def open_refill_request_if_needed(
    customer: Customer, balance: Decimal, prefs: BillingPreferences | None = None
) -> RefillRequest | None:
    prefs = prefs or (await preferences_of([customer.id]))[customer.id]
    if prefs.refill_threshold is None or balance >= prefs.refill_threshold:
        return None
    if await RefillRequest.filter(open_customer_id=customer.id).exists():
        return None
    request = await RefillRequest.create(
        customer_id=customer.id,
        open_customer_id=customer.id,
        requested_amount=prefs.refill_amount,
        balance_at_open=balance,
        threshold=prefs.refill_threshold,
    )
    await emit(REFILL_REQUESTED, customer_id=customer.id, partner_id=customer.partner_id, refill_request_id=request.id)
    if prefs.auto_top_up:  # once per crossing: this request is the crossing
        await emit(
            AUTO_TOP_UP_REQUESTED, customer_id=customer.id, partner_id=customer.partner_id, refill_request_id=request.id
        )
    await record(
        Viewer.system("billing"),
        AuditEventType.BILLING,
        "wallet.refill_requested",
        object_type="RefillRequest",
        object_id=request.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={
            "balance": str(balance),
            "threshold": str(prefs.refill_threshold),
            "requested_amount": str(prefs.refill_amount) if prefs.refill_amount is not None else None,
        },
    )
    return request


async def refilled(customer: Customer, transfer: Transfer, amount: Decimal, source: str, reference: str) -> None:
    """After money entered the wallet (a manual refill, a card top-up; in its transaction): the refill request is
    closed, the refill-processed alert raised, `wallet.refilled` announced."""
    await RefillRequest.filter(open_customer_id=customer.id).update(
        open_customer_id=None,
        status=RefillRequestStatus.CLOSED,
        closed_at=datetime.now(UTC),
        closed_by_transfer_id=transfer.id,
    )
    await wallet_changed(customer, transfer.credit_balance_after)
    await alerts.on_refill(customer, transfer.id, amount, transfer.credit_balance_after)
    await emit(
        WALLET_REFILLED,
        customer_id=customer.id,
        partner_id=customer.partner_id,
        transfer_id=transfer.id,
        amount=str(amount.quantize(Decimal("0.01"))),
        balance_after=str(transfer.credit_balance_after.quantize(Decimal("0.01"))),
        currency="USD",
        source=source,
        reference=reference,
    )


async def wallet_refill(viewer: Viewer, command: WalletRefill) -> Transfer:
    """Records a manual refill (stage 1: the billing team takes the payment outside Partnerdesk)."""
    customer = await staff_customer(viewer, command.customer_id)
    v = Validator()
    amount = checked_amount(v, "amount", command.amount, places=2)
    reference = v.text("reference", command.reference, max_length=200) or ""
    key = check_key(command.idempotency_key)
    v.raise_if_invalid()

    async def perform() -> Transfer:
        transfer = await ledger.post(
            ledger.external_funding(Currency.USD, customer.partner_id),
            ledger.customer_wallet(customer.id, customer.partner_id),
            amount,
            TransferKind.WALLET_REFILL,
            metadata={"reference": reference},
            error_field="amount",
        )
        closed = await RefillRequest.filter(open_customer_id=customer.id).exists()
        await refilled(customer, transfer, amount, "manual", reference)
        await record(
            viewer,
            AuditEventType.BILLING,
            "wallet.refill",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={
                "amount": str(amount),
                "balance_after": str(transfer.credit_balance_after),
                "reference": reference,
                "refill_request_closed": bool(closed),
                "transfer_id": transfer.id,
            },
        )
        return transfer

    request: JsonObject = {"customer_id": customer.id, "amount": str(amount), "reference": reference}
    return await money_mutation(viewer, "walletRefill", key, request, perform, TRANSFER)
