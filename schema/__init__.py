"""Builds the GraphQL schema from each domain's Query/Mutation parts (once per process)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NoReturn

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, ExecutionResult, Info
from strawberry.types.graphql import OperationType

from resolvers.common import node_pk
from schema.access import AccessMutations, AccessQueries
from schema.accounts import AccountMutations, AccountQueries
from schema.alerts import AlertMutations, AlertQueries
from schema.audit import AuditMutations, AuditQueries
from schema.billing import BillingMutations
from schema.customers import CustomerMutations, CustomerQueries
from schema.demo import DemoMutations
from schema.execution import execute_operation
from schema.extensions import BoundedExecution, log_client_error
from schema.features import FeatureMutations
from schema.inputs import install_input_builders
from schema.packages import PackageMutations, PackageQueries
from schema.partners import PartnerMutations, PartnerQueries
from schema.payments import PaymentMutations, PaymentQueries
from schema.portal import PortalMutations
from schema.reports import ReportMutations, ReportQueries
from schema.scalars import DateTimeDefinition
from schema.storage import StorageMutations
from schema.subscriptions import Subscription
from schema.team import TeamMutations
from schema.usage import UsageMutations, UsageQueries
from schema.webhooks import WebhookMutations, WebhookQueries


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
        # an object type implementing Node (the `Node` interface itself resolves nothing) with an id every type's
        # `resolve_nodes` can take: every Node's id is a positive 32-bit integer
        if getattr(definition, "is_interface", True) or not (
            isinstance(origin, type) and issubclass(origin, relay.Node)
        ):
            return None
        if node_pk(global_id.node_id) is None:
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
        WebhookQueries,
        PaymentQueries,
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
        AuditMutations,
        PackageMutations,
        WebhookMutations,
        PaymentMutations,
        PortalMutations,
        TeamMutations,
        DemoMutations,
        StorageMutations,
    ),
)


class Schema(strawberry.Schema):
    """Operations run through `execute` (schema/execution.py: every guard of schema/extensions.py, without
    Strawberry's extension hooks); subscriptions through server/live.py. Strawberry's other entry points would run
    an operation unguarded, so they refuse."""

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        return await execute_operation(
            self,
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    def execute_sync(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("operations run through `await schema.execute(...)` (schema/execution.py)")

    async def subscribe(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("subscriptions are served by server/live.py")

    async def stream(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("incremental delivery is not served")

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Strawberry logs every error at ERROR with its traceback; most are the client's (a bad id, FORBIDDEN, a
        # typo in the query). Unexpected ones are logged where they are masked, once, with the request id.
        request_id = getattr(getattr(execution_context, "context", None), "request_id", None)
        for error in errors:
            log_client_error(error, request_id)


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    execution_context_class=BoundedExecution,
    scalar_overrides={datetime: DateTimeDefinition},
)
# input objects built from a plan per type (schema/inputs.py), not converted field by field on every request
install_input_builders(schema)
