"""Demo customers (seed 001 "Demo Mode"): which customers are demos and when their sample data was last laid."""

from __future__ import annotations

from tortoise import fields, models


class DemoState(models.Model):
    customer_id = fields.IntField(primary_key=True)
    enabled = fields.BooleanField(default=False)
    # each reset lays the sample anew under a new epoch (idempotency keys, retired ledger accounts)
    epoch = fields.IntField(default=0)
    last_reset_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "demo_state"
