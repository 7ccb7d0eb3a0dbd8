"""Typed mutation errors: one error type per domain, all sharing the `ErrorCode` enum and the `Error` interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import strawberry

from domain.errors import ErrorCode as DomainErrorCode
from domain.errors import FieldError

ErrorCode = strawberry.enum(
    DomainErrorCode,
    name="ErrorCode",
    description="Every code a client can receive: in a payload's `errors[].code`, in a GraphQL error's "
    "`extensions.code`, and in the JSON errors of the HTTP endpoints (docs/api.md, Errors).",
)

# What each code means, shown in the schema (and so in generated client types).
ERROR_CODE_DESCRIPTIONS: dict[DomainErrorCode, str] = {
    DomainErrorCode.NOT_FOUND: "The object does not exist or is outside the caller's reach (never revealed which).",
    DomainErrorCode.FORBIDDEN: "The caller may see the object but not do this (role, API key permission, embed "
    "token section).",
    DomainErrorCode.INVALID: "A value is not acceptable (`field` names it); also a document that does not parse, "
    "validate or coerce.",
    DomainErrorCode.REQUIRED: "A value is missing.",
    DomainErrorCode.UNIQUE: "The value is already taken.",
    DomainErrorCode.WEAK_PASSWORD: "The password does not meet the password policy.",
    DomainErrorCode.INVALID_CREDENTIALS: "Sign-in refused: wrong login or password.",
    DomainErrorCode.ACCOUNT_LOCKED: "No longer sent (sign-in is throttled, never locked); kept for older clients.",
    DomainErrorCode.ACCOUNT_DISABLED: "The account is disabled.",
    DomainErrorCode.INVALID_TOTP: "A TOTP or recovery code is needed, or the one given is wrong or used.",
    DomainErrorCode.RATE_LIMITED: "Too many requests: retry after `retryAfter` / `Retry-After` seconds (HTTP 429).",
    DomainErrorCode.REQUIRES_FEATURE: "A feature this needs is switched off for the customer.",
    DomainErrorCode.NOT_ELIGIBLE: "A business rule does not allow it now (the message says which).",
    DomainErrorCode.INSUFFICIENT_CREDITS: "Not enough AI credits.",
    DomainErrorCode.INSUFFICIENT_BALANCE: "Not enough wallet balance.",
    DomainErrorCode.CAP_REACHED: "The monthly spending cap is reached.",
    DomainErrorCode.SERVICE_PAUSED: "The customer's service is paused.",
    DomainErrorCode.SEATS_EXHAUSTED: "No seat left for another team member or invitation.",
    DomainErrorCode.POOL_EXHAUSTED: "The partner's credit or storage pool is short.",
    DomainErrorCode.QUOTA_EXCEEDED: "A per-customer quota (queued exports, report schedules) is full.",
    DomainErrorCode.IDEMPOTENCY_KEY_REUSED: "The idempotency key was used with a different input.",
    DomainErrorCode.IDEMPOTENCY_KEY_IN_USE: "A request with the same idempotency key is still running.",
    DomainErrorCode.EVENT_TOO_OLD: "A usage event lies before the acceptance window.",
    DomainErrorCode.EVENT_IN_FUTURE: "A usage event lies in the future.",
    DomainErrorCode.LIMIT_EXCEEDED: "A quantity or balance would pass its limit.",
    DomainErrorCode.PROVIDER_NOT_CONFIGURED: "No card payment provider is configured (refills are recorded by staff).",
    DomainErrorCode.PROVIDER_ERROR: "The payment provider refused or could not be reached; try again.",
    DomainErrorCode.UNAUTHENTICATED: "The bearer token is malformed, unknown, expired or revoked (HTTP 401).",
    DomainErrorCode.BAD_REQUEST: "The HTTP request cannot be read (body, parameters, persisted query hash) (400).",
    DomainErrorCode.MALFORMED: "An ingestion body is not a JSON array of events (400).",
    DomainErrorCode.QUERY_TOO_COMPLEX: "The operation is too deep, too large or asks for too much at once.",
    DomainErrorCode.TIMEOUT: "The query ran too long and was stopped (`data` is null).",
    DomainErrorCode.INTERNAL_SERVER_ERROR: "Unexpected: quote `extensions.requestId` to support.",
    DomainErrorCode.METHOD_NOT_ALLOWED: "Mutations need POST (405).",
    DomainErrorCode.NOT_ACCEPTABLE: "`Accept` admits no JSON type this API answers with (406).",
    DomainErrorCode.PAYLOAD_TOO_LARGE: "The body (or batch) is over its limit (413).",
    DomainErrorCode.UNSUPPORTED_MEDIA_TYPE: "Send `Content-Type: application/json` (415).",
    DomainErrorCode.PERSISTED_QUERY_NOT_FOUND: "The persisted query hash is unknown: send the query with its hash "
    "(Apollo APQ does this by itself).",
    DomainErrorCode.PERSISTED_QUERY_NOT_IN_LIST: "This deployment runs only its clients' persisted documents "
    "(PERSISTED_ONLY).",
}
for _value in ErrorCode.__strawberry_definition__.values:  # type: ignore[attr-defined]
    _value.description = ERROR_CODE_DESCRIPTIONS[DomainErrorCode(_value.value)]


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
