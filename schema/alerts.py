"""Billing alerts (cap reached, 80% of cap, payment failed, low balance, refill processed, low credits)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry import relay

from domain.alerts import services
from domain.alerts.commands import AlertRetry
from domain.alerts.models import AlertKind as DomainAlertKind
from domain.alerts.models import AlertStatus as DomainAlertStatus
from resolvers import alerts as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import BillingError
from schema.nodes import Connection, ModelNode
from schema.scalars import JSON

AlertKind = strawberry.enum(DomainAlertKind, name="AlertKind")
AlertStatus = strawberry.enum(DomainAlertStatus, name="AlertStatus")


@strawberry.type(description="One alert, raised once per crossing, emailed under the partner's brand.")
class Alert(ModelNode):
    loader = "alert_by_id"
    id: relay.NodeID[int]
    kind: AlertKind  # type: ignore[valid-type]
    status: AlertStatus  # type: ignore[valid-type]
    recipients: list[str]
    values: JSON
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None
    model: strawberry.Private[Any]


@strawberry.input
class AlertRetryInput:
    alert_id: strawberry.ID


@strawberry.type
class AlertRetryPayload:
    alert: Alert | None
    errors: list[BillingError]


@strawberry.type
class AlertQueries:
    @strawberry.field(description="A customer's alerts, newest first.")
    async def alerts(
        self, info: Info, customer_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[Alert]:
        return Connection.of(await r.alerts(info.context, customer_id, first, after), Alert)


@strawberry.type
class AlertMutations:
    @strawberry.mutation(description="Sends a FAILED alert again (to the current recipients).")
    async def alert_retry(self, info: Info, input: AlertRetryInput) -> AlertRetryPayload:
        outcome = await perform(info.context, services.alert_retry, input, AlertRetry)
        return AlertRetryPayload(alert=Alert.maybe(outcome.value), errors=BillingError.list(outcome.errors))
