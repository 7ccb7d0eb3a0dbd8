"""A local fake of the Stripe API (only the endpoints Partnerdesk calls) for the real `stripe` SDK to talk to, and
Stripe-signed webhook events. Requests carrying an Idempotency-Key answer as the first one with that key did, as
Stripe does."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from domain import config as domain_config
from tests.receivers import Received, Receiver, http_receiver

WEBHOOK_SECRET = "whsec_test_fake_stripe_secret"


@dataclass
class FakeStripe:
    receiver: Receiver
    decline: bool = False  # payment intents fail with card_declined
    cards: bool = True  # the customer has a saved card
    replies: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return self.receiver.url

    def calls(self, method: str, path: str) -> list[dict[str, str]]:
        """The form fields of each call (retries with the same idempotency key counted once)."""
        seen: set[str] = set()
        out = []
        for r in self.receiver.requests:
            if r.method == method and r.path.split("?")[0] == path:
                key = r.headers.get("idempotency-key", "")
                if key and key in seen:
                    continue
                seen.add(key)
                out.append(dict(parse_qsl(r.body.decode())))
        return out

    def answer(self, got: Received) -> tuple[int, dict[str, str], bytes]:
        key = got.headers.get("idempotency-key")
        if key and key in self.replies:
            status, body = self.replies[key]
        else:
            status, body = self._route(got)
            if key:
                self.replies[key] = (status, body)
        return (
            status,
            {"content-type": "application/json", "request-id": f"req_{next(self.ids)}"},
            json.dumps(body).encode(),
        )

    def _route(self, got: Received) -> tuple[int, dict[str, Any]]:
        path = got.path.split("?")[0]
        form = dict(parse_qsl(got.body.decode()))
        n = next(self.ids)
        if path == "/v1/customers":
            return 200, {"id": f"cus_{n}", "object": "customer", "name": form.get("name")}
        if path == "/v1/billing_portal/sessions":
            return 200, {
                "id": f"bps_{n}",
                "object": "billing_portal.session",
                "url": f"https://billing.stripe.test/p/{n}",
            }
        if path == "/v1/checkout/sessions":
            return 200, {"id": f"cs_test_{n}", "object": "checkout.session", "url": f"https://checkout.stripe.test/{n}"}
        if path == "/v1/payment_methods":
            data = [{"id": f"pm_{n}", "object": "payment_method", "type": "card"}] if self.cards else []
            return 200, {"object": "list", "data": data, "has_more": False, "url": "/v1/payment_methods"}
        if path == "/v1/payment_intents":
            if self.decline:
                error = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
                return 402, {"error": error}
            return 200, {
                "id": f"pi_{n}",
                "object": "payment_intent",
                "status": "succeeded",
                "amount": int(form["amount"]),
            }
        if path == "/v1/invoices":
            return 200, {"id": f"in_{n}", "object": "invoice", "status": "draft"}
        if path == "/v1/invoiceitems":
            return 200, {"id": f"ii_{n}", "object": "invoiceitem"}
        if path.startswith("/v1/invoices/") and path.endswith("/finalize"):
            return 200, {"id": path.split("/")[3], "object": "invoice", "status": "open"}
        return 404, {"error": {"type": "invalid_request_error", "message": f"no fake for {path}"}}


@contextmanager
def fake_stripe() -> Iterator[FakeStripe]:
    """The fake on a loopback port, and Partnerdesk configured to use Stripe through it."""
    holder: dict[str, FakeStripe] = {}
    with http_receiver(respond=lambda got: holder["fake"].answer(got)) as receiver:
        fake = holder["fake"] = FakeStripe(receiver)
        with domain_config.overridden(
            stripe_api_key="sk_test_fake", stripe_webhook_secret=WEBHOOK_SECRET, stripe_api_base=receiver.url
        ):
            yield fake


def signed_event(
    event_type: str, obj: dict[str, Any], event_id: str, secret: str = WEBHOOK_SECRET
) -> tuple[bytes, str]:
    """A webhook body and its `Stripe-Signature` header, as Stripe signs them."""
    body = json.dumps(
        {"id": event_id, "object": "event", "type": event_type, "api_version": "2025-01-01", "data": {"object": obj}}
    ).encode()
    timestamp = int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={timestamp},v1={signature}"
