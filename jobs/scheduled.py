"""Periodic work, each actor one domain service. Each is idempotent, so a slot run twice (two schedulers, a
redelivery) does no harm."""

from __future__ import annotations

import dataclasses

import dramatiq

from domain.billing.credits import expire_grants
from domain.customers.retention import purge_disabled_customers
from domain.demo.services import reset_demos
from domain.housekeeping import housekeeping as hourly_housekeeping
from domain.partners.domains import verify_due_domains
from domain.storage.metering import meter_storage
from domain.usage.holds import expire_holds
from domain.usage.services import charge_phone_numbers


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def monthly_phone_number_charges() -> int:
    """One PHONE_NUMBER_MONTHS event per active number per calendar month (keyed by number and month)."""
    return (await charge_phone_numbers()).accepted


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def credit_grant_expiry() -> int:
    return await expire_grants()


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def storage_metering() -> int:
    """Yesterday's storage beyond each customer's allocation as one STORAGE_MB event (keyed by customer and day)."""
    return (await meter_storage()).accepted


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def usage_hold_expiry() -> int:
    return await expire_holds()


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def retention() -> int:
    """Deletes customers disabled for 90 days (personal data gone, ledger and audit kept)."""
    return len(await purge_disabled_customers())


@dramatiq.actor(queue_name="scheduled", max_retries=5)
async def housekeeping() -> dict[str, int]:
    """Expired sessions, idempotency records, usage dedup keys past the acceptance window, published outbox rows;
    and next month's usage partition ahead of time. Returns what each purge deleted."""
    return dataclasses.asdict(await hourly_housekeeping())


@dramatiq.actor(queue_name="scheduled", max_retries=2)
async def verify_partner_domains() -> int:
    """Checks partners' pending domains (and re-checks verified ones daily) against their DNS TXT records."""
    return await verify_due_domains()


@dramatiq.actor(queue_name="scheduled", max_retries=3)
async def demo_reset() -> int:
    """Resets every demo customer to its sample state once a night (UTC)."""
    return await reset_demos()
