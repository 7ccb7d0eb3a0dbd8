"""The write operations on knowledge-base storage, as typed commands (see domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.common.commands import CustomerId, PartnerId


@dataclass(frozen=True, slots=True)
class PartnerStoragePurchase:
    """Gigabytes bought for the partner's pool at $8/GB, charged to its USD account; platform admins name the
    partner, partner admins buy for their own."""

    gigabytes: int
    idempotency_key: str
    partner_id: PartnerId | None = None


@dataclass(frozen=True, slots=True)
class CustomerStorageAllocate:
    """The customer's whole allocation, in megabytes (a total, so a retry changes nothing)."""

    customer_id: CustomerId
    megabytes: int


@dataclass(frozen=True, slots=True)
class StorageUsageRecord:
    """The megabytes the customer's knowledge base uses now, as the platform measured them."""

    customer_id: CustomerId
    used_mb: int
