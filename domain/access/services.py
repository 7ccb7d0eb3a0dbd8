"""API keys and embed tokens: issuing, revoking, listing, and turning any bearer token into a Viewer.

Tokens are `pd_live_<id>_<secret><checksum>` (API keys) and `pd_embed_<id>_<secret>` (embed tokens): the id finds
the row, the secret (40 base62 characters, ~238 random bits, for keys; 256 bits for embed tokens) is checked against
its SHA-256 in constant time. A key ends in a checksum: the CRC32 of everything before it, as 6 base62 characters
(GitHub's token format), so secret scanners can tell a real key from random text and a mistyped key is refused
without a database lookup. Keys issued before the checksum (`pd_live_<id>_<43 characters>`) keep working. Only the hash is stored; the full
token is returned once, when issued. A token stops working as soon as it is revoked, its customer or partner is
disabled, or the feature it needs is switched off: `authenticate_token` checks all of it on every call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import quote

from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.access import token_cache
from domain.access.commands import ApiKeyCreate, ApiKeyRevoke, EmbedTokenCreate, EmbedTokenRevoke
from domain.access.models import ApiKey, ApiPermission, ApiTier, EmbedSection, EmbedToken
from domain.accounts.models import Role
from domain.accounts.services import SESSION_PREFIX, authenticate_session, authenticate_sessions
from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.common.json import JsonObject
from domain.common.validation import Validator
from domain.config import config
from domain.customers.models import Customer, CustomerStatus
from domain.demo.services import refuse_if_demo
from domain.errors import DomainError, ErrorCode, forbidden
from domain.events import services as events
from domain.features.eligibility import live
from domain.features.models import FeatureToggles
from domain.features.services import toggles_of
from domain.packages.models import PackageAssignment
from domain.partners.models import PartnerStatus
from domain.viewer import Viewer
from domain.visibility import get_visible, restrict

API_KEY_PREFIX = "pd_live_"
EMBED_TOKEN_PREFIX = "pd_embed_"
MAX_TOKEN_LENGTH = 200
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_SECRET_LENGTH = 40
CHECKSUM_LENGTH = 6
LEGACY_KEY_SECRET_LENGTH = 43  # secrets.token_urlsafe(32), before the checksum

TIER_LIMITS = {ApiTier.STANDARD: 100, ApiTier.PREMIUM: 500}  # requests per minute; ENTERPRISE is set per key
TIER_ORDER = (ApiTier.STANDARD, ApiTier.PREMIUM, ApiTier.ENTERPRISE)
MAX_CUSTOM_LIMIT = 1_000_000
EMBED_MIN_SECONDS = 60
EMBED_MAX_SECONDS = 30 * 24 * 3600
EMBED_PATH = "/embed"
R = TypeVar("R", ApiKey, EmbedToken)
E = TypeVar("E", ApiPermission, EmbedSection)
# `last_used_at` is written at most this often per key: a busy key must not cost a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def now() -> datetime:
    return datetime.now(UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(token: str, prefix: str) -> tuple[int, str] | None:
    """(id, secret) of `<prefix><id>_<secret>`, or None when the token is not of that shape."""
    if not token.startswith(prefix) or len(token) > MAX_TOKEN_LENGTH:
        return None
    raw_id, sep, secret = token.removeprefix(prefix).partition("_")
    # isdigit() alone takes "²", which int() refuses
    if not sep or not secret or not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18:
        return None
    return int(raw_id), secret


def checksum(text: str) -> str:
    """CRC32 of `text` in base62, zero-padded to CHECKSUM_LENGTH characters."""
    value = zlib.crc32(text.encode())
    digits = ""
    while value:
        value, digit = divmod(value, 62)
        digits = BASE62[digit] + digits
    return digits.rjust(CHECKSUM_LENGTH, "0")


def new_key_secret() -> str:
    return "".join(secrets.choice(BASE62) for _ in range(KEY_SECRET_LENGTH))


def api_key_of(key_id: int, secret: str) -> str:
    """The full key as shown once: `pd_live_<id>_<secret><checksum>`."""
    body = f"{API_KEY_PREFIX}{key_id}_{secret}"
    return body + checksum(body)


def api_key_secret(token: str) -> tuple[int, str] | None:
    """(id, secret) of a key whose checksum holds (or a key from before checksums), else None: no lookup needed to
    refuse a typo."""
    parts = _split(token, API_KEY_PREFIX)
    if parts is None:
        return None
    key_id, rest = parts
    if len(rest) == LEGACY_KEY_SECRET_LENGTH:
        return parts
    if len(rest) != KEY_SECRET_LENGTH + CHECKSUM_LENGTH:
        return None
    secret, given = rest[:KEY_SECRET_LENGTH], rest[KEY_SECRET_LENGTH:]
    if not hmac.compare_digest(checksum(token[:-CHECKSUM_LENGTH]), given):
        return None
    return key_id, secret


def _well_formed(token: str) -> bool:
    """Every token we issue is short printable ASCII; anything else (a WebSocket's JSON may even carry a lone
    surrogate, which cannot be hashed) is refused before it is looked up."""
    return len(token) <= MAX_TOKEN_LENGTH and token.isascii() and token.isprintable()


def _secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(_digest(secret), stored_hash)


@dataclass(slots=True)
class _Owner:
    """The customer a token acts for, if it may still act at all."""

    customer: Customer
    toggles: FeatureToggles


async def _active_owner(customer_id: int) -> _Owner | None:
    customer = await Customer.filter(id=customer_id).select_related("partner").first()
    if customer is None or customer.status != CustomerStatus.ACTIVE or customer.partner.status != PartnerStatus.ACTIVE:
        return None
    return _Owner(customer, (await toggles_of([customer_id]))[customer_id])


def embeds_enabled(toggles: FeatureToggles) -> bool:
    """Embeds need their own toggle and the customer portal they are part of."""
    return toggles.embed_urls_enabled and toggles.portal_enabled


# --- authentication ------------------------------------------------------------------------------------------------


async def authenticate_token(token: str, base: Viewer) -> Viewer | None:
    """The viewer behind any bearer token (session, API key, embed token), or None when it is unknown, expired,
    revoked, or its customer, partner or feature is disabled. Request metadata (ip, agent, request id) comes
    from `base`. Answered from the process's token cache when the token was seen in the last
    `AUTH_CACHE_SECONDS` (domain/access/token_cache.py: revocations clear it)."""
    seconds = config().auth_cache_seconds
    if seconds <= 0:
        return await _authenticate(token, base)
    cached = token_cache.tokens.get(token)
    if cached is not None:
        return cached.with_request(ip=base.ip, user_agent=base.user_agent, request_id=base.request_id)
    generation = token_cache.tokens.generation
    viewer = await _authenticate(token, base)
    if viewer is not None:
        token_cache.tokens.put(token, viewer, seconds, generation)
    return viewer


async def _authenticate(token: str, base: Viewer) -> Viewer | None:
    if not _well_formed(token):
        return None
    if token.startswith(SESSION_PREFIX):
        return await authenticate_session(token, base)
    if token.startswith(API_KEY_PREFIX):
        return await authenticate_api_key(token, base)
    if token.startswith(EMBED_TOKEN_PREFIX):
        return await authenticate_embed_token(token, base)
    return None


async def authenticate_tokens(tokens: list[str], base: Viewer) -> dict[str, Viewer | None]:
    """`authenticate_token` for many tokens at once, from the database (live sockets re-check theirs): the sessions
    among them in one query."""
    found = await authenticate_sessions([t for t in tokens if t.startswith(SESSION_PREFIX) and _well_formed(t)], base)
    for token in tokens:
        if token not in found:
            found[token] = await _authenticate(token, base)
    return found


def rate_limit_of(key: ApiKey) -> int:
    """The key's requests per minute: its tier's, or an ENTERPRISE key's own (never below PREMIUM's, so a key a
    package raised to ENTERPRISE before anyone set its limit keeps at least what it had)."""
    if key.tier == ApiTier.ENTERPRISE:
        return key.rate_limit_per_minute or TIER_LIMITS[ApiTier.PREMIUM]
    return TIER_LIMITS.get(ApiTier(key.tier), TIER_LIMITS[ApiTier.STANDARD])


async def package_tier(customer_id: int) -> ApiTier | None:
    """The rate tier the customer's package in force gives its API keys (None without a package)."""
    package = await PackageAssignment.filter(live(), current_customer_id=customer_id).first()
    tier = (package.snapshot or {}).get("api_rate_tier") if package else None
    return ApiTier(str(tier)) if tier in {t.value for t in ApiTier} else None


