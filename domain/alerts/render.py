"""White-label alert emails: the partner's name, logo, colours and sender address (Jinja2, HTML + plain text)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from domain.alerts.models import Alert, AlertKind
from domain.common.emails import email_templates
from domain.common.json import JsonObject
from domain.customers.models import Customer
from domain.partners.branding import Brand
from domain.partners.models import Partner

_env = email_templates(__file__)
DEFAULT_SENDER = "billing@partnerdesk.example.com"

_COPY: dict[AlertKind, tuple[str, str]] = {
    AlertKind.CAP_REACHED: (
        "Monthly spending cap reached",
        "Your account reached its monthly spending cap, so campaigns are paused until the cap is raised or removed.",
    ),
    AlertKind.CAP_WARNING: ("80% of your monthly spending cap used", "Your account has used 80% of its monthly cap."),
    AlertKind.PAYMENT_FAILED: (
        "Payment failed",
        "A payment for your account failed. Please check your payment method.",
    ),
    AlertKind.LOW_BALANCE: ("Wallet balance is low", "Your wallet balance fell below 30% of your refill amount."),
    AlertKind.REFILL_PROCESSED: ("Wallet refill processed", "Your wallet was refilled."),
    AlertKind.LOW_CREDITS: ("AI credits are running low", "Your AI credits fell below your low-credit threshold."),
}
_LABELS = {
    "cap": "Monthly cap",
    "spent": "Spent this month",
    "month": "Month",
    "balance": "Current balance",
    "level": "Alert level",
    "refill_amount": "Refill amount",
    "amount": "Amount",
    "balance_after": "Balance after",
    "available": "Available credits",
    "threshold": "Threshold",
    "refill_threshold": "Refill threshold",
    "reason": "Reason",
}
_MONEY = {"cap", "spent", "balance", "level", "refill_amount", "refill_threshold", "amount", "balance_after"}


def _facts(values: JsonObject) -> list[tuple[str, str]]:
    facts = []
    for key, label in _LABELS.items():
        value = values.get(key)
        if value is not None:
            facts.append((label, f"${value}" if key in _MONEY else str(value)))
    return facts


def render_alert(alert: Alert, customer: Customer, brand: Brand) -> EmailMessage:
    """The alert under the customer's brand (its look over its partner's), links on the partner's domain."""
    kind = AlertKind(alert.kind)
    headline, body = _COPY[kind]
    link = None
    if kind in (AlertKind.CAP_REACHED, AlertKind.CAP_WARNING, AlertKind.LOW_BALANCE, AlertKind.PAYMENT_FAILED):
        link = brand.link("/settings/billing-and-reports/billing-preferences")
    context = {
        "headline": headline,
        "body": body,
        "facts": _facts(alert.values or {}),
        "customer": customer,
        "brand": brand,
        "link": link,
        "link_label": "Open Billing Preferences",
    }
    message = EmailMessage()
    message["Subject"] = f"{brand.name}: {headline}"
    message["From"] = brand.from_header
    message["To"] = ", ".join(alert.recipients)
    message["Message-ID"] = make_msgid(idstring=f"alert-{alert.id}", domain="partnerdesk")
    message["X-Partnerdesk-Alert"] = f"{alert.id}:{kind}"
    message.set_content(_env.get_template("alert.txt.j2").render(context))
    message.add_alternative(_env.get_template("alert.html.j2").render(context), subtype="html")
    return brand.stamp(message)


def render_refill_request(
    partner: Partner, customer: Customer, recipients: list[str], values: JsonObject, brand: Brand
) -> EmailMessage:
    """Internal notice to the partner's billing staff: a customer's wallet needs a manual refill."""
    message = EmailMessage()
    message["Subject"] = f"Refill needed: {customer.name}"
    message["From"] = formataddr(("Partnerdesk", DEFAULT_SENDER))
    message["To"] = ", ".join(recipients)
    lines = [f"{customer.name}'s wallet fell below its refill threshold.", ""]
    lines += [f"  {label}: {value}" for label, value in _facts(values)]
    lines += ["", "Record the refill with walletRefill once the payment is in."]
    message.set_content("\n".join(lines))
    return brand.stamp(message)
