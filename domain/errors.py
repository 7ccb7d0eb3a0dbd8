"""Typed failures of domain services.

A service raises `DomainError` (its transaction rolls back) with one or more `FieldError`s; resolvers turn them
into the mutation payload's `errors` list. Field names are Python names; the API layer camel-cases them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class ErrorCode(enum.StrEnum):
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    INVALID = "INVALID"
    REQUIRED = "REQUIRED"
    UNIQUE = "UNIQUE"
    WEAK_PASSWORD = "WEAK_PASSWORD"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    ACCOUNT_LOCKED = "ACCOUNT_LOCKED"  # no longer answered (sign-in is throttled, never locked); kept for clients
    ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
    INVALID_TOTP = "INVALID_TOTP"
    RATE_LIMITED = "RATE_LIMITED"
    REQUIRES_FEATURE = "REQUIRES_FEATURE"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    CAP_REACHED = "CAP_REACHED"
    SERVICE_PAUSED = "SERVICE_PAUSED"
    SEATS_EXHAUSTED = "SEATS_EXHAUSTED"
    POOL_EXHAUSTED = "POOL_EXHAUSTED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"  # a per-customer limit (queued exports, report schedules) is reached
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    EVENT_TOO_OLD = "EVENT_TOO_OLD"
    EVENT_IN_FUTURE = "EVENT_IN_FUTURE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"  # no card payment provider (the manual provider)
    PROVIDER_ERROR = "PROVIDER_ERROR"  # the payment provider refused or could not be reached; try again
    # Codes of the transport (HTTP, WebSocket, the GraphQL engine), never raised by services: listed here so that
    # every code a client can receive is in the one `ErrorCode` enum clients generate types from.
    UNAUTHENTICATED = "UNAUTHENTICATED"
    BAD_REQUEST = "BAD_REQUEST"
    MALFORMED = "MALFORMED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    TIMEOUT = "TIMEOUT"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str | None
    message: str
    code: ErrorCode


class DomainError(Exception):
    """A rule refused the operation; nothing it started is kept."""

    def __init__(self, errors: FieldError | Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = [errors] if isinstance(errors, FieldError) else list(errors)
        super().__init__("; ".join(f"{e.field}: {e.code} {e.message}" for e in self.errors))

    @classmethod
    def single(cls, code: ErrorCode, message: str, field: str | None = None) -> DomainError:
        return cls(FieldError(field, message, code))


def not_found(field: str | None = None, what: str = "Object") -> DomainError:
    return DomainError.single(ErrorCode.NOT_FOUND, f"{what} not found.", field)


def forbidden(message: str = "You are not allowed to do this.", field: str | None = None) -> DomainError:
    return DomainError.single(ErrorCode.FORBIDDEN, message, field)
