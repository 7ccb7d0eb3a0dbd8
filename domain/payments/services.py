"""Card payments: the billing portal (seed 003), wallet top-ups by checkout and automatically, and settling or
failing them (the provider's events reach these through domain/payments/events.py).

Money enters a wallet only in `settle_top_up`: a ledger transfer from the partner's external funding into the
wallet, under the payment's row lock, with the transfer's unique key `payment:<id>` as the last guard, so a payment
credits once whichever event (checkout completed, payment intent succeeded, a synchronous charge) reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, Role, User
from domain.alerts import services as alerts
from domain.alerts.models import AlertKind
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.commands import WalletTopUpCheckout
from domain.billing.credits import checked_amount
from domain.billing.models import BillingMode, RefillRequest, RefillRequestStatus
from domain.billing.read import preferences_of
from domain.billing.wallet import refilled
from domain.common.json import JsonObject
from domain.common.validation import Validator
from domain.config import config
from domain.customers.models import Customer
from domain.demo.services import is_demo, refuse_if_demo
from domain.errors import DomainError, ErrorCode, forbidden
from domain.events import services as events
from domain.ledger import services as ledger
from domain.ledger.idempotency import Kept, check_key, money_mutation
from domain.ledger.models import Currency, TransferKind
from domain.payments.models import Payment, PaymentPurpose, PaymentStatus, ProviderCustomer
from domain.payments.providers import MANUAL, ProviderError, provider
from domain.viewer import Viewer
from domain.visibility import get_visible

PAYMENT = Kept("payment_id", Payment)
MIN_TOP_UP = Decimal("1.00")
MAX_TOP_UP = Decimal("100000.00")
BILLING_PAGE = "/settings/billing-and-reports/billing-preferences"


def _system(label: str = "payments") -> Viewer:
    return Viewer.system(label)


async def _managed_customer(viewer: Viewer, customer_id: int) -> Customer:
    """A customer whose payments the viewer handles: its admins, its partner's staff, platform admins."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    if not (viewer.is_platform_admin or viewer.is_partner_staff or viewer.is_customer_admin):
        raise forbidden("Only admins can manage payments.")
    return customer


def check_return_url(v: Validator, field: str, value: str) -> str | None:
    url = v.text(field, value, required=True, max_length=2000)
    if url is None:
        return None
    allowed = ("http://", "https://") if config().is_dev else ("https://",)
    if not url.startswith(allowed) or len(url.split("://", 1)[1].split("/", 1)[0]) == 0:
        v.add(field, "Enter an absolute https URL.")
        return None
    return url


async def _billing_email(customer: Customer) -> str | None:
    prefs = (await preferences_of([customer.id]))[customer.id]
    if prefs.primary_contact_user_id is not None:
        user = await User.get_or_none(id=prefs.primary_contact_user_id, is_active=True)
        if user is not None:
            return user.email
    admin_ids = await Membership.filter(customer_id=customer.id, role=Role.CUSTOMER_ADMIN).values_list(
        "user_id", flat=True
    )
    admin = await User.filter(id__in=list(admin_ids), is_active=True).order_by("id").first()
    return admin.email if admin else None


async def provider_customer(customer: Customer) -> str | None:
    """Our customer's id at the card provider, created there on first use and remembered (None: manual)."""
    card = provider()
    found = await ProviderCustomer.get_or_none(customer_id=customer.id, provider=card.name)
    if found is not None:
        return found.external_id
    external = await card.create_customer(customer.name, await _billing_email(customer), customer.id)
    if external is None:
        return None
    # two first uses at once: the provider's idempotency key made them one customer there; one row is kept here
    await ProviderCustomer.bulk_create(
        [ProviderCustomer(customer_id=customer.id, provider=card.name, external_id=external)], ignore_conflicts=True
    )
    return (await ProviderCustomer.get(customer_id=customer.id, provider=card.name)).external_id


# ---------------------------------------------------------------- the billing portal


@dataclass(frozen=True, slots=True)
class PortalSession:
    url: str | None
    reason: ErrorCode | None = None


