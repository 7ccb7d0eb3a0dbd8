"""White-label package expiry emails (7 days before and at expiry), under the partner's name, logo, colours and
sender address (Jinja2, HTML + plain text): one wording for the customer's billing contact, one for the partner's
admins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from domain.common.emails import email_templates
from domain.customers.models import Customer
from domain.features.eligibility import FEATURE_NAMES
from domain.packages.models import FeatureKey, NoticeAudience, NoticeKind, PackageNotice
from domain.partners.models import Partner

_env = email_templates(__file__)
DEFAULT_SENDER = "no-reply@partnerdesk.example.com"


@dataclass(frozen=True, slots=True)
class Ending:
    """The assignment a notice is about, as the email names it."""

    title: str
    expires_at: datetime
    features: list[FeatureKey]


def _copy(kind: NoticeKind, audience: NoticeAudience, brand: str, customer: str, ending: Ending) -> tuple[str, ...]:
    """(headline, body, footer)."""
    day = f"{ending.expires_at:%B} {ending.expires_at.day}, {ending.expires_at:%Y} ({ending.expires_at:%H:%M} UTC)"
    if audience is NoticeAudience.CUSTOMER:
        if kind is NoticeKind.EXPIRING:
            return (
                f"Your {ending.title} package ends on {day}",
                f"The {ending.title} package of {customer} ends on {day}. What it includes is switched off then, and "
                "the AI credits it gave expire.",
                f"To keep it, ask {brand} to renew your package.",
            )
        return (
            f"Your {ending.title} package has ended",
            f"The {ending.title} package of {customer} ended on {day}: what it included is switched off and the "
            "AI credits it gave have expired.",
            f"Contact {brand} to choose a package.",
        )
    if kind is NoticeKind.EXPIRING:
        return (
            f"{customer}: the {ending.title} package ends on {day}",
            f"The {ending.title} package of your client {customer} ends on {day}. What it includes is switched off "
            "then, and the AI credits it gave expire.",
            "Assign the client a package again before then to keep its features.",
        )
    return (
        f"{customer}: the {ending.title} package has ended",
        f"The {ending.title} package of your client {customer} ended on {day}: what it included is switched off and "
        "the AI credits it gave have expired.",
        "Assign the client a package to give it features again.",
    )


def render_notice(notice: PackageNotice, ending: Ending, customer: Customer, partner: Partner) -> EmailMessage:
    kind, audience = NoticeKind(notice.kind), NoticeAudience(notice.audience)
    headline, body, footer = _copy(kind, audience, partner.name, customer.name, ending)
    context = {
        "brand": partner.name,
        "logo_url": partner.logo_url,
        "primary_color": partner.primary_color,
        "secondary_color": partner.secondary_color,
        "headline": headline,
        "body": body,
        "footer": footer,
        "features": [FEATURE_NAMES[k] for k in ending.features],
    }
    message = EmailMessage()
    message["Subject"] = f"{partner.name}: {headline}"
    message["From"] = formataddr((partner.name, partner.sender_email or DEFAULT_SENDER))
    message["To"] = ", ".join(notice.recipients)
    message["Message-ID"] = make_msgid(idstring=f"package-notice-{notice.id}", domain="partnerdesk")
    message["X-Partnerdesk-Notice"] = f"{notice.id}:{kind}:{audience}"
    message.set_content(_env.get_template("notice.txt.j2").render(context))
    message.add_alternative(_env.get_template("notice.html.j2").render(context), subtype="html")
    return message
