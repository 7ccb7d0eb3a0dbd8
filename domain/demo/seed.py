"""Demo data for `make run`: a platform admin and partner "Acme Voice" with three customers and their users."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.transactions import in_transaction

from domain.accounts.models import Membership, Role, User
from domain.accounts.services import NewUser, admin_create, create_user, hash_password_async, org_key
from domain.customers.services import customer_create
from domain.partners.models import Partner
from domain.partners.services import partner_create
from domain.viewer import Viewer

DEMO_PASSWORD = "Demo-pass-1"
ADMIN_EMAIL = "admin@partnerdesk.example.com"
PARTNER_EMAIL = "owner@acmevoice.example.com"
CUSTOMERS = [
    ("Bluebird Dental", "bluebird", "Maya", "Lopez"),
    ("Harbor Legal", "harbor", "Sam", "Okafor"),
    ("Pine Street Realty", "pinestreet", "Lee", "Chen"),
]


@dataclass(slots=True)
class DemoLogin:
    role: str
    login: str
    password: str
    organization: str


async def seed_demo() -> list[DemoLogin]:
    """Idempotent: existing demo rows are kept; returns the logins to print."""
    system = Viewer.system("seed-demo")
    await admin_create(ADMIN_EMAIL, DEMO_PASSWORD)
    logins = [DemoLogin("PLATFORM_ADMIN", ADMIN_EMAIL, DEMO_PASSWORD, "Partnerdesk")]
    partner = await Partner.filter(name="Acme Voice").first()
    if partner is None:
        created = await partner_create(
            system,
            {
                "name": "Acme Voice",
                "owner_email": PARTNER_EMAIL,
                "owner_password": DEMO_PASSWORD,
                "owner_name": "Ava Acme",
                "sender_email": "billing@acmevoice.example.com",
            },
        )
        partner = created.partner
    logins.append(DemoLogin("PARTNER_ADMIN", PARTNER_EMAIL, DEMO_PASSWORD, "Acme Voice"))
    staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id, label="seed-demo")
    for company, slug, first, last in CUSTOMERS:
        email = f"{slug}.admin@example.com"
        if not await User.filter(email_key=email).exists():
            created_customer = await customer_create(
                staff,
                {
                    "username": f"{slug}-admin",
                    "first_name": first,
                    "last_name": last,
                    "email": email,
                    "password": DEMO_PASSWORD,
                    "password_confirmation": DEMO_PASSWORD,
                    "company_name": company,
                    "phone": "+1 555 0100",
                    "country": "US",
                    "city": "Austin",
                    "role": "Owner",
                },
            )
            member_email = f"{slug}.member@example.com"
            pw_hash = await hash_password_async(DEMO_PASSWORD)
            async with in_transaction():
                member = await create_user(
                    NewUser(
                        username=f"{slug}-member",
                        email=member_email,
                        password=DEMO_PASSWORD,
                        first_name="Team",
                        last_name="Member",
                    ),
                    pw_hash,
                )
                await Membership.create(
                    user=member,
                    role=Role.CUSTOMER_MEMBER,
                    customer=created_customer.customer,
                    org_key=org_key(customer_id=created_customer.customer.id),
                )
        logins.append(DemoLogin("CUSTOMER_ADMIN", email, DEMO_PASSWORD, company))
        logins.append(DemoLogin("CUSTOMER_MEMBER", f"{slug}.member@example.com", DEMO_PASSWORD, company))
    return logins
