"""Builds the GraphQL schema from each domain's Query/Mutation parts (once per process)."""

from __future__ import annotations

import strawberry
from strawberry import relay
from strawberry.tools import merge_types

from schema.accounts import AccountMutations, AccountQueries
from schema.audit import AuditQueries
from schema.billing import BillingMutations
from schema.customers import CustomerMutations, CustomerQueries
from schema.extensions import default_extensions
from schema.partners import PartnerMutations, PartnerQueries


@strawberry.type
class NodeQueries:
    node: relay.Node | None = relay.node(description="Any object by global id; null when it is not visible.")


Query = merge_types("Query", (NodeQueries, AccountQueries, PartnerQueries, CustomerQueries, AuditQueries))
Mutation = merge_types("Mutation", (AccountMutations, PartnerMutations, CustomerMutations, BillingMutations))

schema = strawberry.Schema(query=Query, mutation=Mutation, extensions=default_extensions())
