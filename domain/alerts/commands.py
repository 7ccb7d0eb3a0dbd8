"""The write operation on billing alerts, as a typed command (see domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from domain.common.commands import Ref

AlertId = Annotated[int, Ref("Alert")]


@dataclass(frozen=True, slots=True)
class AlertRetry:
    """Sends a FAILED alert again, to the customer's current recipients."""

    alert_id: AlertId