async def billing_portal_session(viewer: Viewer, customer_id: int, return_url: str) -> PortalSession:
    """A short-lived link to the provider's billing portal (payment methods, invoices); no URL, with the reason,
    when no card provider is configured or it failed."""
    customer = await _managed_customer(viewer, customer_id)
    v = Validator()
    url = check_return_url(v, "return_url", return_url)
    v.raise_if_invalid()
    assert url is not None
    card = provider()
    if card.name == MANUAL:
        return PortalSession(None, ErrorCode.PROVIDER_NOT_CONFIGURED)
    await refuse_if_demo(customer.id, "use real payments", "customer_id")
    try:
        external = await provider_customer(customer)
        link = await card.portal_url(external, url) if external else None
    except ProviderError:
        return PortalSession(None, ErrorCode.PROVIDER_ERROR)
    async with in_transaction():
        await record(
            viewer,
            AuditEventType.BILLING,
            "billing_portal.open",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"provider": card.name},
        )
    return PortalSession(link, None if link else ErrorCode.PROVIDER_ERROR)


# ---------------------------------------------------------------- top-ups


async def wallet_top_up_checkout(viewer: Viewer, command: WalletTopUpCheckout) -> Payment:
    """A checkout page for a card top-up. The payment is recorded first (idempotently, by `idempotencyKey`); the
    provider's page is created after commit under the payment's own idempotency key, so a repeat answers the same
    page, and one that failed at the provider is tried again by repeating the request."""
    customer = await _managed_customer(viewer, command.customer_id)
    v = Validator()
    amount = checked_amount(v, "amount", command.amount, places=2)
    if v.ok and not MIN_TOP_UP <= amount <= MAX_TOP_UP:
        v.add("amount", f"Top up between {MIN_TOP_UP} and {MAX_TOP_UP} USD.")
    key = check_key(command.idempotency_key)
    v.raise_if_invalid()
    await refuse_if_demo(customer.id, "use real payments", "customer_id")
    card = provider()
    if card.name == MANUAL:
        raise DomainError.single(ErrorCode.PROVIDER_NOT_CONFIGURED, "No card payment provider is configured.")

    async def perform() -> Payment:
        prefs = (await preferences_of([customer.id]))[customer.id]
        if prefs.billing_mode != BillingMode.REFILLABLE_WALLET:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Card top-ups are for refillable wallets.", "customer_id")
        payment = await Payment.create(
            customer_id=customer.id,
            partner_id=customer.partner_id,
            provider=card.name,
            purpose=PaymentPurpose.WALLET_TOP_UP,
            amount=amount,
            created_by_user_id=viewer.user_id,
        )
        await record(
            viewer,
            AuditEventType.BILLING,
            "wallet.top_up_checkout",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"amount": str(amount), "payment_id": payment.id, "provider": card.name},
        )
        return payment

    request: JsonObject = {"customer_id": customer.id, "amount": str(amount)}
    payment = await money_mutation(viewer, "walletTopUpCheckout", key, request, perform, PAYMENT)
    if payment.checkout_url is None and payment.status == PaymentStatus.PENDING:
        base = config().public_url.rstrip("/") + BILLING_PAGE
        try:
            external = await provider_customer(customer)
            made = (
                await card.checkout(
                    external, payment.amount, payment.id, f"{base}?topUp=done", f"{base}?topUp=cancelled"
                )
                if external
                else None
            )
        except ProviderError as exc:
            raise DomainError.single(ErrorCode.PROVIDER_ERROR, f"The payment provider failed: {exc}") from None
        if made is None:
            raise DomainError.single(ErrorCode.PROVIDER_ERROR, "The payment provider made no checkout page.")
        await Payment.filter(id=payment.id).update(external_id=made.external_id, checkout_url=made.url)
        payment.external_id, payment.checkout_url = made.external_id, made.url
    return payment


