"""The write operation on demo mode, as a typed command."""

from __future__ import annotations

from dataclasses import dataclass

from domain.common.commands import CustomerId


@dataclass(frozen=True, slots=True)
class CustomerDemoModeSet:
    customer_id: CustomerId
    enabled: bool
