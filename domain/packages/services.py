"""Agency packages (seed 004): creating, changing and archiving them, and assigning one to a customer.

Assigning applies the package in one transaction through the owning services, so their rules stay in one place:
the package becomes the customer's package in force (the previous assignment ends as REPLACED), so the features
service judges eligibility by it; feature toggles and the seat limit (`user_count` → `maxTeamMembers`) through
`customer_features_update` (a combination its rules refuse refuses the assignment with the same code), the storage
allocation from the partner's pool (`apply_package_storage`, POOL_EXHAUSTED when short), the rate tier of the
customer's API keys, the monthly spending cap through `spending_cap_update`, and the AI credits as an expiring grant
from the partner's credit pool (`grant_package_credits`, POOL_EXHAUSTED when short). The whole assignment runs once
per idempotency key (`money_mutation`). A package restricted to some emails can only go to a customer one of whose
users has one of them (NOT_ELIGIBLE otherwise), and so can no archived package. The expiry of assignments is
domain/packages/expiry.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tortoise.functions import Count
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.access.models import ApiTier
from domain.access.services import apply_package_tier
from domain.accounts.models import Membership
from domain.audit.models import AuditEventType
from domain.audit.services import changes, record
from domain.billing import cap as spending_cap
from domain.billing.commands import SpendingCapUpdate
from domain.billing.credits import grant_package_credits
from domain.billing.models import BillingPreferences
from domain.common.commands import UNSET
from domain.common.json import JsonMapping, JsonObject, JsonValue
from domain.common.validation import Validator, parse_amount
from domain.customers.models import Customer
from domain.errors import DomainError, ErrorCode, FieldError
from domain.events import services as events
from domain.features import eligibility
from domain.features import services as features
from domain.features.commands import CustomerFeaturesUpdate
from domain.features.eligibility import PackageInForce, live
from domain.features.models import FeatureToggles, PortalSection
from domain.ledger.idempotency import Kept, check_key, money_mutation
from domain.packages.commands import PackageArchive, PackageAssign, PackageCreate, PackageLimits, PackageUpdate
from domain.packages.models import EndReason, FeatureKey, Package, PackageAssignment
from domain.partners.models import Partner
from domain.storage.services import MAX_ALLOCATION_MB, apply_package_storage
from domain.viewer import Viewer
from domain.visibility import get_visible, require_partner_staff, restrict

MAX_USER_COUNT = features.MAX_TEAM_MEMBERS
MAX_STORAGE_MB = MAX_ALLOCATION_MB
MAX_EXPIRY_DAYS = 3650
MAX_RESTRICTED_EMAILS = 500
ZERO = Decimal(0)

# The feature toggle each package feature switches (KNOWLEDGE_BASE is a portal section, handled apart).
TOGGLE_OF: dict[FeatureKey, str] = {key: toggle for toggle, key in eligibility.TOGGLE_FEATURES.items()}
FEATURE_OF_TOGGLE = {**eligibility.TOGGLE_FEATURES, "portal_sections": FeatureKey.KNOWLEDGE_BASE}
EDITABLE = (
    "title",
    "description",
    "features",
    "user_count",
    "storage_mb",
    "api_rate_tier",
    "monthly_spending_cap",
    "ai_credits",
    "expiry_days",
    "restricted_emails",
)
# what an assignment's snapshot called `user_count` before it had that name
_OLD_NAMES = {"user_count": "max_team_members"}


def now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- reads


def visible_packages(viewer: Viewer, archived: bool | None = None) -> QuerySet[Package]:
    qs = restrict(Package, viewer)
    return qs if archived is None else qs.filter(archived=archived)


async def customer_counts(viewer: Viewer, package_ids: list[int]) -> dict[int, int]:
    """Customers (visible to the viewer) each package is in force for, in one query (DataLoader batch)."""
    rows = (
        await restrict(PackageAssignment, viewer)
        .filter(live(), package_id__in=package_ids)
        .annotate(n=Count("id"))
        .group_by("package_id")
        .values("package_id", "n")
    )
    counts = {row["package_id"]: row["n"] for row in rows}
    return {pid: counts.get(pid, 0) for pid in package_ids}


async def current_assignments(viewer: Viewer, customer_ids: list[int]) -> dict[int, PackageAssignment]:
    """Each visible customer's assignment in force (none once it expired, even before the expiry job ended it)."""
    rows = await restrict(PackageAssignment, viewer).filter(live(), current_customer_id__in=customer_ids)
    return {row.customer_id: row for row in rows}


