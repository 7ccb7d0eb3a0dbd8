"""Payment providers: the manual provider of stage 1 (the billing team takes payments outside Partnerdesk and
records them with `walletRefill` and `invoiceMarkPaid`) and Stripe (cards: the billing portal, checkout top-ups,
charging the saved card, collecting invoices), chosen by `STRIPE_API_KEY`.

A provider method answers None where the provider has no such thing (the manual provider has no portal and takes
no cards); a provider that could not do what was asked raises `ProviderError`. Every call that creates something
at the provider carries an idempotency key derived from our own row, so a retried call creates it once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from domain.common.json import JsonObject
from domain.config import config

MANUAL = "manual"
STRIPE = "stripe"


class ProviderError(Exception):
    """The provider refused or could not be reached; `code` is its own (`card_declined` …) when it gave one."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class InvalidEvent(Exception):
    """A provider event whose signature (or body) does not check out."""


@dataclass(frozen=True, slots=True)
class Checkout:
    external_id: str
    url: str


@dataclass(frozen=True, slots=True)
class Charge:
    external_id: str
    succeeded: bool
    failure: str = ""


@dataclass(frozen=True, slots=True)
class ProviderEventIn:
    """A verified provider event: its id (the dedupe key), type and the object it is about."""

    external_id: str
    type: str
    data: JsonObject


@dataclass(frozen=True, slots=True)
class InvoiceLineOut:
    description: str
    cents: int


class PaymentProvider(Protocol):
    name: str

    async def create_customer(self, name: str, email: str | None, customer_id: int) -> str | None:
        """Our customer at the provider (called once per customer; the id is remembered)."""
        ...

    async def portal_url(self, external_customer: str, return_url: str) -> str | None: ...

    async def checkout(
        self, external_customer: str, amount: Decimal, payment_id: int, success_url: str, cancel_url: str
    ) -> Checkout | None: ...

    async def charge_saved_card(self, external_customer: str, amount: Decimal, payment_id: int) -> Charge | None: ...

    async def push_invoice(
        self, external_customer: str, invoice_id: int, number: str, lines: list[InvoiceLineOut]
    ) -> str | None:
        """Creates, fills and finalizes the invoice at the provider, which collects it; its id there."""
        ...

    def parse_event(self, payload: bytes, signature: str | None) -> ProviderEventIn: ...


class ManualProvider:
    """Nothing is charged by Partnerdesk: the refill request and the emailed invoice are the instructions."""

    name = MANUAL

    async def create_customer(self, name: str, email: str | None, customer_id: int) -> str | None:
        return None

    async def portal_url(self, external_customer: str, return_url: str) -> str | None:
        return None

    async def checkout(
        self, external_customer: str, amount: Decimal, payment_id: int, success_url: str, cancel_url: str
    ) -> Checkout | None:
        return None

    async def charge_saved_card(self, external_customer: str, amount: Decimal, payment_id: int) -> Charge | None:
        return None

    async def push_invoice(
        self, external_customer: str, invoice_id: int, number: str, lines: list[InvoiceLineOut]
    ) -> str | None:
        return None

    def parse_event(self, payload: bytes, signature: str | None) -> ProviderEventIn:
        raise InvalidEvent("the manual provider receives no events")


def cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class StripeProvider:
    """Stripe through its SDK (async, over httpx). `api_base` points it elsewhere (tests: a local fake)."""

    name = STRIPE

    def __init__(self, api_key: str, webhook_secret: str | None, api_base: str | None = None) -> None:
        import stripe

        self._stripe = stripe
        self.webhook_secret = webhook_secret
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            http_client=stripe.HTTPXClient(timeout=20),
            max_network_retries=2,
        )

    async def _call(self, method: Any, params: dict[str, Any], idempotency_key: str | None = None) -> Any:
        options: dict[str, Any] = {"idempotency_key": idempotency_key} if idempotency_key else {}
        try:
            return await method(params=params, options=options)
        except self._stripe.CardError as exc:
            raise ProviderError(exc.user_message or str(exc), exc.code or "card_error") from None
        except self._stripe.StripeError as exc:
            raise ProviderError(f"Stripe: {exc.user_message or type(exc).__name__}", exc.code or "") from None

    async def create_customer(self, name: str, email: str | None, customer_id: int) -> str | None:
        params: dict[str, Any] = {"name": name, "metadata": {"partnerdesk_customer_id": str(customer_id)}}
        if email:
            params["email"] = email
        made = await self._call(self.client.v1.customers.create_async, params, f"pd-customer-{customer_id}")
        return str(made.id)

    async def portal_url(self, external_customer: str, return_url: str) -> str | None:
        params = {"customer": external_customer, "return_url": return_url}
        session = await self._call(self.client.v1.billing_portal.sessions.create_async, params)
        return str(session.url)

    async def checkout(
        self, external_customer: str, amount: Decimal, payment_id: int, success_url: str, cancel_url: str
    ) -> Checkout | None:
        metadata = {"partnerdesk_payment_id": str(payment_id)}
        params: dict[str, Any] = {
            "mode": "payment",
            "customer": external_customer,
            "client_reference_id": str(payment_id),
            "success_url": success_url,
            "cancel_url": cancel_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": cents(amount),
                        "product_data": {"name": "Wallet top-up"},
                    },
                }
            ],
            # the card is kept for automatic top-ups and invoices
            "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata},
            "metadata": metadata,
        }
        session = await self._call(self.client.v1.checkout.sessions.create_async, params, f"pd-payment-{payment_id}")
        return Checkout(str(session.id), str(session.url))

    async def _saved_card(self, external_customer: str) -> str | None:
        found = await self._call(
            self.client.v1.payment_methods.list_async, {"customer": external_customer, "type": "card", "limit": 1}
        )
        cards = list(found.data)
        return str(cards[0].id) if cards else None

    async def charge_saved_card(self, external_customer: str, amount: Decimal, payment_id: int) -> Charge | None:
        card = await self._saved_card(external_customer)
        if card is None:
            return Charge("", False, "No saved card.")
        params = {
            "amount": cents(amount),
            "currency": "usd",
            "customer": external_customer,
            "payment_method": card,
            "off_session": True,
            "confirm": True,
            "metadata": {"partnerdesk_payment_id": str(payment_id)},
        }
        try:
            intent = await self._call(self.client.v1.payment_intents.create_async, params, f"pd-payment-{payment_id}")
        except ProviderError as exc:
            if exc.code in (
                "card_declined",
                "card_error",
                "expired_card",
                "insufficient_funds",
                "authentication_required",
            ):
                return Charge("", False, str(exc))
            raise
        return Charge(
            str(intent.id), intent.status == "succeeded", "" if intent.status == "succeeded" else str(intent.status)
        )

    async def push_invoice(
        self, external_customer: str, invoice_id: int, number: str, lines: list[InvoiceLineOut]
    ) -> str | None:
        key = f"pd-invoice-{invoice_id}"
        invoice = await self._call(
            self.client.v1.invoices.create_async,
            {
                "customer": external_customer,
                "collection_method": "charge_automatically",
                "auto_advance": True,
                "pending_invoice_items_behavior": "exclude",
                "description": f"Invoice {number}",
                "metadata": {"partnerdesk_invoice_id": str(invoice_id), "number": number},
            },
            key,
        )
        for i, line in enumerate(lines):
            await self._call(
                self.client.v1.invoice_items.create_async,
                {
                    "customer": external_customer,
                    "invoice": invoice.id,
                    "currency": "usd",
                    "amount": line.cents,
                    "description": line.description,
                },
                f"{key}-line-{i}",
            )
        await self._call(
            lambda params, options: self.client.v1.invoices.finalize_invoice_async(invoice.id, params, options),
            {},
            f"{key}-finalize",
        )
        return str(invoice.id)

    def parse_event(self, payload: bytes, signature: str | None) -> ProviderEventIn:
        if not self.webhook_secret:
            raise InvalidEvent("STRIPE_WEBHOOK_SECRET is not set")
        try:
            self.client.construct_event(payload, signature, self.webhook_secret)
        except (self._stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidEvent(str(exc)) from None
        body = json.loads(payload)
        obj = body.get("data", {}).get("object", {})
        return ProviderEventIn(str(body["id"]), str(body["type"]), obj if isinstance(obj, dict) else {})


_provider: dict[str, PaymentProvider] = {}


def provider() -> PaymentProvider:
    """Stripe when STRIPE_API_KEY is set, else the manual provider (one per process and configuration)."""
    settings = config()
    key = f"{settings.stripe_api_key}|{settings.stripe_webhook_secret}|{settings.stripe_api_base}"
    found = _provider.get(key)
    if found is None:
        if settings.stripe_api_key:
            found = StripeProvider(settings.stripe_api_key, settings.stripe_webhook_secret, settings.stripe_api_base)
        else:
            found = ManualProvider()
        _provider.clear()
        _provider[key] = found
    return found
