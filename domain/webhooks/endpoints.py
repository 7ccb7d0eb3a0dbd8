"""Registering, changing, rotating and removing webhook endpoints, and reading their deliveries.

Partner admins (and platform admins, naming the partner) own partner endpoints, which receive the events of every
customer of the partner; a customer admin whose customer has API access owns endpoints for that customer only.
Partner staff may read them all. The signing secret (`whsec_…`) is shown once, when created or rotated.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.common.commands import UNSET
from domain.common.validation import Validator
from domain.config import config
from domain.errors import DomainError, ErrorCode, forbidden
from domain.features.services import toggles_of
from domain.partners.models import Partner
from domain.viewer import Viewer
from domain.visibility import get_visible, restrict
from domain.webhooks import delivery
from domain.webhooks.catalog import EVENT_TYPES
from domain.webhooks.commands import (
    WebhookEndpointCreate,
    WebhookEndpointDelete,
    WebhookEndpointSecretRotate,
    WebhookEndpointUpdate,
    WebhookRedeliver,
)
from domain.webhooks.models import DeliveryState, EndpointStatus, WebhookDelivery, WebhookEndpoint
from domain.webhooks.sender import check_url

PREVIOUS_SECRET_GRACE = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _check_url(v: Validator, field: str, value: object) -> str | None:
    url = v.text(field, value, required=True, max_length=2000)
    if url is None:
        return None
    problem = check_url(url, allow_private=config().is_dev)
    if problem:
        v.add(field, problem)
        return None
    return url


def _check_event_types(v: Validator, field: str, value: list[str]) -> list[str]:
    chosen = list(dict.fromkeys(value))
    if not chosen:
        v.add(field, "Choose at least one event type.", ErrorCode.REQUIRED)
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        v.add(field, f"Unknown event type: {unknown[0][:60]}.")
    return chosen


def _can_manage(viewer: Viewer, endpoint: WebhookEndpoint) -> bool:
    if viewer.is_platform_admin or viewer.is_partner_admin:
        return True
    return viewer.is_customer_admin and endpoint.customer_id == viewer.customer_id


async def _owner(viewer: Viewer, command: WebhookEndpointCreate) -> tuple[int, int | None]:
    """(partner id, customer id or None) of a new endpoint, from who asks."""
    if viewer.is_platform_admin:
        if command.partner_id is None:
            raise DomainError.single(ErrorCode.REQUIRED, "Choose the partner.", "partner_id")
        partner = await get_visible(Partner, viewer, command.partner_id, field="partner_id")
        return partner.id, None
    if command.partner_id is not None and command.partner_id != viewer.partner_id:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Partner not found.", "partner_id")
    if viewer.is_partner_admin and viewer.partner_id is not None:
        return viewer.partner_id, None
    if viewer.is_customer_admin and viewer.customer_id is not None and viewer.partner_id is not None:
        toggles = (await toggles_of([viewer.customer_id]))[viewer.customer_id]
        if not toggles.api_access:
            raise DomainError.single(ErrorCode.REQUIRES_FEATURE, "Webhooks need the API Access add-on.")
        return viewer.partner_id, viewer.customer_id
    raise forbidden("Only partner admins and customer admins with API access can manage webhooks.")


async def _audit(viewer: Viewer, action: str, endpoint: WebhookEndpoint, details: dict[str, object]) -> None:
    await record(
        viewer,
        AuditEventType.INTEGRATION,
        action,
        object_type="WebhookEndpoint",
        object_id=endpoint.id,
        partner_id=endpoint.partner_id,
        customer_id=endpoint.customer_id,
        details={"url": endpoint.url, **details},  # type: ignore[dict-item]
    )


async def webhook_endpoint_create(viewer: Viewer, command: WebhookEndpointCreate) -> EndpointWithSecret:
    partner_id, customer_id = await _owner(viewer, command)
    v = Validator()
    url = _check_url(v, "url", command.url)
    event_types = _check_event_types(v, "event_types", command.event_types)
    description = v.text("description", command.description, max_length=500) or ""
    v.raise_if_invalid()
    assert url is not None
    secret = new_secret()
    async with in_transaction():
        await Partner.select_for_update().get(id=partner_id)  # counts endpoints one creation at a time
        owned = WebhookEndpoint.filter(partner_id=partner_id, customer_id=customer_id, deleted_at=None)
        if await owned.count() >= config().webhook_max_endpoints_per_owner:
            raise DomainError.single(
                ErrorCode.QUOTA_EXCEEDED, f"At most {config().webhook_max_endpoints_per_owner} endpoints.", "url"
            )
        endpoint = await WebhookEndpoint.create(
            partner_id=partner_id,
            customer_id=customer_id,
            url=url,
            description=description,
            event_types=event_types,
            secret=secret,
            created_by_user_id=viewer.user_id,
        )
        await _audit(viewer, "webhook_endpoint.create", endpoint, {"event_types": event_types})
    return EndpointWithSecret(endpoint, secret)


async def _managed(viewer: Viewer, endpoint_id: int) -> WebhookEndpoint:
    """A live endpoint the viewer may change, locked (call inside a transaction)."""
    endpoint = await restrict(WebhookEndpoint, viewer).filter(id=endpoint_id, deleted_at=None).first()
    if endpoint is None:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Webhook endpoint not found.", "webhook_endpoint_id")
    if not _can_manage(viewer, endpoint):
        raise forbidden("Only the endpoint's admins can change it.")
    return await WebhookEndpoint.select_for_update().get(id=endpoint.id)


async def webhook_endpoint_update(viewer: Viewer, command: WebhookEndpointUpdate) -> WebhookEndpoint:
    v = Validator()
    url = _check_url(v, "url", command.url) if command.url is not UNSET else None
    event_types = (
        _check_event_types(v, "event_types", command.event_types) if command.event_types is not UNSET else None
    )
    description = v.text("description", command.description, max_length=500) if command.description else ""
    v.raise_if_invalid()
    async with in_transaction():
        endpoint = await _managed(viewer, command.webhook_endpoint_id)
        changed: dict[str, object] = {}
        if url is not None and url != endpoint.url:
            endpoint.url = changed["url"] = url
        if event_types is not None and event_types != endpoint.event_types:
            endpoint.event_types = event_types
            changed["event_types"] = event_types
        if command.description is not UNSET and (description or "") != endpoint.description:
            endpoint.description = changed["description"] = description or ""
        if command.enabled is not UNSET:
            status = EndpointStatus.ENABLED if command.enabled else EndpointStatus.DISABLED
            if status != endpoint.status:
                endpoint.status = status
                endpoint.disabled_reason = "" if command.enabled else "Disabled by an admin."
                endpoint.failing_since = None
                endpoint.disabled_notice_sent_at = None
                changed["status"] = str(status)
        if changed:
            await endpoint.save()
            await _audit(viewer, "webhook_endpoint.update", endpoint, {"changes": list(changed)})
        if endpoint.status == EndpointStatus.ENABLED:
            await delivery.dispatch(endpoint.id)
    return endpoint


async def webhook_endpoint_delete(viewer: Viewer, command: WebhookEndpointDelete) -> WebhookEndpoint:
    """Stops the endpoint for good; its waiting deliveries fail. Its delivery log stays readable to nobody."""
    async with in_transaction():
        endpoint = await _managed(viewer, command.webhook_endpoint_id)
        endpoint.deleted_at = datetime.now(UTC)
        endpoint.status = EndpointStatus.DISABLED
        endpoint.disabled_reason = "Deleted."
        await endpoint.save(update_fields=["deleted_at", "status", "disabled_reason", "updated_at"])
        await WebhookDelivery.filter(endpoint_id=endpoint.id, state=DeliveryState.WAITING).update(
            state=DeliveryState.FAILED, last_error="The endpoint was deleted.", completed_at=endpoint.deleted_at
        )
        await _audit(viewer, "webhook_endpoint.delete", endpoint, {})
    return endpoint


async def webhook_endpoint_secret_rotate(viewer: Viewer, command: WebhookEndpointSecretRotate) -> EndpointWithSecret:
    secret = new_secret()
    async with in_transaction():
        endpoint = await _managed(viewer, command.webhook_endpoint_id)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = datetime.now(UTC) + PREVIOUS_SECRET_GRACE
        endpoint.secret = secret
        await endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
        await _audit(viewer, "webhook_endpoint.secret_rotate", endpoint, {})
    return EndpointWithSecret(endpoint, secret)


async def webhook_redeliver(viewer: Viewer, command: WebhookRedeliver) -> WebhookDelivery:
    found = await restrict(WebhookDelivery, viewer).get_or_none(id=command.delivery_id)
    if found is None:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Delivery not found.", "delivery_id")
    async with in_transaction():
        endpoint = await _managed_or_not_found(viewer, found.endpoint_id)
        if endpoint.status != EndpointStatus.ENABLED:
            raise DomainError.single(ErrorCode.NOT_ELIGIBLE, "Enable the endpoint first.", "delivery_id")
        row = await delivery.restart(found.id)
        await _audit(viewer, "webhook.redeliver", endpoint, {"delivery_id": row.id, "event_type": row.event_type})
        await delivery.dispatch(endpoint.id)
    return row


async def _managed_or_not_found(viewer: Viewer, endpoint_id: int) -> WebhookEndpoint:
    try:
        return await _managed(viewer, endpoint_id)
    except DomainError as exc:
        raise DomainError.single(exc.errors[0].code, exc.errors[0].message, "delivery_id") from None


# ---------------------------------------------------------------- reads


def endpoints_of(viewer: Viewer, customer_id: int | None = None) -> QuerySet[WebhookEndpoint]:
    """The live endpoints the viewer may see (of one customer, when given), for the API layer to paginate."""
    qs = restrict(WebhookEndpoint, viewer).filter(deleted_at=None)
    return qs.filter(customer_id=customer_id) if customer_id is not None else qs


async def deliveries_of(
    viewer: Viewer, endpoint_id: int, status: str | None = None, event_type: str | None = None
) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries (NOT_FOUND beyond the viewer's reach), filtered by API status and event type."""
    endpoint = await endpoints_of(viewer).get_or_none(id=endpoint_id)
    if endpoint is None:
        raise DomainError.single(ErrorCode.NOT_FOUND, "Webhook endpoint not found.", "endpoint_id")
    qs = restrict(WebhookDelivery, viewer).filter(endpoint_id=endpoint.id)
    if status is not None:
        qs = qs.filter(state__in=delivery.STATES_OF[status])
    if event_type is not None:
        qs = qs.filter(event_type=event_type)
    return qs
