"""Customers: the businesses a partner sells to."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from tortoise import fields, models

if TYPE_CHECKING:
    from domain.partners.models import Partner


class CustomerStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class ServiceState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED_CAP = "PAUSED_CAP"


class Customer(models.Model):
    id = fields.IntField(primary_key=True)
    partner: fields.ForeignKeyRelation[Partner] = fields.ForeignKeyField(
        "models.Partner", related_name="customers", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=200)
    status = fields.CharEnumField(CustomerStatus, default=CustomerStatus.ACTIVE, max_length=16, db_index=True)
    service_state = fields.CharEnumField(ServiceState, default=ServiceState.ACTIVE, max_length=16)
    disabled_at = fields.DatetimeField(null=True)
    phone = fields.CharField(max_length=32, default="")
    country = fields.CharField(max_length=100, default="")
    state = fields.CharField(max_length=100, default="")
    city = fields.CharField(max_length=100, default="")
    zip = fields.CharField(max_length=20, default="")
    address1 = fields.CharField(max_length=200, default="")
    address2 = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    partner_id: int

    class Meta:
        table = "customer"
        indexes = (("partner_id", "id"),)

    def __str__(self) -> str:
        return self.name
