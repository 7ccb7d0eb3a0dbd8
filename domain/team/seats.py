"""Seats of a customer's team (seed 004 "Setting User Counts"): its active members plus its pending invitations,
never more than the seat limit (the `max_team_members` feature, set from a package's user count).

Every change that takes a seat, or lowers the limit, holds the customer's feature-toggle row lock while it counts
(`lock_seat_limit`), so concurrent invitations cannot together pass the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.functions import Count

from domain.accounts.models import CUSTOMER_ROLES, Membership
from domain.features.models import FeatureToggles
from domain.team.models import Invitation


def now() -> datetime:
    return datetime.now(UTC)


def pending_invitations(at: datetime | None = None) -> dict[str, object]:
    """Filter arguments of invitations still waiting (not accepted, revoked or expired)."""
    return {"accepted_at__isnull": True, "revoked_at__isnull": True, "expires_at__gt": at or now()}


async def lock_seat_limit(customer_id: int) -> int:
    """Locks the customer's toggles row (creating the defaults first) and returns its seat limit. Call inside the
    transaction that takes or frees seats; `customer_features_update` locks the same row."""
    await FeatureToggles.bulk_create([FeatureToggles(customer_id=customer_id)], ignore_conflicts=True)
    toggles = await FeatureToggles.select_for_update().get(customer_id=customer_id)
    return toggles.max_team_members


async def seats_taken(customer_id: int, at: datetime | None = None) -> int:
    """Active members of the customer plus its pending invitations."""
    members = await Membership.filter(
        customer_id=customer_id, role__in=list(CUSTOMER_ROLES), user__is_active=True
    ).count()
    pending = await Invitation.filter(customer_id=customer_id, **pending_invitations(at)).count()
    return members + pending


@dataclass(frozen=True, slots=True)
class Seats:
    customer_id: int
    limit: int
    members: int
    pending: int

    @property
    def available(self) -> int:
        return max(self.limit - self.members - self.pending, 0)


async def seats_of(customer_ids: list[int]) -> dict[int, Seats]:
    """Seat counts of many customers in three queries (DataLoader batch)."""
    limits = dict(
        await FeatureToggles.filter(customer_id__in=customer_ids).values_list("customer_id", "max_team_members")
    )
    members = dict(
        await Membership.filter(customer_id__in=customer_ids, role__in=list(CUSTOMER_ROLES), user__is_active=True)
        .annotate(n=Count("id"))
        .group_by("customer_id")
        .values_list("customer_id", "n")
    )
    pending = dict(
        await Invitation.filter(customer_id__in=customer_ids, **pending_invitations())
        .annotate(n=Count("id"))
        .group_by("customer_id")
        .values_list("customer_id", "n")
    )
    default = FeatureToggles(customer_id=0).max_team_members
    return {cid: Seats(cid, limits.get(cid, default), members.get(cid, 0), pending.get(cid, 0)) for cid in customer_ids}
