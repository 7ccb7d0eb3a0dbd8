"""Demo data for `make run`: a platform admin and partner "Acme Voice" with three customers and their users, each on
one of the partner's packages (Growth for Bluebird, Starter for the others), and one demo customer (demo mode:
sample data, reset nightly). Re-running it keeps what exists and makes sure every login it prints works: a demo
login whose password was changed, whose 2FA was turned on or whose account was deactivated is put back (and the
change is reported)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tortoise.transactions import in_transaction

from domain.access.models import ApiTier
from domain.accounts.commands import AdminCreate
from domain.accounts.models import Membership, Role, Session, User
from domain.accounts.passwords import verify_password
from domain.accounts.services import NewUser, admin_create, create_user, hash_password_async, org_key
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.billing.commands import (
    BillingPreferencesUpdate,
    CustomerCreditsRecharge,
    PartnerCreditsAdd,
    WalletRefill,
)
from domain.billing.credits import customer_credits_recharge, partner_credits_add
from domain.billing.models import BillingMode
from domain.billing.preferences import billing_preferences_update
from domain.billing.wallet import wallet_refill
from domain.campaigns.commands import CampaignCreate
from domain.campaigns.services import campaign_create
from domain.customers.commands import CustomerCreate, CustomerEnable
from domain.customers.models import Customer, CustomerStatus
from domain.customers.services import customer_create, customer_enable
from domain.demo.commands import CustomerDemoModeSet
from domain.demo.services import customer_demo_mode_set
from domain.features.commands import CustomerFeaturesUpdate
from domain.features.services import customer_features_update
from domain.packages.commands import PackageAssign, PackageCreate, PackageLimits
from domain.packages.models import FeatureKey, Package
from domain.packages.services import package_assign, package_create
from domain.partners.commands import PartnerCreate
from domain.partners.models import Partner
from domain.partners.services import partner_create
from domain.storage.commands import PartnerStoragePurchase
from domain.storage.services import partner_storage_purchase
from domain.usage.commands import UsageEventIn
from domain.usage.models import PhoneNumber, UnitType
from domain.usage.services import record_usage
from domain.viewer import Viewer

DEMO_PASSWORD = "Demo-pass-1"
ADMIN_EMAIL = "admin@partnerdesk.example.com"
PARTNER_EMAIL = "owner@acmevoice.example.com"
CUSTOMERS = [
    ("Bluebird Dental", "bluebird", "Maya", "Lopez"),
    ("Harbor Legal", "harbor", "Sam", "Okafor"),
    ("Pine Street Realty", "pinestreet", "Lee", "Chen"),
]
DEMO_CUSTOMER = ("Sunny Smiles Demo", "sunnydemo", "Dana", "Demo")


@dataclass(slots=True)
class DemoLogin:
    role: str
    login: str
    password: str
    organization: str
    repaired: str = ""  # what had to be put back for this login to work again


async def seed_demo() -> list[DemoLogin]:
    """Idempotent: existing demo rows are kept; returns the logins to print."""
    system = Viewer.system("seed-demo")
    await admin_create(system, AdminCreate(ADMIN_EMAIL, DEMO_PASSWORD))
    logins = [DemoLogin("PLATFORM_ADMIN", ADMIN_EMAIL, DEMO_PASSWORD, "Partnerdesk")]
    partner = await Partner.filter(name="Acme Voice").first()
    if partner is None:
        created = await partner_create(
            system,
            PartnerCreate(
                name="Acme Voice",
                owner_email=PARTNER_EMAIL,
                owner_password=DEMO_PASSWORD,
                owner_name="Ava Acme",
                sender_email="billing@acmevoice.example.com",
            ),
        )
        partner = created.partner
    logins.append(DemoLogin("PARTNER_ADMIN", PARTNER_EMAIL, DEMO_PASSWORD, "Acme Voice"))
    staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id, label="seed-demo")
    for company, slug, first, last in CUSTOMERS:
        email = f"{slug}.admin@example.com"
        if not await User.filter(email_key=email).exists():
            created_customer = await customer_create(
                staff,
                CustomerCreate(
                    username=f"{slug}-admin",
                    first_name=first,
                    last_name=last,
                    email=email,
                    password=DEMO_PASSWORD,
                    password_confirmation=DEMO_PASSWORD,
                    company_name=company,
                    phone="+1 555 0100",
                    country="US",
                    city="Austin",
                    role="Owner",
                ),
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
            await _demo_money(partner, created_customer.customer, slug)
        logins.append(DemoLogin("CUSTOMER_ADMIN", email, DEMO_PASSWORD, company))
        logins.append(DemoLogin("CUSTOMER_MEMBER", f"{slug}.member@example.com", DEMO_PASSWORD, company))
    logins.append(await _demo_customer(partner, staff))
    for entry in logins:
        entry.repaired = await _repair_login(entry.login)
    return logins


async def _demo_customer(partner: Partner, staff: Viewer) -> DemoLogin:
    """One customer in demo mode (its sample laid by the demo service, reset every night)."""
    company, slug, first, last = DEMO_CUSTOMER
    email = f"{slug}.admin@example.com"
    if not await User.filter(email_key=email).exists():
        created = await customer_create(
            staff,
            CustomerCreate(
                username=f"{slug}-admin",
                first_name=first,
                last_name=last,
                email=email,
                password=DEMO_PASSWORD,
                password_confirmation=DEMO_PASSWORD,
                company_name=company,
                role="Office manager",
            ),
        )
        await customer_demo_mode_set(staff, CustomerDemoModeSet(created.customer.id, True))
    return DemoLogin("CUSTOMER_ADMIN", email, DEMO_PASSWORD, f"{company} (demo mode)")


async def _repair_login(email: str) -> str:
    """Puts a printed login back in working order; says what it changed ("" when nothing)."""
    user = await User.get_or_none(email_key=email.lower())
    if user is None:
        return ""
    fixes: list[str] = []
    if not await asyncio.to_thread(verify_password, user.password_hash, DEMO_PASSWORD):
        user.password_hash = await hash_password_async(DEMO_PASSWORD)
        fixes.append("password reset")
    if user.totp_enabled:
        user.totp_enabled, user.totp_secret, user.totp_last_step = False, None, None
        fixes.append("2FA turned off")
    if not user.is_active:
        user.is_active = True
        fixes.append("account reactivated")
    if fixes:
        async with in_transaction():
            await user.save(
                update_fields=["password_hash", "totp_enabled", "totp_secret", "totp_last_step", "is_active"]
            )
            await Session.filter(user_id=user.id, revoked_at=None).update(revoked_at=datetime.now(UTC))
            await record(
                Viewer.system("seed-demo"),
                AuditEventType.SECURITY,
                "demo_login.repair",
                object_type="User",
                object_id=user.id,
                details={"fixes": fixes},
            )
    for membership in await Membership.filter(user_id=user.id, customer_id__isnull=False).select_related("customer"):
        if membership.customer is not None and membership.customer.status != CustomerStatus.ACTIVE:
            await customer_enable(Viewer.system("seed-demo"), CustomerEnable(membership.customer.id))
            fixes.append(f"{membership.customer.name} enabled")
    return ", ".join(fixes)


_PACKAGES = {
    "Starter": PackageCreate(
        title="Starter",
        description="The customer portal and a small team.",
        features=[FeatureKey.CUSTOMER_PORTAL, FeatureKey.TEAM_MEMBERS],
        user_count=5,
    ),
    "Growth": PackageCreate(
        title="Growth",
        description="AI credits, API access, embeds and the knowledge base.",
        features=[
            FeatureKey.CUSTOMER_PORTAL,
            FeatureKey.TEAM_MEMBERS,
            FeatureKey.ADVANCED_ANALYTICS,
            FeatureKey.API_ACCESS,
            FeatureKey.AI_CREDITS,
            FeatureKey.EMBEDS,
            FeatureKey.KNOWLEDGE_BASE,
        ],
        user_count=10,
        limits=PackageLimits(storage_mb=1024, api_rate_tier=ApiTier.PREMIUM),
        ai_credits=Decimal(500),
    ),
}


async def _demo_package(staff: Viewer, partner: Partner, title: str) -> Package:
    """The partner's demo package of that title (created once)."""
    found = await Package.filter(partner_id=partner.id, title=title).first()
    return found or await package_create(staff, _PACKAGES[title])


