"""The white-label look of everything a partner's clients see: the partner's branding, a customer's override of
it, and the brand each email goes out under (name, logo, colours, welcome message, sender, link base).

`Customer.branding` is the customer's own value where it set one, else the partner's; emails about a customer use
the same resolution, and their links start at the partner's first verified domain (domain/partners/domains.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr

from domain.common.validation import Validator, text_problem
from domain.demo.models import DemoState
from domain.partners.domains import public_url_of, public_urls_of
from domain.partners.models import Partner
from domain.portal.models import CustomerBranding

PLATFORM_NAME = "Partnerdesk"
DEFAULT_PRIMARY = "#2563EB"
DEFAULT_SECONDARY = "#0F172A"
DEFAULT_SENDER = "no-reply@partnerdesk.example.com"
WELCOME_MAX_LENGTH = 1000
DEMO_HEADER = "X-Partnerdesk-Demo"  # jobs/mailer.py writes such emails to the outbox folder, never to SMTP


@dataclass(frozen=True, slots=True)
class Branding:
    """The look a customer's users see (the partner's, with the customer's own values over it)."""

    logo_url: str | None
    primary_color: str
    secondary_color: str
    welcome_message: str


def partner_branding(partner: Partner) -> Branding:
    return Branding(partner.logo_url, partner.primary_color, partner.secondary_color, partner.welcome_message or "")


def resolved(partner: Partner, own: CustomerBranding | None) -> Branding:
    base = partner_branding(partner)
    if own is None:
        return base
    return Branding(
        logo_url=own.logo_url if own.logo_url is not None else base.logo_url,
        primary_color=own.primary_color or base.primary_color,
        secondary_color=own.secondary_color or base.secondary_color,
        welcome_message=own.welcome_message if own.welcome_message is not None else base.welcome_message,
    )


@dataclass(frozen=True, slots=True)
class Brand:
    """What an email goes out under."""

    name: str
    branding: Branding
    sender_name: str
    sender_email: str
    base_url: str  # links start here: the partner's first verified domain, else PUBLIC_URL
    demo: bool = False  # about a demo customer: its emails never leave the machine (the outbox folder)

    @property
    def from_header(self) -> str:
        return formataddr((self.sender_name, self.sender_email))

    def stamp(self, message: EmailMessage) -> EmailMessage:
        """Marks an email about a demo customer, so the mailer keeps it in the outbox folder."""
        if self.demo:
            message[DEMO_HEADER] = "1"
        return message

    def link(self, path: str) -> str:
        return f"{self.base_url}{path}"


def platform_brand(base_url: str) -> Brand:
    branding = Branding(None, DEFAULT_PRIMARY, DEFAULT_SECONDARY, "")
    return Brand(PLATFORM_NAME, branding, PLATFORM_NAME, DEFAULT_SENDER, base_url)


async def brand_of(partner: Partner | None, customer_id: int | None = None, *, sender: str | None = None) -> Brand:
    """The brand of an email about `customer_id` (its branding over the partner's) or about the partner itself;
    the platform's without a partner. `sender` replaces the default sender address when the partner has none."""
    if partner is None:
        return platform_brand(await public_url_of(None))
    own = await CustomerBranding.get_or_none(customer_id=customer_id) if customer_id is not None else None
    base = (await public_urls_of([partner.id]))[partner.id]
    demo = customer_id is not None and await DemoState.filter(customer_id=customer_id, enabled=True).exists()
    return Brand(
        name=partner.name,
        branding=resolved(partner, own),
        sender_name=partner.sender_name or partner.name,
        sender_email=partner.sender_email or sender or DEFAULT_SENDER,
        base_url=base,
        demo=demo,
    )


async def brand_of_partner_id(partner_id: int | None, customer_id: int | None = None) -> Brand:
    partner = await Partner.get_or_none(id=partner_id) if partner_id is not None else None
    return await brand_of(partner, customer_id)


def clean_welcome(v: Validator, field: str, value: object) -> str | None:
    """Plain text of at most WELCOME_MAX_LENGTH characters (line breaks kept, other control characters refused);
    it is escaped wherever it is shown."""
    if value is None:
        return None
    if not isinstance(value, str):
        v.add(field, "Must be text.")
        return None
    text = value.strip().replace("\r\n", "\n")
    problem = text_problem(text)
    if problem:
        v.add(field, problem)
        return None
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        v.add(field, "Use plain text (no control characters).")
        return None
    if len(text) > WELCOME_MAX_LENGTH:
        v.add(field, f"Must be at most {WELCOME_MAX_LENGTH} characters.")
        return None
    return text
