"""Knowledge-base storage (seed 000): each partner's pool of purchased megabytes, and each customer's allocation
from it with the megabytes it uses."""

from __future__ import annotations

from tortoise import fields, models


class PartnerStorage(models.Model):
    """A partner's storage pool: what it bought (`total_mb`) and what its customers hold of it (`allocated_mb`).

    The row is the lock every change of the pool takes, so allocations never over-commit it."""

    partner_id = fields.IntField(primary_key=True)
    total_mb = fields.BigIntField(default=0)
    allocated_mb = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "partner_storage"


class CustomerStorage(models.Model):
    """A customer's allocation from its partner's pool, the part its package gave, and what it uses."""

    customer_id = fields.IntField(primary_key=True)
    partner_id = fields.IntField()
    allocated_mb = fields.BigIntField(default=0)
    # of `allocated_mb`, the megabytes the package in force gave (returned to the pool when the package ends)
    package_mb = fields.BigIntField(default=0)
    used_mb = fields.BigIntField(default=0)
    used_reported_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "customer_storage"
        indexes = (("partner_id", "customer_id"),)
