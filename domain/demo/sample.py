"""A demo customer's sample state (seed 001 "Demo Mode"): what `lay_sample` creates and `wipe` removes.

The sample is a month of usage over every unit type and several case types (rated and paid by the usual metering
service), campaigns, a phone number, AI credits (a grant funded from outside, never from the partner's pool) and a
wallet with its refill history, billing preferences with a spending cap, and limited features (no API access).

Money stays within the demo: `wipe` moves the revenue the sample's usage earned back out of the partner's revenue,
zeroes the customer's ledger accounts against the partner's external funding (ADJUSTMENT transfers, so every
transfer stays and `ledger verify` stays clean) and retires those accounts (their key gets a `~demo<epoch>`
suffix), so the next sample starts from empty accounts and an empty refill history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tortoise.expressions import Q

from domain.access.models import ApiKey, EmbedToken
from domain.alerts.models import Alert, AlertArm
from domain.billing.credits import grant_credits
from domain.billing.models import (
    BillingMode,
    BillingPreferences,
    CreditGrant,
    CustomerCredits,
    GrantSource,
    RefillRequest,
)
from domain.campaigns.models import Campaign, CampaignStatus, PauseReason
from domain.common.json import JsonObject
from domain.customers.models import Customer, ServiceState
from domain.features.models import FeatureToggles, PortalSection
from domain.ledger import services as ledger
from domain.ledger.models import AccountKind, Currency, LedgerAccount, Transfer, TransferKind
from domain.reports.models import HealedContact
from domain.team.models import Invitation
from domain.usage.commands import UsageEventIn
from domain.usage.models import (
    CapCrossing,
    MonthlySpend,
    PhoneNumber,
    UnitType,
    UsageDedup,
    UsageEvent,
    UsageHold,
    UsageRollup,
    UsageRollupDetail,
)
from domain.usage.services import record_usage
from domain.viewer import Viewer

DAYS = 30
CASE_TYPES = ("intake", "follow-up", "billing", "support")
CREDITS = Decimal(20_000)
REFILLS = ((28, Decimal("200.00")), (18, Decimal("200.00")), (8, Decimal("150.00")))
CAMPAIGNS = (
    ("Spring outreach", CampaignStatus.RUNNING),
    ("Missed-call follow-up", CampaignStatus.RUNNING),
    ("Renewal reminders", CampaignStatus.PAUSED),
)
CUSTOMER_DATA = (
    UsageEvent,
    UsageRollup,
    UsageRollupDetail,
    HealedContact,
    UsageDedup,
    MonthlySpend,
    UsageHold,
    CapCrossing,
    Campaign,
    Alert,
    AlertArm,
    RefillRequest,
    CreditGrant,
    CustomerCredits,
    PhoneNumber,
    ApiKey,
    EmbedToken,
    BillingPreferences,
    FeatureToggles,
)


def _ref(account: LedgerAccount) -> ledger.AccountRef:
    return ledger.AccountRef(account.kind, account.currency, account.partner_id, account.customer_id)


async def _settle_ledger(customer: Customer, epoch: int) -> None:
    """Takes the sample's money back out (see the module docstring). Inside the caller's transaction."""
    accounts = await LedgerAccount.filter(customer_id=customer.id).exclude(key__contains="~demo").order_by("id")
    if not accounts:
        return
    ids = [a.id for a in accounts]
    metadata: JsonObject = {"demo": True, "reason": "demo_reset", "epoch": epoch}
    earned: dict[Currency, Decimal] = {}
    for currency, amount in await Transfer.filter(debit_account_id__in=ids, kind=TransferKind.USAGE_CHARGE).values_list(
        "currency", "amount"
    ):
        earned[Currency(currency)] = earned.get(Currency(currency), Decimal(0)) + Decimal(amount)
    for currency, amount in sorted(earned.items()):
        if amount > 0:
            await ledger.post(
                ledger.revenue(currency, customer.partner_id, customer.id),
                ledger.external_funding(currency, customer.partner_id),
                amount,
                TransferKind.ADJUSTMENT,
                metadata=metadata,
            )
    for account in accounts:
        balance = (await LedgerAccount.get(id=account.id)).balance
        funding = ledger.external_funding(account.currency, customer.partner_id)
        if balance > 0:
            await ledger.post(_ref(account), funding, balance, TransferKind.ADJUSTMENT, metadata=metadata)
        elif balance < 0:
            await ledger.post(funding, _ref(account), -balance, TransferKind.ADJUSTMENT, metadata=metadata)
        await LedgerAccount.filter(id=account.id).update(key=f"{account.key}~demo{epoch}")


async def wipe(customer: Customer, epoch: int) -> None:
    """Removes the customer's activity and money (its users, settings of the portal and branding stay)."""
    await _settle_ledger(customer, epoch)
    for model in CUSTOMER_DATA:
        await model.filter(customer_id=customer.id).delete()
    await Invitation.filter(Q(customer_id=customer.id), accepted_at=None).delete()
    await Customer.filter(id=customer.id).update(service_state=ServiceState.ACTIVE)