@dataclass(frozen=True, slots=True)
class Given:
    """What an assignment gave: the terms of the package version assigned, as its snapshot keeps them."""

    title: str
    description: str
    features: list[FeatureKey]
    user_count: int
    ai_credits: Decimal
    storage_mb: int
    api_rate_tier: ApiTier
    monthly_spending_cap: Decimal | None

    @classmethod
    def of(cls, assignment: PackageAssignment) -> Given:
        terms: JsonObject = assignment.snapshot or {}

        def value(name: str) -> JsonValue:
            return terms.get(name, terms.get(_OLD_NAMES.get(name, name)))

        listed = value("features")
        chosen = {str(k) for k in listed} if isinstance(listed, list) else set()
        cap = value("monthly_spending_cap")
        tier = str(value("api_rate_tier") or ApiTier.STANDARD.value)
        return cls(
            title=str(value("title") or ""),
            description=str(value("description") or ""),
            features=[k for k in FeatureKey if k.value in chosen],
            user_count=int(str(value("user_count") or 0)),
            ai_credits=Decimal(str(value("ai_credits") or 0)),
            storage_mb=int(str(value("storage_mb") or 0)),
            api_rate_tier=ApiTier(tier) if tier in {t.value for t in ApiTier} else ApiTier.STANDARD,
            monthly_spending_cap=None if cap is None else Decimal(str(cap)),
        )


# ---------------------------------------------------------------- create, update, archive


def _features(v: Validator, values: list[FeatureKey] | None) -> list[str] | None:
    if values is None:
        known = ", ".join(sorted(k.value for k in FeatureKey))
        v.add("features", f"Choose features among {known} (an empty list is allowed).")
        return None
    present = set(values)
    chosen: list[str] = [k.value for k in FeatureKey if k in present]
    # the features service's own dependency rules, judged on the package alone
    toggles = {TOGGLE_OF[k] for k in present if k in TOGGLE_OF}
    for rule in features.REQUIREMENTS:
        if rule.field in toggles and rule.needs not in toggles:
            v.add("features", rule.message, ErrorCode.REQUIRES_FEATURE)
    if FeatureKey.KNOWLEDGE_BASE in present and "portal_enabled" not in toggles:
        v.add("features", "The knowledge base needs customer portal access.", ErrorCode.REQUIRES_FEATURE)
    return chosen


def _count(v: Validator, field: str, value: int | None, maximum: int, *, minimum: int = 0) -> int | None:
    if value is None or not minimum <= value <= maximum:
        v.add(field, f"Must be a whole number between {minimum} and {maximum:,}.")
        return None
    return value