async def apply_package_tier(customer_id: int, tier: ApiTier) -> int:
    """Gives the customer's live API keys the package's rate tier (call in the assignment's transaction); returns
    how many changed. ENTERPRISE keys keep their own limit."""
    return await ApiKey.filter(customer_id=customer_id, revoked_at=None).exclude(tier=tier).update(tier=tier)


async def authenticate_api_key(token: str, base: Viewer) -> Viewer | None:
    parts = api_key_secret(token)
    if parts is None:
        return None
    key_id, secret = parts
    key = await ApiKey.get_or_none(id=key_id, revoked_at=None)
    if key is None or not _secret_matches(secret, key.secret_hash):
        return None
    owner = await _active_owner(key.customer_id)
    if owner is None or not owner.toggles.api_access:
        return None
    at = now()
    cutoff = at - LAST_USED_RESOLUTION
    if key.last_used_at is None or key.last_used_at <= cutoff:
        # Conditional, so of concurrent requests in the same minute only one changes the row.
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=cutoff)
        await ApiKey.filter(stale, id=key.id).update(last_used_at=at)
    permissions = frozenset(key.permissions)
    return Viewer(
        # A key acts as its customer; its permissions narrow what it may run (domain.access.policy).
        role=Role.CUSTOMER_ADMIN,
        partner_id=owner.customer.partner_id,
        customer_id=key.customer_id,
        api_key_id=key.id,
        api_permissions=permissions,
        rate_limit_per_minute=rate_limit_of(key),
        label=f"API key {key.prefix}… ({key.name})",
        ip=base.ip,
        user_agent=base.user_agent,
        request_id=base.request_id,
    )


