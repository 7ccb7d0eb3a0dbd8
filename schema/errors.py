"""Typed mutation errors: one error type per domain, all sharing the `ErrorCode` enum and the `Error` interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import strawberry

from domain.errors import ErrorCode as DomainErrorCode
from domain.errors import FieldError

ErrorCode = strawberry.enum(DomainErrorCode, name="ErrorCode", description="Why a mutation was refused.")


@strawberry.interface(description="A validation, permission or business-rule failure of a mutation.")
class Error:
    field: str | None = strawberry.field(description="The input field at fault (camelCase), or null.")
    message: str
    code: ErrorCode  # type: ignore[valid-type]

    @classmethod
    def list(cls, errors: Sequence[FieldError]) -> list[Self]:
        return [cls(field=e.field, message=e.message, code=e.code) for e in errors]


@strawberry.type
class AccountError(Error):
    pass


@strawberry.type
class PartnerError(Error):
    pass


@strawberry.type
class CustomerError(Error):
    pass


@strawberry.type
class FeatureError(Error):
    pass


@strawberry.type
class BillingError(Error):
    pass


@strawberry.type
class UsageError(Error):
    pass


@strawberry.type
class ReportError(Error):
    pass


@strawberry.type
class AccessError(Error):
    pass


@strawberry.type
class PackageError(Error):
    pass


@strawberry.type
class WebhookError(Error):
    pass
