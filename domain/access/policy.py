"""What an API key or an embed token may run: the one rule, applied to GraphQL root fields and to ingestion.

A person's session is never limited here (roles and visibility decide). For machine tokens:

- API keys: queries and subscriptions need READ; a mutation needs WRITE or DELETE by its verb (the last word of
  its object-first name: `customerCreate` → Create → WRITE, `apiKeyRevoke` → Revoke → DELETE); managing API keys
  and embed tokens needs ADMIN, and so does any verb not classified below (fail closed). ADMIN allows everything
  except the personal mutations of a human account (sign in, password, TOTP…), which no key may run.
- Embed tokens: read-only, one customer, only the sections they were issued for (`embed_may_read`).
"""

from __future__ import annotations

import enum
import re

from domain.access.models import ApiPermission, EmbedSection
from domain.viewer import Viewer


class OperationKind(enum.StrEnum):
    QUERY = "query"
    MUTATION = "mutation"
    SUBSCRIPTION = "subscription"


WRITE_VERBS = frozenset(
    {
        "Create",
        "Update",
        "Add",
        "Set",
        "Assign",
        "Allocate",
        "Purchase",
        "Recharge",
        "Reclaim",
        "Refill",
        "Record",
        "Authorize",
        "Retry",
        "Invite",
        "Enable",
    }
)
DELETE_VERBS = frozenset({"Revoke", "Remove", "Disable", "Delete", "Archive", "Release"})
# Managing machine access is an administrator's job, whatever the verb.
ADMIN_FIELDS = frozenset(
    {"apiKeyCreate", "apiKeyRevoke", "embedTokenCreate", "embedTokenRevoke", "apiKeys", "embedTokens"}
)
# Acting on a person's own account: meaningless for a key, and a stolen key must not reach them.
PERSONAL_MUTATIONS = frozenset(
    {
        "login",
        "logout",
        "organizationSwitch",
        "organizationCreate",
        "meUpdate",
        "avatarUpload",
        "emailChangeRequest",
        "emailChangeConfirm",
        "passwordChange",
        "totpSetup",
        "totpEnable",
        "totpDisable",
        "totpRecoveryCodesGenerate",
        "accountDelete",
        "teamMemberInviteAccept",  # joining an organization is a person's own act
    }
)

_LAST_WORD = re.compile(r"[A-Z][a-z0-9]*$")

# Embed tokens: root fields and Customer fields they may read, and the section each needs (None: always).
_EMBED_QUERY_FIELDS: dict[str, EmbedSection | None] = {
    "customer": None,
    "usageSummary": EmbedSection.USAGE_DASHBOARD,
    "usageEvents": EmbedSection.USAGE_DASHBOARD,
}
_EMBED_SUBSCRIPTION_FIELDS: dict[str, EmbedSection | None] = {
    "walletUpdated": EmbedSection.WALLET,
    "creditsUpdated": EmbedSection.CREDITS,
    "spendingCapUpdated": EmbedSection.SPENDING_CAP,
    "usageSummaryUpdated": EmbedSection.USAGE_DASHBOARD,
}
_EMBED_CUSTOMER_FIELDS: dict[str, EmbedSection | None] = {
    "id": None,
    "name": None,
    "wallet": EmbedSection.WALLET,
    "credits": EmbedSection.CREDITS,
    "spendingCap": EmbedSection.SPENDING_CAP,
}
_ROOT_TYPES = {
    OperationKind.QUERY: "Query",
    OperationKind.MUTATION: "Mutation",
    OperationKind.SUBSCRIPTION: "Subscription",
}
# The types whose fields are gated; every other type is reachable only through a gated field.
EMBED_GATED_TYPES = frozenset({"Query", "Mutation", "Subscription", "Customer"})


def required_permission(kind: OperationKind, field: str) -> ApiPermission | None:
    """The permission an API key needs for a root field; None when no key may run it."""
    if field in ADMIN_FIELDS:
        return ApiPermission.ADMIN
    if kind is not OperationKind.MUTATION:
        return ApiPermission.READ
    if field in PERSONAL_MUTATIONS:
        return None
    match = _LAST_WORD.search(field)
    verb = match.group(0) if match else ""
    if verb in WRITE_VERBS:
        return ApiPermission.WRITE
    if verb in DELETE_VERBS:
        return ApiPermission.DELETE
    return ApiPermission.ADMIN


def api_key_refusal(viewer: Viewer, kind: OperationKind, field: str) -> str | None:
    """Why the viewer's API key may not run `field`, or None when it may (or the viewer is not an API key)."""
    if viewer.api_key_id is None:
        return None
    needed = required_permission(kind, field)
    if needed is None:
        return f"API keys cannot run `{field}`."
    granted = viewer.api_permissions
    if ApiPermission.ADMIN in granted or needed in granted:
        return None
    return f"This API key lacks the {needed} permission needed for `{field}`."


def embed_may_read(viewer: Viewer, parent_type: str, field: str) -> bool:
    """Whether an embed token may select `field` on `parent_type` (always true for other viewers)."""
    if viewer.embed_token_id is None or field.startswith("__"):
        return True
    if parent_type == "Query":
        allowed = _EMBED_QUERY_FIELDS
    elif parent_type == "Subscription":
        allowed = _EMBED_SUBSCRIPTION_FIELDS
    elif parent_type == "Customer":
        allowed = _EMBED_CUSTOMER_FIELDS
    elif parent_type == "Mutation":
        return False
    else:
        return True
    if field not in allowed:
        return False
    section = allowed[field]
    return section is None or section in viewer.embed_sections


def machine_refusal(viewer: Viewer, kind: OperationKind, field: str) -> str | None:
    """Why a machine token may not run the root field `field`; None when it may. For transports that are not
    GraphQL (the ingestion endpoint names the mutation it stands for)."""
    if viewer.embed_token_id is not None and not embed_may_read(viewer, _ROOT_TYPES[kind], field):
        return "Embed tokens can only read the sections they were issued for."
    return api_key_refusal(viewer, kind, field)