async def authenticate_embed_token(token: str, base: Viewer) -> Viewer | None:
    parts = _split(token, EMBED_TOKEN_PREFIX)
    if parts is None:
        return None
    token_id, secret = parts
    row = await EmbedToken.get_or_none(id=token_id, revoked_at=None)
    if row is None or row.expires_at <= now() or not _secret_matches(secret, row.secret_hash):
        return None
    owner = await _active_owner(row.customer_id)
    if owner is None or not embeds_enabled(owner.toggles):
        return None
    return Viewer(
        role=Role.CUSTOMER_MEMBER,
        partner_id=owner.customer.partner_id,
        customer_id=row.customer_id,
        embed_token_id=row.id,
        embed_sections=frozenset(row.sections),
        label=f"embed token {row.id}",
        credential_expires_at=row.expires_at,
        ip=base.ip,
        user_agent=base.user_agent,
        request_id=base.request_id,
    )


# --- managing --------------------------------------------------------------------------------------------------------


def require_access_manager(viewer: Viewer, customer: Customer) -> None:
    """Platform admins, the customer's partner admins and the customer's own admins (after a visibility check).

    An API key acts as a customer admin; the permission it needs for these operations (ADMIN) is checked
    with every other operation's in `domain.access.policy`. An embed token never manages anything.
    """
    if viewer.embed_token_id is not None:
        raise forbidden("Embed tokens cannot manage access.")
    if viewer.is_platform_admin:
        return
    if viewer.is_partner_admin and viewer.partner_id == customer.partner_id:
        return
    if viewer.is_customer_admin and viewer.customer_id == customer.id:
        return
    raise forbidden("Only partner administrators or the customer's administrators can manage access.")


