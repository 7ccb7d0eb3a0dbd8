"""White-label account emails (email change confirmation and notice) under the partner's brand when the user acts
in a partner or customer organization, else Partnerdesk's (Jinja2, HTML + plain text)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any

from domain.common.emails import email_templates
from domain.partners.models import Partner

_env = email_templates(__file__)
DEFAULT_SENDER = "no-reply@partnerdesk.example.com"


def _message(partner: Partner | None, to: str, kind: str, context: dict[str, Any]) -> EmailMessage:
    brand = partner.name if partner else "Partnerdesk"
    full = {
        "brand": brand,
        "logo_url": partner.logo_url if partner else None,
        "primary_color": partner.primary_color if partner else "#2563EB",
        "secondary_color": partner.secondary_color if partner else "#0F172A",
        **context,
    }
    message = EmailMessage()
    message["Subject"] = f"{brand}: {context['headline']}"
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
        {
            "headline": "Confirm your new email address",
            "name": name,
            "body": f"Confirm that {new_email} is the new email address of your account. The link works for 24 hours.",
            "link": link,
            "link_label": "Confirm email address",
            "footer": "If you did not ask for this, ignore this email: nothing changes.",
        },
    )


def render_email_changed_notice(partner: Partner | None, name: str, old_email: str, new_email: str) -> EmailMessage:
    return _message(
        partner,
        old_email,
        "email_change.notice",
        {
            "headline": "Your email address was changed",
            "name": name,
            "body": f"Your account's email address is now {new_email}. Sign in with it from now on.",
            "link": None,
            "link_label": "",
            "footer": "If you did not make this change, contact your administrator at once.",
        },
    )
