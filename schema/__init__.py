"""Builds the GraphQL schema from each domain's Query/Mutation parts (once per process)."""

from __future__ import annotations

import strawberry
from strawberry import relay
from strawberry.tools import merge_types
from strawberry.types import Info

from schema.access import AccessMutations, AccessQueries
from schema.access_guard import MachineAccessGuard
from schema.accounts import AccountMutations, AccountQueries
from schema.alerts import AlertMutations, AlertQueries
from schema.audit import AuditQueries
from schema.billing import BillingMutations
from schema.customers import CustomerMutations, CustomerQueries
from schema.extensions import default_extensions
from schema.features import FeatureMutations
from schema.packages import PackageMutations, PackageQueries
from schema.partners import PartnerMutations, PartnerQueries
from schema.reports import ReportMutations, ReportQueries
from schema.subscriptions import Subscription
from schema.usage import UsageMutations, UsageQueries


@strawberry.type
class NodeQueries:
    @strawberry.field(description="Any object by global id; null when it does not exist or is not visible.")
    async def node(self, info: Info, id: strawberry.ID) -> relay.Node | None:
        try:
            global_id = relay.GlobalID.from_id(id)
        except (relay.GlobalIDValueError, ValueError, TypeError):
            return None
        definition = info.schema.get_type_by_name(global_id.type_name)
        origin = getattr(definition, "origin", None)
        if not (isinstance(origin, type) and issubclass(origin, relay.Node)):
            return None
        return await global_id.resolve_node(info, required=False)


Query = merge_types(
    "Query",
    (
        NodeQueries,
        AccountQueries,
        PartnerQueries,
        CustomerQueries,
        AuditQueries,
        UsageQueries,
        AlertQueries,
        AccessQueries,
        ReportQueries,
        PackageQueries,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        AccountMutations,
        PartnerMutations,
        CustomerMutations,
        FeatureMutations,
        BillingMutations,
        UsageMutations,
        AlertMutations,
        AccessMutations,
        ReportMutations,
        PackageMutations,
    ),
)

schema = strawberry.Schema(
    query=Query, mutation=Mutation, subscription=Subscription, extensions=[*default_extensions(), MachineAccessGuard]
)
