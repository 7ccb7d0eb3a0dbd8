"""A customer's Features & Add-ons: the toggles a partner manages (seed 000) and `customerFeaturesUpdate`."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay
from strawberry.utils.str_converters import to_camel_case

from domain.features import services
from domain.features.commands import CustomerFeaturesUpdate
from domain.features.models import PortalSection as DomainPortalSection
from domain.features.services import FeatureState
from resolvers import features as r
from resolvers.commands import perform
from schema.common import Info
from schema.errors import FeatureError
from schema.nodes import shows

if TYPE_CHECKING:
    from schema.packages import FeatureKey

PortalSection = strawberry.enum(
    DomainPortalSection, name="PortalSection", description="A section of the customer portal."
)


@shows(FeatureState)
@strawberry.type(description="A customer's features and add-ons. Node id = the customer's.")
class FeatureToggles(relay.Node):
    id: relay.NodeID[int]
    portal_enabled: bool = strawberry.field(
        description="Whether the customer can use its portal (dashboard); only with a package that includes "
        "CUSTOMER_PORTAL, like `aiCreditsEnabled` (AI_CREDITS), `teamMembersEnabled` (TEAM_MEMBERS), "
        "`embedUrlsEnabled` (EMBEDS) and the KNOWLEDGE_BASE section (KNOWLEDGE_BASE)."
    )
    advanced_analytics: bool
    detailed_call_analysis: bool
    action_point_analysis: bool
    api_access: bool = strawberry.field(description="API keys work only while this is on.")
    api_keys_menu: bool = strawberry.field(description="Shows the API Keys menu; needs `apiAccess`.")
    ai_credits_enabled: bool = strawberry.field(description="Usage burns AI credits; pricing is hidden meanwhile.")
    low_credit_notifications: bool = strawberry.field(description="Low-credit emails; need `aiCreditsEnabled`.")
    low_credit_threshold: Decimal | None = strawberry.field(
        description="Credits below which the meter turns LOW and the notification fires (null: none)."
    )
    show_pricing: bool = strawberry.field(
        description="Whether the customer's people, API keys and embed tokens see prices and costs (never while AI "
        "credits are on): without it, cost fields are null for them and their reports leave prices out."
    )
    portal_sections: list[PortalSection] = strawberry.field(  # type: ignore[valid-type]
        description="Sections shown in the portal; all need the portal, API_KEYS also `apiAccess`."
    )
    embed_urls_enabled: bool = strawberry.field(description="Embed tokens work; needs `portalEnabled`.")
    team_members_enabled: bool = strawberry.field(description="Team management; needs `portalEnabled`.")
    max_team_members: int = strawberry.field(
        description="The seat limit (members + pending invites); the package's `userCount` sets it at assignment."
    )
    add_ons: list[Annotated[FeatureKey, strawberry.lazy("schema.packages")]] = strawberry.field(  # type: ignore[valid-type]
        description="Add-ons (ADVANCED_ANALYTICS, DETAILED_CALL_ANALYSIS, ACTION_POINT_ANALYSIS, API_ACCESS) switched "
        "on beyond the package in force (all that are on, without a package)."
    )

    @classmethod
    def of(cls, state: FeatureState) -> FeatureToggles:
        t = state.toggles
        return cls(
            add_ons=state.add_ons,
            id=state.customer_id,
            portal_enabled=t.portal_enabled,
            advanced_analytics=t.advanced_analytics,
            detailed_call_analysis=t.detailed_call_analysis,
            action_point_analysis=t.action_point_analysis,
            api_access=t.api_access,
            api_keys_menu=t.api_keys_menu,
            ai_credits_enabled=t.ai_credits_enabled,
            low_credit_notifications=t.low_credit_notifications,
            low_credit_threshold=state.low_credit_threshold,
            show_pricing=t.show_pricing,
            portal_sections=state.portal_sections,
            embed_urls_enabled=t.embed_urls_enabled,
            team_members_enabled=t.team_members_enabled,
            max_team_members=t.max_team_members,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # one async method for Node's overloads on `required`
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[FeatureToggles | None]:
        ids: list[int] = []
        for raw in node_ids:
            try:
                ids.append(int(raw))
            except (TypeError, ValueError):
                ids.append(0)  # no customer has id 0: answers None
        states = await r.features_of(info.context, ids)
        return [cls.of(s) if s else None for s in states]


@strawberry.input(description="Only the fields sent change; a change a rule forbids is refused whole.")
class CustomerFeaturesUpdateInput:
    customer_id: strawberry.ID
    portal_enabled: bool | None = strawberry.UNSET
    advanced_analytics: bool | None = strawberry.UNSET
    detailed_call_analysis: bool | None = strawberry.UNSET
    action_point_analysis: bool | None = strawberry.UNSET
    api_access: bool | None = strawberry.UNSET
    api_keys_menu: bool | None = strawberry.UNSET
    ai_credits_enabled: bool | None = strawberry.UNSET
    low_credit_notifications: bool | None = strawberry.UNSET
    low_credit_threshold: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description='Credits as a decimal string, e.g. "100"; null removes it.'
    )
    show_pricing: bool | None = strawberry.UNSET
    portal_sections: list[PortalSection] | None = strawberry.field(  # type: ignore[valid-type]
        default=strawberry.UNSET, description="The complete list of sections to show."
    )
    embed_urls_enabled: bool | None = strawberry.UNSET
    team_members_enabled: bool | None = strawberry.UNSET
    max_team_members: int | None = strawberry.UNSET


@strawberry.type
class CustomerFeaturesUpdatePayload:
    features: FeatureToggles | None
    switched_off: list[str] = strawberry.field(
        description="Toggles (camelCase) switched off without being asked: dependants of what the change turned "
        "off (portal off → embedUrlsEnabled, teamMembersEnabled, portalSections), showPricing when AI credits go on."
    )
    errors: list[FeatureError]


@strawberry.type
class FeatureMutations:
    @strawberry.mutation(
        description="Partner admins: changes a customer's features; dependants follow. What the package in force "
        "does not include is NOT_ELIGIBLE (the message names it); a change a rule forbids is refused whole."
    )
    async def customer_features_update(
        self, info: Info, input: CustomerFeaturesUpdateInput
    ) -> CustomerFeaturesUpdatePayload:
        outcome = await perform(info.context, services.customer_features_update, input, CustomerFeaturesUpdate)
        updated = outcome.value
        return CustomerFeaturesUpdatePayload(
            features=FeatureToggles.of(updated.state) if updated else None,
            switched_off=[to_camel_case(name) for name in updated.switched_off] if updated else [],
            errors=FeatureError.list(outcome.errors),
        )