def _clean(command: PackageCreate | PackageUpdate) -> dict[str, object]:
    """The columns the command sets (an update's unsent fields left out), checked (INVALID / REQUIRED /
    REQUIRES_FEATURE); all failures at once."""
    v = Validator()
    out: dict[str, object] = {}
    if command.title is not UNSET:
        out["title"] = v.text("title", command.title, required=True, max_length=200)
    if command.description is not UNSET:
        out["description"] = v.text("description", command.description, max_length=2000) or ""
    if command.features is not UNSET:
        out["features"] = _features(v, command.features)
    if command.user_count is not UNSET:
        out["user_count"] = _count(v, "user_count", command.user_count, MAX_USER_COUNT, minimum=1)
    limits = command.limits or PackageLimits()  # null limits change nothing
    if limits.storage_mb is not UNSET:
        out["storage_mb"] = _count(v, "storage_mb", limits.storage_mb, MAX_STORAGE_MB)
    if limits.api_rate_tier is None:
        v.add("api_rate_tier", "Choose an API rate tier.", ErrorCode.REQUIRED)
    elif limits.api_rate_tier is not UNSET:
        out["api_rate_tier"] = ApiTier(limits.api_rate_tier)
    if (cap := limits.monthly_spending_cap) is not UNSET:
        out["monthly_spending_cap"] = None if cap is None else parse_amount(v, "monthly_spending_cap", cap, places=2)
    if (credits := command.ai_credits) is not UNSET:
        out["ai_credits"] = ZERO if credits is None else parse_amount(v, "ai_credits", credits, allow_zero=True)
    if (days := command.expiry_days) is not UNSET:
        out["expiry_days"] = None if days is None else _count(v, "expiry_days", days, MAX_EXPIRY_DAYS, minimum=1)
    if command.restricted_emails is not UNSET:
        emails = command.restricted_emails or []
        if len(emails) > MAX_RESTRICTED_EMAILS:
            v.add("restricted_emails", f"At most {MAX_RESTRICTED_EMAILS} addresses.")
        cleaned = [v.email("restricted_emails", e) for e in emails[:MAX_RESTRICTED_EMAILS]]
        out["restricted_emails"] = sorted({c.lower() for c in cleaned if c})
    v.raise_if_invalid()
    return out


def _check_grants_need_features(package: Package) -> None:
    """Credits come with AI_CREDITS, storage with KNOWLEDGE_BASE (REQUIRES_FEATURE): judged on the whole package."""
    errors = []
    if Decimal(package.ai_credits) > ZERO and FeatureKey.AI_CREDITS.value not in package.features:
        message = "AI credits can only be given with the AI_CREDITS feature."
        errors.append(FieldError("ai_credits", message, ErrorCode.REQUIRES_FEATURE))
    if package.storage_mb > 0 and FeatureKey.KNOWLEDGE_BASE.value not in package.features:
        message = "Storage is for the knowledge base: give it with the KNOWLEDGE_BASE feature."
        errors.append(FieldError("storage_mb", message, ErrorCode.REQUIRES_FEATURE))
    if errors:
        raise DomainError(errors)


def snapshot(package: Package) -> JsonObject:
    """The package's terms as plain JSON (audit diffs and the copy an assignment keeps)."""
    out: JsonObject = {}
    for name in EDITABLE:
        value = getattr(package, name)
        out[name] = str(value) if isinstance(value, Decimal) else value
    return out


async def _audit(viewer: Viewer, action: str, package: Package, details: JsonMapping) -> None:
    await record(
        viewer,
        AuditEventType.DATA_CHANGE,
        action,
        object_type="Package",
        object_id=package.id,
        partner_id=package.partner_id,
        details=details,
    )


async def package_create(viewer: Viewer, command: PackageCreate) -> Package:
    """Partner admins create packages for their partner; platform admins name the partner."""
    require_partner_staff(viewer, admin=True)
    if viewer.is_platform_admin:
        if command.partner_id is None:
            raise DomainError.single(ErrorCode.REQUIRED, "Platform administrators choose the partner.", "partner_id")
        partner_id = (await get_visible(Partner, viewer, command.partner_id, field="partner_id")).id
    else:
        assert viewer.partner_id is not None
        partner_id = viewer.partner_id
    package = Package(partner_id=partner_id, **_clean(command))
    _check_grants_need_features(package)
    async with in_transaction():
        await package.save()
        await _audit(viewer, "package.create", package, {"package": snapshot(package)})
    return package


async def _locked_package(viewer: Viewer, package_id: int) -> Package:
    """Call inside a transaction: NOT_FOUND beyond the viewer's reach, else the row locked."""
    visible = await get_visible(Package, viewer, package_id, field="package_id")
    return await Package.select_for_update().get(id=visible.id)


async def package_update(viewer: Viewer, command: PackageUpdate) -> Package:
    """Partial update; a real change increments `version` (existing assignments keep theirs)."""
    require_partner_staff(viewer, admin=True)
    await get_visible(Package, viewer, command.package_id, field="package_id")
    clean = _clean(command)
    async with in_transaction():
        package = await _locked_package(viewer, command.package_id)
        before = snapshot(package)
        for name, value in clean.items():
            setattr(package, name, value)
        _check_grants_need_features(package)
        diff = changes(before, snapshot(package))
        if diff:
            package.version += 1
            await package.save()
            await _audit(viewer, "package.update", package, {"changes": diff, "version": package.version})
    return package


