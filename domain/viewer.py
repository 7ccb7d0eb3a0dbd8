"""Who is asking: the authenticated principal and the organization it acts in, plus request metadata for audit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from domain.accounts.models import CUSTOMER_ROLES, PARTNER_ROLES, Role


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: int | None = None
    session_id: int | None = None
    membership_id: int | None = None
    role: Role | None = None
    partner_id: int | None = None
    customer_id: int | None = None
    api_key_id: int | None = None
    # an API key's ApiPermission values and its requests per minute (None: not an API key)
    api_permissions: frozenset[str] = frozenset()
    rate_limit_per_minute: int | None = None
    # an embed token reads only these EmbedSection values of its customer
    embed_token_id: int | None = None
    embed_sections: frozenset[str] = frozenset()
    label: str | None = None
    # when the session or embed token behind this viewer expires (None: no expiry of its own)
    credential_expires_at: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str = ""

    @classmethod
    def anonymous(cls, *, ip: str | None = None, user_agent: str | None = None, request_id: str = "") -> Viewer:
        return cls(ip=ip, user_agent=user_agent, request_id=request_id)

    @classmethod
    def system(cls, label: str = "system", request_id: str = "") -> Viewer:
        """Jobs and CLI commands act with platform rights."""
        return cls(role=Role.PLATFORM_ADMIN, label=label, request_id=request_id)

    def with_request(self, *, ip: str | None, user_agent: str | None, request_id: str) -> Viewer:
        return replace(self, ip=ip, user_agent=user_agent, request_id=request_id)

    @property
    def is_authenticated(self) -> bool:
        return self.role is not None

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    @property
    def is_partner_staff(self) -> bool:
        return self.role in PARTNER_ROLES

    @property
    def is_partner_admin(self) -> bool:
        return self.role is Role.PARTNER_ADMIN

    @property
    def is_customer_user(self) -> bool:
        return self.role in CUSTOMER_ROLES

    @property
    def is_customer_admin(self) -> bool:
        return self.role is Role.CUSTOMER_ADMIN

    @property
    def is_machine(self) -> bool:
        """An API key or an embed token rather than a person's session."""
        return self.api_key_id is not None or self.embed_token_id is not None