async def _demo_money(partner: Partner, customer: Customer, slug: str) -> None:
    """Credits, a wallet or an invoice with a cap, a campaign, a phone number and a few days of usage."""
    admin = Viewer.system("seed-demo")
    staff = Viewer(role=Role.PARTNER_ADMIN, partner_id=partner.id, label="seed-demo")
    await partner_credits_add(admin, PartnerCreditsAdd(partner.id, Decimal(10000), f"demo-fund-{slug}", "demo funding"))
    await partner_storage_purchase(staff, PartnerStoragePurchase(2, f"demo-storage-{slug}"))
    package = await _demo_package(staff, partner, "Growth" if slug == "bluebird" else "Starter")
    await package_assign(staff, PackageAssign(customer.id, package.id, f"demo-package-{slug}"))
    if slug == "bluebird":
        # API keys and embed links can be tried on this one (apiKeyCreate, embedTokenCreate); its package gives
        # AI credits, API access and embeds
        await customer_features_update(staff, CustomerFeaturesUpdate(customer.id, api_keys_menu=True))
        await billing_preferences_update(
            staff, BillingPreferencesUpdate(customer.id, low_credit_threshold=Decimal(100))
        )
        await customer_credits_recharge(
            staff, CustomerCreditsRecharge(customer.id, Decimal(2000), f"demo-recharge-{slug}")
        )
    elif slug == "harbor":
        await billing_preferences_update(
            staff,
            BillingPreferencesUpdate(
                customer.id,
                billing_mode=BillingMode.REFILLABLE_WALLET,
                refill_amount=Decimal(200),
                refill_threshold=Decimal(50),
                monthly_spending_cap=Decimal(500),
            ),
        )
        await wallet_refill(staff, WalletRefill(customer.id, Decimal("150.00"), f"demo-refill-{slug}", "DEMO-1"))
    else:
        await billing_preferences_update(
            staff, BillingPreferencesUpdate(customer.id, monthly_spending_cap=Decimal(100))
        )
    await campaign_create(staff, CampaignCreate(customer.id, "Spring outreach"))
    await PhoneNumber.get_or_create(number=f"+1555{customer.id:07d}", defaults={"customer_id": customer.id})
    now = datetime.now(UTC)
    events = [
        UsageEventIn(
            idempotency_key=f"demo-{slug}-{day}-{unit}",
            customer_id=customer.id,
            unit_type=unit,
            quantity=quantity,
            occurred_at=now - timedelta(days=day, hours=1),
            case_type="demo",
        )
        for day in range(6)
        for unit, quantity in (
            (UnitType.VOICE_MINUTES, Decimal(12 + day)),
            (UnitType.SMS_SEGMENTS, Decimal(40)),
            (UnitType.CHAT_TURNS, Decimal(25)),
            (UnitType.EMAILS, Decimal(8)),
        )
    ]
    await record_usage(admin, events)
