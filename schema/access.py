"""Machine access to a customer: API keys (secret shown once) and read-only embed tokens for dashboard widgets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry import relay

from domain.access import services
from domain.access.commands import ApiKeyCreate, ApiKeyRevoke, EmbedTokenCreate, EmbedTokenRevoke
from domain.access.models import ApiKey as ApiKeyRow
from domain.access.models import ApiPermission as DomainApiPermission
from domain.access.models import ApiTier as DomainApiTier
from domain.access.models import EmbedSection as DomainEmbedSection
from domain.access.models import EmbedToken as EmbedTokenRow
from resolvers import access as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import AccessError
from schema.nodes import Connection, ModelNode, shows

ApiPermission = strawberry.enum(
    DomainApiPermission,
    name="ApiPermission",
    description="READ runs queries and subscriptions, WRITE creates and updates, DELETE revokes, removes and "
    "disables, ADMIN does everything (including managing API keys and embed tokens).",
)
ApiTier = strawberry.enum(
    DomainApiTier,
    name="ApiTier",
    description="Requests per minute: STANDARD 100, PREMIUM 500, ENTERPRISE the key's own limit.",
)
EmbedSection = strawberry.enum(DomainEmbedSection, name="EmbedSection")


@shows(ApiKeyRow)
@strawberry.type(description="A customer's API key. The key itself is shown once, when created.")
class ApiKey(ModelNode):
    loader = "api_key_by_id"
    id: relay.NodeID[int]
    name: str
    prefix: str = strawberry.field(
        description="The key's start (`pd_live_<id>_` and four characters), to tell keys apart."
    )
    tier: ApiTier  # type: ignore[valid-type]
    rate_limit_per_minute: int | None = strawberry.field(description="Set for ENTERPRISE keys only.")
    created_at: datetime
    last_used_at: datetime | None = strawberry.field(description="Updated at most once a minute.")
    revoked_at: datetime | None
    model: strawberry.Private[Any]

    @strawberry.field
    def permissions(self) -> list[ApiPermission]:  # type: ignore[valid-type]
        return [DomainApiPermission(p) for p in self.model.permissions]

    @strawberry.field(description="Requests per minute this key may make.")
    def requests_per_minute(self) -> int:
        return services.rate_limit_of(self.model)


@shows(EmbedTokenRow)
@strawberry.type(description="A read-only token that embeds some of a customer's dashboard sections elsewhere.")
class EmbedToken(ModelNode):
    loader = "embed_token_by_id"
    id: relay.NodeID[int]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    model: strawberry.Private[Any]

    @strawberry.field
    def sections(self) -> list[EmbedSection]:  # type: ignore[valid-type]
        return [DomainEmbedSection(s) for s in self.model.sections]


@strawberry.input
class ApiKeyCreateInput:
    customer_id: strawberry.ID
    name: str
    permissions: list[ApiPermission]  # type: ignore[valid-type]
    tier: ApiTier | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description="Null or not sent: the rate tier of the customer's package (STANDARD without one); a tier above "
        "the package's is NOT_ELIGIBLE.",
    )
    rate_limit_per_minute: int | None = strawberry.field(
        default=None, description="Requests per minute of an ENTERPRISE key (required for ENTERPRISE, only for it)."
    )


@strawberry.type
class ApiKeyCreatePayload:
    api_key: ApiKey | None
    secret: str | None = strawberry.field(
        description="The full key (`pd_live_<id>_<secret>`) for `Authorization: Bearer`. Shown this once only."
    )
    errors: list[AccessError]


@strawberry.input
class ApiKeyRevokeInput:
    api_key_id: strawberry.ID


@strawberry.type
class ApiKeyRevokePayload:
    api_key: ApiKey | None
    errors: list[AccessError]


@strawberry.input
class EmbedTokenCreateInput:
    customer_id: strawberry.ID
    sections: list[EmbedSection]  # type: ignore[valid-type]
    expires_in_seconds: int = strawberry.field(description="From 60 seconds to 30 days.")


@strawberry.type
class EmbedTokenCreatePayload:
    embed_token: EmbedToken | None
    token: str | None = strawberry.field(description="The bearer token (`pd_embed_<id>_<secret>`), shown once.")
    url: str | None = strawberry.field(description="The embed page with the token, ready for an iframe.")
    errors: list[AccessError]


@strawberry.input
class EmbedTokenRevokeInput:
    embed_token_id: strawberry.ID


@strawberry.type
class EmbedTokenRevokePayload:
    embed_token: EmbedToken | None
    errors: list[AccessError]


@strawberry.type
class AccessQueries:
    @strawberry.field(description="A customer's API keys (revoked ones too), newest first.")
    async def api_keys(
        self, info: Info, customer_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[ApiKey]:
        return Connection.of(await r.api_keys(info.context, customer_id, first, after), ApiKey)

    @strawberry.field(description="A customer's embed tokens (expired and revoked ones too), newest first.")
    async def embed_tokens(
        self, info: Info, customer_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[EmbedToken]:
        return Connection.of(await r.embed_tokens(info.context, customer_id, first, after), EmbedToken)


@strawberry.type
class AccessMutations:
    @strawberry.mutation(description="Issues an API key for a customer with API access; `secret` is shown once.")
    async def api_key_create(self, info: Info, input: ApiKeyCreateInput) -> ApiKeyCreatePayload:
        outcome = await perform(info.context, services.api_key_create, input, ApiKeyCreate)
        issued = outcome.value
        return ApiKeyCreatePayload(
            api_key=ApiKey.maybe(issued.api_key if issued else None),
            secret=issued.secret if issued else None,
            errors=AccessError.list(outcome.errors),
        )

    @strawberry.mutation(description="Revokes an API key at once; revoking it again changes nothing.")
    async def api_key_revoke(self, info: Info, input: ApiKeyRevokeInput) -> ApiKeyRevokePayload:
        outcome = await perform(info.context, services.api_key_revoke, input, ApiKeyRevoke)
        return ApiKeyRevokePayload(api_key=ApiKey.maybe(outcome.value), errors=AccessError.list(outcome.errors))

    @strawberry.mutation(description="Issues a read-only embed token for some dashboard sections of a customer.")
    async def embed_token_create(self, info: Info, input: EmbedTokenCreateInput) -> EmbedTokenCreatePayload:
        outcome = await perform(info.context, services.embed_token_create, input, EmbedTokenCreate)
        issued = outcome.value
        return EmbedTokenCreatePayload(
            embed_token=EmbedToken.maybe(issued.embed_token if issued else None),
            token=issued.token if issued else None,
            url=issued.url if issued else None,
            errors=AccessError.list(outcome.errors),
        )

    @strawberry.mutation(description="Revokes an embed token at once.")
    async def embed_token_revoke(self, info: Info, input: EmbedTokenRevokeInput) -> EmbedTokenRevokePayload:
        outcome = await perform(info.context, services.embed_token_revoke, input, EmbedTokenRevoke)
        return EmbedTokenRevokePayload(
            embed_token=EmbedToken.maybe(outcome.value), errors=AccessError.list(outcome.errors)
        )