async def package_archive(viewer: Viewer, command: PackageArchive) -> Package:
    """Archived packages stay with the customers that have them but cannot be newly assigned."""
    require_partner_staff(viewer, admin=True)
    await get_visible(Package, viewer, command.package_id, field="package_id")
    async with in_transaction():
        package = await _locked_package(viewer, command.package_id)
        if not package.archived:
            package.archived = True
            await package.save(update_fields=["archived", "updated_at"])
            archived = {"archived": {"before": False, "after": True}}
            await _audit(viewer, "package.archive", package, {"changes": archived})
    return package


# ---------------------------------------------------------------- assign


async def _eligible(customer: Customer, package: Package) -> None:
    if package.archived:
        raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "This package is archived.", "package_id")
    if package.partner_id != customer.partner_id:
        # a platform admin could name a package and a customer of different partners
        raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "The package belongs to another partner.", "package_id")
    if package.restricted_emails:
        allowed = await Membership.filter(
            customer_id=customer.id, user__email_key__in=package.restricted_emails
        ).exists()
        if not allowed:
            message = "This package is reserved for other clients: none of this customer's users has a listed email."
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, message, "package_id")


def _toggle_changes(
    package: Package, customer_id: int, current: FeatureToggles, previous: PackageInForce | None
) -> CustomerFeaturesUpdate:
    """What `customer_features_update` is asked for: the gated features as the package says, the add-ons it
    includes on (and those only the previous package gave off; add-ons given beyond a package stay as they are),
    the seat limit from `user_count`, and the portal sections with the knowledge base as the package says (other
    sections kept while still allowed)."""
    chosen = {FeatureKey(k) for k in package.features}
    switches = {toggle: key in chosen for toggle, key in eligibility.GATED.items()}
    for toggle, key in eligibility.ADD_ONS.items():
        if key in chosen:
            switches[toggle] = True
        elif previous is not None and key in previous.features:
            switches[toggle] = False
    shown = {str(value) for value in current.portal_sections or []}
    kept: list[PortalSection] = [
        s
        for s in PortalSection
        if s.value in shown
        and s not in eligibility.GATED_SECTIONS
        and all(switches.get(need, getattr(current, need)) for need in features.SECTION_NEEDS[s])
    ]
    if FeatureKey.KNOWLEDGE_BASE in chosen:
        kept.append(PortalSection.KNOWLEDGE_BASE)
    return CustomerFeaturesUpdate(
        customer_id=customer_id,
        portal_sections=[s for s in PortalSection if s in kept],
        max_team_members=package.user_count,
        low_credit_threshold=UNSET,
        **switches,
    )


def _feature_error(exc: DomainError) -> DomainError:
    """The features service's refusal, pinned on `packageId` and naming the package feature behind it."""
    errors = []
    for e in exc.errors:
        key = FEATURE_OF_TOGGLE.get(e.field or "")
        if e.field == "max_team_members":
            message = f"userCount: {e.message}"
        else:
            message = f"{key.value}: {e.message}" if key else e.message
        errors.append(FieldError("package_id", message, e.code))
    return DomainError(errors)


async def end_current_assignment(customer_id: int, reason: EndReason, at: datetime) -> PackageAssignment | None:
    """Ends the customer's current assignment, if any (call inside a transaction); returns it as it was."""
    current = await PackageAssignment.select_for_update().get_or_none(current_customer_id=customer_id)
    if current is not None:
        await PackageAssignment.filter(id=current.id).update(current_customer_id=None, ended_at=at, end_reason=reason)
    return current


