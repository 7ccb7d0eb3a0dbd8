"""White-label account emails (email change confirmation and notice) under the partner's brand when the user acts
in a partner or customer organization, else Partnerdesk's (Jinja2, HTML + plain text)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from domain.common.emails import email_templates
from domain.partners.models import Partner

_env = email_templates(__file__)
DEFAULT_SENDER = "no-reply@partnerdesk.example.com"


@dataclass(frozen=True, slots=True)
class AccountEmail:
    """The words of one account email: what the templates show under the brand."""

    headline: str  # also the subject, after the brand
    name: str  # whom it greets
    body: str
    footer: str
    link: str | None = None
    link_label: str = ""


def _message(partner: Partner | None, to: str, kind: str, copy: AccountEmail) -> EmailMessage:
    brand = partner.name if partner else "Partnerdesk"
    full = {
        "brand": brand,
        "logo_url": partner.logo_url if partner else None,
        "primary_color": partner.primary_color if partner else "#2563EB",
        "secondary_color": partner.secondary_color if partner else "#0F172A",
        **asdict(copy),
    }
    message = EmailMessage()
    message["Subject"] = f"{brand}: {copy.headline}"
    message["From"] = formataddr((brand, (partner.sender_email if partner else None) or DEFAULT_SENDER))
    message["To"] = to
    message["Message-ID"] = make_msgid(idstring=kind, domain="partnerdesk")
    message["X-Partnerdesk-Account"] = kind
    message.set_content(_env.get_template("account.txt.j2").render(full))
    message.add_alternative(_env.get_template("account.html.j2").render(full), subtype="html")
    return message


def render_email_change_confirmation(partner: Partner | None, name: str, new_email: str, link: str) -> EmailMessage:
    return _message(
        partner,
        new_email,
        "email_change.confirm",
        AccountEmail(
            headline="Confirm your new email address",
            name=name,
            body=f"Confirm that {new_email} is the new email address of your account. The link works for 24 hours.",
            link=link,
            link_label="Confirm email address",
            footer="If you did not ask for this, ignore this email: nothing changes.",
        ),
    )


def render_email_changed_notice(partner: Partner | None, name: str, old_email: str, new_email: str) -> EmailMessage:
    return _message(
        partner,
        old_email,
        "email_change.notice",
        AccountEmail(
            headline="Your email address was changed",
            name=name,
            body=f"Your account's email address is now {new_email}. Sign in with it from now on.",
            footer="If you did not make this change, contact your administrator at once.",
        ),
    )
