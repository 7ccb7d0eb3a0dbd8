"""The write operations on campaigns, as typed commands (see domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.common.commands import CustomerId


@dataclass(frozen=True, slots=True)
class CampaignCreate:
    customer_id: CustomerId
    name: str