async def settle_top_up(payment_id: int, amount: Decimal, evidence: str) -> str:
    """Credits a top-up's wallet once (inside a transaction): the payment row locked, the transfer keyed by it."""
    payment = await Payment.select_for_update().get(id=payment_id)
    if payment.status == PaymentStatus.SUCCEEDED:
        return "already settled"
    customer = await Customer.get(id=payment.customer_id)
    transfer = await ledger.post(
        ledger.external_funding(Currency.USD, customer.partner_id),
        ledger.customer_wallet(customer.id, customer.partner_id),
        amount,
        TransferKind.WALLET_REFILL,
        metadata={"reference": f"card payment {payment.id}", "payment_id": payment.id, "evidence": evidence},
        idempotency_key=f"payment:{payment.id}",
    )
    payment.status, payment.transfer_id, payment.completed_at = PaymentStatus.SUCCEEDED, transfer.id, datetime.now(UTC)
    payment.amount = amount
    await payment.save(update_fields=["status", "transfer_id", "completed_at", "amount"])
    await refilled(customer, transfer, amount, "card", f"card payment {payment.id}")
    await events.emit(
        events.PAYMENT_SUCCEEDED, customer_id=customer.id, partner_id=customer.partner_id, payment_id=payment.id
    )
    await record(
        _system(payment.provider),
        AuditEventType.BILLING,
        "wallet.top_up",
        object_type="Customer",
        object_id=customer.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={
            "amount": str(amount),
            "balance_after": str(transfer.credit_balance_after),
            "payment_id": payment.id,
            "purpose": str(payment.purpose),
            "transfer_id": transfer.id,
            "evidence": evidence,
        },
    )
    return "settled"


async def fail_payment(payment: Payment, reason: str, attempt: str) -> str:
    """A failed card payment: the always-on payment-failed alert and `payment.failed`, once per attempt."""
    customer = await Customer.get(id=payment.customer_id)
    async with in_transaction():
        if payment.status == PaymentStatus.PENDING and payment.purpose == PaymentPurpose.AUTO_TOP_UP:
            # an automatic charge ends here; a checkout page stays open for another card, and the provider retries
            # an invoice
            await Payment.filter(id=payment.id).update(
                status=PaymentStatus.FAILED, failure_reason=reason[:300], completed_at=datetime.now(UTC)
            )
        elif payment.status == PaymentStatus.PENDING:
            await Payment.filter(id=payment.id).update(failure_reason=reason[:300])
        alert = await alerts.raise_alert(
            customer,
            AlertKind.PAYMENT_FAILED,
            f"payment:{payment.id}:{attempt}"[:120],
            {"reason": reason[:300], "amount": f"{payment.amount.quantize(Decimal('0.01'))}"},
        )
        if alert is not None:
            await events.emit(
                events.PAYMENT_FAILED,
                customer_id=customer.id,
                partner_id=customer.partner_id,
                payment_id=payment.id,
                attempt=attempt,
            )
    return "failed" if alert is not None else "already failed"


async def auto_top_up(refill_request_id: int) -> str:
    """The job: charges the saved card for the refill amount, once per refill request (one crossing of the
    threshold). A declined card raises the payment-failed alert; the request stays open for a manual refill."""
    request = await RefillRequest.get_or_none(id=refill_request_id)
    if request is None or request.status != RefillRequestStatus.OPEN:
        return "closed"
    customer = await Customer.get(id=request.customer_id)
    prefs = (await preferences_of([customer.id]))[customer.id]
    amount = prefs.refill_amount
    card = provider()
    if not prefs.auto_top_up or amount is None or card.name == MANUAL or await is_demo(customer.id):
        return "off"
    await Payment.bulk_create(
        [
            Payment(
                customer_id=customer.id,
                partner_id=customer.partner_id,
                provider=card.name,
                purpose=PaymentPurpose.AUTO_TOP_UP,
                amount=amount,
                refill_request_id=request.id,
            )
        ],
        ignore_conflicts=True,
    )
    payment = await Payment.get(refill_request_id=request.id)
    if payment.status != PaymentStatus.PENDING:
        return str(payment.status)
    external = await provider_customer(customer)
    charge = await card.charge_saved_card(external, payment.amount, payment.id) if external else None
    if charge is None or not charge.succeeded:
        return await fail_payment(payment, charge.failure if charge else "No saved card.", "charge")
    async with in_transaction():
        await Payment.filter(id=payment.id).update(external_id=charge.external_id)
        return await settle_top_up(payment.id, payment.amount, f"charge {charge.external_id}")
