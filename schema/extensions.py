"""Execution guards from DESIGN.md §3: depth ≤ 12, aliases ≤ 30, tokens ≤ 5,000, unexpected errors masked."""

from __future__ import annotations

from typing import Any

import structlog
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from domain.errors import DomainError

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 5000

log = structlog.get_logger("partnerdesk.graphql")


def _is_unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, DomainError)


class MaskUnexpectedErrors(MaskErrors):
    """Hides unexpected exceptions behind a message carrying the request id, and logs them with it.

    Validation errors and DomainErrors raised by queries stay readable.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        request_id = getattr(self.execution_context.context, "request_id", "")
        log.error("unexpected_error", request_id=request_id, path=error.path, exc_info=error.original_error)
        return GraphQLError(
            message=f"Unexpected error. Quote request id {request_id} to support.",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        )


def default_extensions() -> list[Any]:
    return [
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        MaskUnexpectedErrors,
    ]
