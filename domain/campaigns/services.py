"""Creating campaigns. A campaign created while the cap holds the customer paused starts paused by the cap."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.transactions import in_transaction

from domain.audit.models import AuditEventType
from domain.audit.services import record
from domain.campaigns.commands import CampaignCreate
from domain.campaigns.models import Campaign, CampaignStatus, PauseReason
from domain.common.validation import Validator
from domain.customers.models import Customer, ServiceState
from domain.viewer import Viewer
from domain.visibility import get_visible, require_customer_manager


async def campaign_create(viewer: Viewer, command: CampaignCreate) -> Campaign:
    customer = await get_visible(Customer, viewer, command.customer_id, field="customer_id")
    require_customer_manager(viewer, customer)
    v = Validator()
    clean = v.text("name", command.name, required=True, max_length=200)
    v.raise_if_invalid()
    async with in_transaction():
        customer = await Customer.select_for_update().get(id=customer.id)
        paused = customer.service_state == ServiceState.PAUSED_CAP
        campaign = await Campaign.create(
            customer_id=customer.id,
            name=clean,
            status=CampaignStatus.PAUSED if paused else CampaignStatus.RUNNING,
            pause_reason=PauseReason.CAP if paused else None,
            paused_at=datetime.now(UTC) if paused else None,
        )
        await record(
            viewer,
            AuditEventType.DATA_CHANGE,
            "campaign.create",
            object_type="Campaign",
            object_id=campaign.id,
            partner_id=customer.partner_id,
            customer_id=customer.id,
            details={"name": clean, "status": str(campaign.status)},
        )
    return campaign
