"""Who may receive a customer's scheduled reports, and the report settings where its partner's admins allow more.

A report link is a bearer credential for the customer's usage, so schedules email it only to the customer's active
users, its billing recipients (the extra billing-alert addresses) and whatever a partner admin allowed in the
customer's `ReportSettings`: addresses (`cfo@example.com`) or whole domains (`@example.com`). The rule is checked
when a schedule is created and again at every delivery, so a user who left or an address no longer allowed stops
receiving reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from email_validator import EmailNotValidError, validate_email
from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, User
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.models import BillingPreferences
from domain.common.validation import Validator
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode
from domain.reports.commands import CustomerReportSettingsUpdate
from domain.reports.models import ReportSettings
from domain.viewer import Viewer
from domain.visibility import get_visible, require_customer_manager, require_partner_staff

MAX_ALLOWED = 50


@dataclass(frozen=True, slots=True)
class Allowed:
    addresses: frozenset[str]  # lower-cased
    domains: frozenset[str]  # lower-cased, without the "@"

    def admits(self, email: str) -> bool:
        address = email.lower()
        return address in self.addresses or address.rpartition("@")[2] in self.domains


async def allowed_for(customer_id: int) -> Allowed:
    # flat lists of values (Tortoise types them as lists of tuples)
    user_ids = cast("list[int]", await Membership.filter(customer_id=customer_id).values_list("user_id", flat=True))
    users = cast("list[str]", await User.filter(id__in=user_ids, is_active=True).values_list("email", flat=True))
    prefs = await BillingPreferences.get_or_none(customer_id=customer_id)
    settings = await ReportSettings.get_or_none(customer_id=customer_id)
    entries: list[str] = list(settings.allowed_recipients) if settings else []
    billing: list[str] = list(prefs.extra_alert_recipients or []) if prefs else []
    return Allowed(
        frozenset(e.lower() for e in [*users, *billing, *(x for x in entries if not x.startswith("@"))]),
        frozenset(x[1:].lower() for x in entries if x.startswith("@")),
    )


async def check(customer_id: int, recipients: Iterable[str]) -> None:
    """Refuses (NOT_ELIGIBLE on `recipients`) any address the customer's reports may not go to."""
    allowed = await allowed_for(customer_id)
    refused = [r for r in recipients if not allowed.admits(r)]
    if refused:
        raise DomainError.single(
            ErrorCode.NOT_ELIGIBLE,
            f"Reports go only to the customer's users, its billing recipients and addresses a partner admin "
            f"allowed; not to {', '.join(refused)}.",
            "recipients",
        )


def _entries(raw: list[str]) -> list[str]:
    """Addresses or `@domain` entries, normalised, lower-cased and de-duplicated."""
    v = Validator()
    if len(raw) > MAX_ALLOWED:
        raise DomainError.single(ErrorCode.INVALID, f"At most {MAX_ALLOWED} entries.", "allowed_recipients")
    cleaned: set[str] = set()
    for entry in raw:
        text = v.text("allowed_recipients", entry, required=True, max_length=254)
        if not text:
            continue
        if text.startswith("@"):
            try:  # a domain is valid when an address at it is
                cleaned.add("@" + validate_email("postmaster" + text, check_deliverability=False).domain.lower())
            except EmailNotValidError as exc:
                v.add("allowed_recipients", f"Enter an address or a domain like @example.com ({exc}).")
        elif address := v.email("allowed_recipients", text):
            cleaned.add(address.lower())
    v.raise_if_invalid()
    return sorted(cleaned)


async def settings_of(viewer: Viewer, customer_id: int) -> ReportSettings:
    """Partner staff and the customer's admins (those who manage its schedules) may read them."""
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    found = await ReportSettings.get_or_none(customer_id=customer.id)
    return found or ReportSettings(customer_id=customer.id, allowed_recipients=[])


async def settings_update(viewer: Viewer, command: CustomerReportSettingsUpdate) -> ReportSettings:
    """`customerReportSettingsUpdate`: the partner's admins (or a platform admin) set the extra recipients."""
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_partner_staff(viewer, admin=True)
    entries = _entries(command.allowed_recipients)
    async with in_transaction():
        # a concurrent first update waits on the primary key instead of failing on it
        await ReportSettings.bulk_create([ReportSettings(customer_id=customer.id)], ignore_conflicts=True)
        current = await ReportSettings.select_for_update().get(customer_id=customer.id)
        before = list(current.allowed_recipients)
        current.allowed_recipients = entries
        await current.save(update_fields=["allowed_recipients", "updated_at"])
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "report_settings.update",
            object_type="Customer",
            object_id=customer.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"allowed_recipients": {"before": before, "after": entries}},
        )
    return current
