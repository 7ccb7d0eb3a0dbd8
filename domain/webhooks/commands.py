"""The write operations on webhook endpoints and deliveries, as typed commands (domain/common/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from domain.common.commands import UNSET, PartnerId, Patch, Ref

WebhookEndpointId = Annotated[int, Ref("WebhookEndpoint")]
WebhookDeliveryId = Annotated[int, Ref("WebhookDelivery")]


@dataclass(frozen=True, slots=True)
class WebhookEndpointCreate:
    """A partner admin registers an endpoint for the partner's customers' events; a customer admin (with API
    access) one for its own customer. Platform admins name the partner."""

    url: str
    event_types: list[str]
    description: str | None = None
    partner_id: PartnerId | None = None


@dataclass(frozen=True, slots=True)
class WebhookEndpointUpdate:
    webhook_endpoint_id: WebhookEndpointId
    url: Patch[str] = UNSET
    event_types: Patch[list[str]] = UNSET
    description: Patch[str | None] = UNSET
    enabled: Patch[bool] = UNSET


@dataclass(frozen=True, slots=True)
class WebhookEndpointDelete:
    webhook_endpoint_id: WebhookEndpointId


@dataclass(frozen=True, slots=True)
class WebhookEndpointSecretRotate:
    """A new signing secret; the old one keeps signing too for 24 hours, so receivers can switch over."""

    webhook_endpoint_id: WebhookEndpointId


@dataclass(frozen=True, slots=True)
class WebhookRedeliver:
    """Sends a delivery again (a new retry schedule, the same `webhook-id`)."""

    delivery_id: WebhookDeliveryId