def _events(customer: Customer, epoch: int, now: datetime) -> list[UsageEventIn]:
    """A month of usage, the same every time: every unit type, spread over the case types."""
    events: list[UsageEventIn] = []

    def add(day: int, unit: UnitType, quantity: Decimal, case: str, hour: int) -> None:
        events.append(
            UsageEventIn(
                idempotency_key=f"demo-{epoch}-{day}-{unit}-{case}",
                customer_id=customer.id,
                unit_type=unit,
                quantity=quantity,
                occurred_at=now - timedelta(days=day, hours=hour),
                case_type=case,
                metadata={"demo": True},
            )
        )

    for day in range(1, DAYS + 1):
        weekday_boost = 0 if day % 7 in (0, 6) else 6
        for index, case in enumerate(CASE_TYPES):
            add(day, UnitType.VOICE_MINUTES, Decimal(4 + (day * 3 + index) % 9 + weekday_boost), case, 1 + index)
            add(day, UnitType.SMS_SEGMENTS, Decimal(10 + (day + index * 5) % 20), case, 2 + index)
        add(day, UnitType.CHAT_TURNS, Decimal(15 + day % 11), CASE_TYPES[day % len(CASE_TYPES)], 3)
        add(day, UnitType.EMAILS, Decimal(5 + day % 4), CASE_TYPES[(day + 1) % len(CASE_TYPES)], 4)
    add(DAYS - 1, UnitType.PHONE_NUMBER_MONTHS, Decimal(1), "intake", 6)
    add(1, UnitType.STORAGE_MB, Decimal(180), "support", 5)  # knowledge-base storage, MB-months
    return events


async def lay_sample(customer: Customer, epoch: int, now: datetime | None = None) -> None:
    """Creates the sample state (call after `wipe`, inside the caller's transaction)."""
    now = now or datetime.now(UTC)
    system = Viewer.system("demo")
    await FeatureToggles.create(  # the portal is what a demo shows: on, whatever package the customer has
        customer_id=customer.id,
        portal_enabled=True,
        team_members_enabled=True,
        max_team_members=5,
        ai_credits_enabled=True,
        show_pricing=False,
        low_credit_notifications=True,
        portal_sections=[PortalSection.KNOWLEDGE_BASE.value, PortalSection.DOCS_AND_MEDIA.value],
        advanced_analytics=True,
        detailed_call_analysis=True,
    )
    await BillingPreferences.create(
        customer_id=customer.id,
        billing_mode=BillingMode.REFILLABLE_WALLET,
        refill_amount=Decimal(200),
        refill_threshold=Decimal(50),
        monthly_spending_cap=Decimal(1000),
        low_credit_threshold=Decimal(2000),
    )
    metadata: JsonObject = {"demo": True, "epoch": epoch}
    grant = await ledger.post(
        ledger.external_funding(Currency.CREDITS, customer.partner_id),
        ledger.customer_credits(customer.id, customer.partner_id),
        CREDITS,
        TransferKind.CREDITS_GRANT,
        metadata=metadata,
    )
    await grant_credits(customer, CREDITS, GrantSource.ADJUSTMENT, grant)
    await Transfer.filter(id=grant.id).update(created_at=now - timedelta(days=DAYS + 1))
    for days_ago, amount in REFILLS:
        refill = await ledger.post(
            ledger.external_funding(Currency.USD, customer.partner_id),
            ledger.customer_wallet(customer.id, customer.partner_id),
            amount,
            TransferKind.WALLET_REFILL,
            metadata={**metadata, "reference": f"DEMO-{days_ago}"},
        )
        await Transfer.filter(id=refill.id).update(created_at=now - timedelta(days=days_ago))
    for name, status in CAMPAIGNS:
        paused = status is CampaignStatus.PAUSED
        await Campaign.create(
            customer_id=customer.id,
            name=name,
            status=status,
            pause_reason=PauseReason.MANUAL if paused else None,
            paused_at=now - timedelta(days=3) if paused else None,
        )
    await PhoneNumber.create(number=f"+1555{customer.id:07d}", customer_id=customer.id)
    await record_usage(system, _events(customer, epoch, now), now)
    await HealedContact.bulk_create(_healed_contacts(customer, now))


def _healed_contacts(customer: Customer, now: datetime) -> list[HealedContact]:
    """Numbers found by enrichment and confirmed by a call over the month; the last one later flagged as wrong."""
    contacts = []
    for n in range(8):
        confirmed = now - timedelta(days=27 - 3 * n, hours=2)
        contacts.append(
            HealedContact(
                customer_id=customer.id,
                partner_id=customer.partner_id,
                external_id=f"demo-patient-{n + 1:03d}",
                old_number=f"+1555010{n:04d}",
                new_number=f"+1555020{n:04d}",
                enriched_at=confirmed - timedelta(hours=6),
                confirmed_at=confirmed,
                call_id=f"demo-call-{n + 1:03d}",
                wrong_number=n == 7,
                flagged_at=confirmed + timedelta(days=1) if n == 7 else None,
                created_at=confirmed,
            )
        )
    return contacts


async def account_kinds(customer_id: int) -> dict[AccountKind, Decimal]:
    """The customer's current (unretired) balances by account kind (for checks and tests)."""
    rows = await LedgerAccount.filter(customer_id=customer_id).exclude(key__contains="~demo")
    return {AccountKind(a.kind): a.balance for a in rows}
