"""White-label account emails (email change confirmation and notice, invitations, portal invitations) under a
`Brand` (domain/partners/branding.py): the partner's (with the customer's own look where it has one) when the
user acts in a partner or customer organization, else Partnerdesk's (Jinja2, HTML + plain text)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid

from domain.common.emails import email_templates
from domain.partners.branding import Brand

_env = email_templates(__file__)


@dataclass(frozen=True, slots=True)
class AccountEmail:
    """The words of one account email: what the templates show under the brand."""

    headline: str  # also the subject, after the brand
    name: str  # whom it greets
    body: str
    footer: str
    link: str | None = None
    link_label: str = ""
    welcome: str = ""  # the brand's welcome message, shown above the body (invitations)


def _message(brand: Brand, to: str, kind: str, copy: AccountEmail) -> EmailMessage:
    full = {
        "brand": brand.name,
        "logo_url": brand.branding.logo_url,
        "primary_color": brand.branding.primary_color,
        "secondary_color": brand.branding.secondary_color,
        **asdict(copy),
    }
    message = EmailMessage()
    message["Subject"] = f"{brand.name}: {copy.headline}"
    message["From"] = brand.from_header
    message["To"] = to
    message["Message-ID"] = make_msgid(idstring=kind, domain="partnerdesk")
    message["X-Partnerdesk-Account"] = kind
    message.set_content(_env.get_template("account.txt.j2").render(full))
    message.add_alternative(_env.get_template("account.html.j2").render(full), subtype="html")
    return brand.stamp(message)


def render_email_change_confirmation(brand: Brand, name: str, new_email: str, link: str) -> EmailMessage:
    return _message(
        brand,
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


def render_email_changed_notice(brand: Brand, name: str, old_email: str, new_email: str) -> EmailMessage:
    return _message(
        brand,
        old_email,
        "email_change.notice",
        AccountEmail(
            headline="Your email address was changed",
            name=name,
            body=f"Your account's email address is now {new_email}. Sign in with it from now on.",
            footer="If you did not make this change, contact your administrator at once.",
        ),
    )


def render_invitation(
    brand: Brand, to: str, inviter: str, organization: str, role: str, link: str, expires_at: datetime
) -> EmailMessage:
    return _message(
        brand,
        to,
        "invitation",
        AccountEmail(
            headline=f"You are invited to join {organization}",
            name=to,
            welcome=brand.branding.welcome_message,
            body=f"{inviter} invited you to join {organization} as {role}. Accept the invitation to create your "
            f"account, or to add {organization} to the account you have. The link works until "
            f"{expires_at:%Y-%m-%d %H:%M} UTC.",
            link=link,
            link_label="Accept the invitation",
            footer="If you were not expecting this, ignore this email: nothing happens unless you accept.",
        ),
    )


def render_portal_invitation(brand: Brand, to: str, name: str, username: str, link: str) -> EmailMessage:
    return _message(
        brand,
        to,
        "portal.invitation",
        AccountEmail(
            headline="Your portal is ready",
            name=name,
            welcome=brand.branding.welcome_message,
            body=f"Your {brand.name} portal is ready for you. Sign in with your username {username} (or this email "
            "address) and the password your account manager set up for you; you can change it in your personal "
            "settings.",
            link=link,
            link_label="Open your portal",
            footer="If you were not expecting this, contact your account manager.",
        ),
    )
