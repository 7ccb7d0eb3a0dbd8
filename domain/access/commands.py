"""The write operations on a customer's machine access (API keys, embed tokens), as typed commands (see
domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from domain.access.models import ApiPermission, ApiTier, EmbedSection
from domain.common.commands import CustomerId, Ref

ApiKeyId = Annotated[int, Ref("ApiKey")]
EmbedTokenId = Annotated[int, Ref("EmbedToken")]


@dataclass(frozen=True, slots=True)
class ApiKeyCreate:
    """A key acting as the customer with these permissions; only an ENTERPRISE key has its own per-minute limit.
    Without a tier, the key gets the rate tier of the customer's package (STANDARD without one)."""

    customer_id: CustomerId
    name: str
    permissions: list[ApiPermission]
    tier: ApiTier | None = None
    rate_limit_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyRevoke:
    api_key_id: ApiKeyId


@dataclass(frozen=True, slots=True)
class EmbedTokenCreate:
    """A read-only token for some dashboard sections, expiring after `expires_in_seconds`."""

    customer_id: CustomerId
    sections: list[EmbedSection]
    expires_in_seconds: int


@dataclass(frozen=True, slots=True)
class EmbedTokenRevoke:
    embed_token_id: EmbedTokenId