async def _managed_customer(viewer: Viewer, customer_id: int) -> Customer:
    customer = await get_visible(Customer, viewer, customer_id, field="customer_id")
    require_access_manager(viewer, customer)
    return customer


def _distinct(v: Validator, field: str, values: Iterable[E], enum_type: type[E]) -> list[E]:
    """Distinct values in the enum's order; none at all is an error."""
    chosen = set(values)
    if not chosen:
        v.add(field, "Choose at least one.", ErrorCode.REQUIRED)
    return [m for m in enum_type if m in chosen]


@dataclass(slots=True)
class ApiKeyIssued:
    api_key: ApiKey
    secret: str  # the full `pd_live_<id>_<secret><checksum>` key, shown once


async def api_key_create(viewer: Viewer, command: ApiKeyCreate) -> ApiKeyIssued:
    customer = await _managed_customer(viewer, command.customer_id)
    await refuse_if_demo(customer.id, "have API keys", "customer_id")
    v = Validator()
    clean_name = v.text("name", command.name, required=True, max_length=100)
    chosen = [p.value for p in _distinct(v, "permissions", command.permissions, ApiPermission)]
    ceiling = await package_tier(customer.id)
    tier = command.tier or ceiling or ApiTier.STANDARD
    rate_limit_per_minute = command.rate_limit_per_minute
    if ceiling is not None and TIER_ORDER.index(tier) > TIER_ORDER.index(ceiling):
        v.add("tier", f"The customer's package gives API keys up to the {ceiling.value} tier.", ErrorCode.NOT_ELIGIBLE)
    limit: int | None = None
    if tier == ApiTier.ENTERPRISE:
        if rate_limit_per_minute is None or not 1 <= rate_limit_per_minute <= MAX_CUSTOM_LIMIT:
            v.add(
                "rate_limit_per_minute",
                f"An ENTERPRISE key needs a limit between 1 and {MAX_CUSTOM_LIMIT:,} requests per minute.",
            )
        else:
            limit = rate_limit_per_minute
    elif rate_limit_per_minute is not None:
        v.add("rate_limit_per_minute", "Only ENTERPRISE keys have a custom limit.")
    v.raise_if_invalid()
    toggles = (await toggles_of([customer.id]))[customer.id]
    if not toggles.api_access:
        raise DomainError.single(
            ErrorCode.REQUIRES_FEATURE, "Turn on API access for this customer first.", "customer_id"
        )
    secret = new_key_secret()
    async with in_transaction():
        key = await ApiKey.create(
            customer_id=customer.id,
            partner_id=customer.partner_id,
            name=clean_name,
            prefix="",
            secret_hash=_digest(secret),
            permissions=chosen,
            tier=tier,
            rate_limit_per_minute=limit,
            created_by_user_id=viewer.user_id,
        )
        key.prefix = f"{API_KEY_PREFIX}{key.id}_{secret[:4]}"
        await key.save(update_fields=["prefix"])
        await record(
            viewer,
            AuditEventType.SECURITY,
            "api_key.create",
            object_type="ApiKey",
            object_id=key.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"name": clean_name, "prefix": key.prefix, "permissions": chosen, "tier": tier.value}
            | ({"rate_limit_per_minute": limit} if limit else {}),
        )
    return ApiKeyIssued(key, api_key_of(key.id, secret))


async def _revoke(viewer: Viewer, model: type[R], pk: int, field: str, action: str) -> R:
    """Revokes a key or token at once (every later request with it answers 401); again changes nothing."""
    row = await get_visible(model, viewer, pk, field=field)
    require_access_manager(viewer, await Customer.get(id=row.customer_id))
    async with in_transaction():
        row = await model.select_for_update().get(id=row.id)
        if row.revoked_at is None:
            row.revoked_at = now()
            await row.save(update_fields=["revoked_at"])
            await events.emit(events.ACCESS_REVOKED, customer_id=row.customer_id, partner_id=row.partner_id)
            details: JsonObject = (
                {"name": row.name, "prefix": row.prefix}
                if isinstance(row, ApiKey)
                else {"sections": list(row.sections)}
            )
            await record(
                viewer,
                AuditEventType.SECURITY,
                action,
                object_type=model.__name__,
                object_id=row.id,
                partner_id=row.partner_id,
                customer_id=row.customer_id,
                details=details,
            )
    return row