async def _apply(viewer: Viewer, customer_id: int, package_id: int) -> PackageAssignment:
    """The whole assignment; call inside a transaction. Locks the package, then the customer's rows in the order
    the owning services take them (toggles, preferences, customer), then the ledger accounts and the storage pool,
    so nothing here waits in the opposite order of a concurrent features, cap, credits or storage change."""
    package = await _locked_package(viewer, package_id)
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    await _eligible(customer, package)
    await FeatureToggles.bulk_create([FeatureToggles(customer_id=customer.id)], ignore_conflicts=True)
    current = await FeatureToggles.select_for_update().get(customer_id=customer.id)
    await BillingPreferences.bulk_create([BillingPreferences(customer_id=customer.id)], ignore_conflicts=True)
    await BillingPreferences.select_for_update().get(customer_id=customer.id)
    customer = await Customer.select_for_update().get(id=customer.id)

    assigned_at = now()
    expires_at = assigned_at + timedelta(days=package.expiry_days) if package.expiry_days else None
    terms = snapshot(package)
    previous = await eligibility.package_in_force(customer.id)
    replaced = await end_current_assignment(customer.id, EndReason.REPLACED, assigned_at)
    # in force from here on, so the features service judges eligibility by this package
    assignment = await PackageAssignment.create(
        customer_id=customer.id,
        partner_id=customer.partner_id,
        package_id=package.id,
        current_customer_id=customer.id,
        version=package.version,
        snapshot=terms,
        assigned_at=assigned_at,
        expires_at=expires_at,
        assigned_by_user_id=viewer.user_id,
    )
    if package.ai_credits > ZERO:
        await grant_package_credits(
            viewer,
            customer,
            Decimal(package.ai_credits),
            expires_at,
            {"package_id": package.id, "package_version": package.version, "assignment_id": assignment.id},
        )
    try:
        await features.customer_features_update(viewer, _toggle_changes(package, customer.id, current, previous))
    except DomainError as exc:
        raise _feature_error(exc) from None
    storage_mb = package.storage_mb if FeatureKey.KNOWLEDGE_BASE.value in package.features else 0
    storage_moved = await apply_package_storage(customer, storage_mb)
    keys_retiered = await apply_package_tier(customer.id, ApiTier(package.api_rate_tier))
    if package.monthly_spending_cap is not None:
        await spending_cap.spending_cap_update(
            viewer, SpendingCapUpdate(customer.id, Decimal(package.monthly_spending_cap))
        )
    await events.emit(
        events.PACKAGE_ASSIGNED,
        customer_id=customer.id,
        partner_id=customer.partner_id,
        assignment_id=assignment.id,
        package_id=package.id,
        version=package.version,
        assigned_at=assigned_at.isoformat(),
        expires_at=expires_at.isoformat() if expires_at else None,
    )
    await record(
        viewer,
        AuditEventType.DATA_CHANGE,
        "package.assign",
        object_type="Customer",
        object_id=customer.id,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        details={
            "package_id": package.id,
            "version": package.version,
            "assignment_id": assignment.id,
            "replaced_assignment_id": replaced.id if replaced else None,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "storage_mb_from_pool": storage_moved,
            "api_keys_retiered": keys_retiered,
            "package": terms,
        },
    )
    return assignment


async def package_assign(viewer: Viewer, command: PackageAssign) -> PackageAssignment:
    """Applies a package to a customer in one transaction; refused whole (nothing kept) on any failure.

    A money mutation: a repeat with the same key returns the first outcome (one credit grant, however often it is
    sent), the assignment it made."""
    require_partner_staff(viewer, admin=True)
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    package = await get_visible(Package, viewer, command.package_id, field="package_id")
    key = check_key(command.idempotency_key)

    async def perform() -> PackageAssignment:
        return await _apply(viewer, customer.id, package.id)

    request: dict[str, JsonValue] = {"customer_id": customer.id, "package_id": package.id}
    return await money_mutation(
        viewer, "packageAssign", key, request, perform, Kept("assignment_id", PackageAssignment)
    )


async def package_assign_to_new_customer(viewer: Viewer, customer_id: int, package_id: int) -> PackageAssignment:
    """`package_assign` inside `customer_create`'s transaction, without a key: the customer is created in the same
    transaction, so a repeated creation cannot grant twice to one customer (it fails on the unique username)."""
    require_partner_staff(viewer, admin=True)
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    package = await get_visible(Package, viewer, package_id, field="package_id")
    return await _apply(viewer, customer.id, package.id)