async def revoke_credentials_of_customer(customer_id: int) -> tuple[int, int]:
    """Revokes every API key and embed token of the customer still in force: (keys, tokens). Call inside the
    disabling transaction. Enabling the customer again brings none of them back: a credential handed out before
    the disable (to an integration, a page) stays dead, and the customer's admins issue new ones."""
    at = now()
    keys = await ApiKey.filter(customer_id=customer_id, revoked_at=None).update(revoked_at=at)
    tokens = await EmbedToken.filter(customer_id=customer_id, revoked_at=None).update(revoked_at=at)
    return keys, tokens


async def api_key_revoke(viewer: Viewer, command: ApiKeyRevoke) -> ApiKey:
    return await _revoke(viewer, ApiKey, command.api_key_id, "api_key_id", "api_key.revoke")


async def api_keys_of(viewer: Viewer, customer_id: int) -> QuerySet[ApiKey]:
    """A customer's keys (revoked ones included), for paginating."""
    customer = await _managed_customer(viewer, customer_id)
    return restrict(ApiKey, viewer).filter(customer_id=customer.id)


@dataclass(slots=True)
class EmbedTokenIssued:
    embed_token: EmbedToken
    token: str  # the full `pd_embed_<id>_<secret>` token, shown once
    url: str


def embed_url(token: str) -> str:
    return f"{config().public_url.rstrip('/')}{EMBED_PATH}?token={quote(token, safe='')}"


async def embed_token_create(viewer: Viewer, command: EmbedTokenCreate) -> EmbedTokenIssued:
    customer = await _managed_customer(viewer, command.customer_id)
    v = Validator()
    chosen = [s.value for s in _distinct(v, "sections", command.sections, EmbedSection)]
    if not EMBED_MIN_SECONDS <= command.expires_in_seconds <= EMBED_MAX_SECONDS:
        v.add(
            "expires_in_seconds",
            f"Must be between {EMBED_MIN_SECONDS} seconds and {EMBED_MAX_SECONDS // 86400} days.",
        )
    v.raise_if_invalid()
    toggles = (await toggles_of([customer.id]))[customer.id]
    if not embeds_enabled(toggles):
        raise DomainError.single(
            ErrorCode.REQUIRES_FEATURE,
            "Turn on the customer portal and embed URLs for this customer first.",
            "customer_id",
        )
    secret = secrets.token_urlsafe(32)
    at = now()
    async with in_transaction():
        row = await EmbedToken.create(
            customer_id=customer.id,
            partner_id=customer.partner_id,
            secret_hash=_digest(secret),
            sections=chosen,
            created_by_user_id=viewer.user_id,
            expires_at=at + timedelta(seconds=command.expires_in_seconds),
        )
        await record(
            viewer,
            AuditEventType.SECURITY,
            "embed_token.create",
            object_type="EmbedToken",
            object_id=row.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"sections": chosen, "expires_at": row.expires_at.isoformat()},
        )
    token = f"{EMBED_TOKEN_PREFIX}{row.id}_{secret}"
    return EmbedTokenIssued(row, token, embed_url(token))


async def embed_token_revoke(viewer: Viewer, command: EmbedTokenRevoke) -> EmbedToken:
    return await _revoke(viewer, EmbedToken, command.embed_token_id, "embed_token_id", "embed_token.revoke")


async def embed_tokens_of(viewer: Viewer, customer_id: int) -> QuerySet[EmbedToken]:
    customer = await _managed_customer(viewer, customer_id)
    return restrict(EmbedToken, viewer).filter(customer_id=customer.id)
