"""A customer's portal (seed 001): its settings and the customer's branding over its partner's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.file_uploads import Upload
from strawberry.utils.str_converters import to_camel_case

from domain.partners.branding import Branding as BrandingState
from domain.portal import services
from domain.portal.commands import CustomerBrandingUpdate, CustomerPortalSettingsUpdate
from domain.portal.models import CaseVisibility as DomainCaseVisibility
from domain.portal.services import PortalState
from resolvers.commands import perform
from schema.common import Info
from schema.errors import FeatureError
from schema.nodes import maybe_view, shows

if TYPE_CHECKING:
    from schema.customers import Customer

CaseVisibility = strawberry.enum(
    DomainCaseVisibility, name="CaseVisibility", description="Which cases the customer's users see in the portal."
)


@shows(PortalState)
@strawberry.type(description="The customer portal's settings (seed 001).")
class PortalSettings:
    enabled: bool = strawberry.field(description="The portal itself (the `portalEnabled` feature).")
    auto_invite: bool = strawberry.field(description="Invite the customer's admins by email once the portal is on.")
    chat_enabled: bool
    document_upload: bool
    case_visibility: CaseVisibility  # type: ignore[valid-type]

    @classmethod
    def of(cls, state: PortalState) -> PortalSettings:
        s = state.settings
        return cls(
            enabled=state.enabled,
            auto_invite=s.auto_invite,
            chat_enabled=s.chat_enabled,
            document_upload=s.document_upload,
            case_visibility=DomainCaseVisibility(s.case_visibility),
        )


@shows(BrandingState)
@strawberry.type(description="The look a customer's users see: the customer's own values over its partner's.")
class Branding:
    logo_url: str | None
    primary_color: str
    secondary_color: str
    welcome_message: str = strawberry.field(description="Plain text (escape it when showing it as HTML).")

    @classmethod
    def of(cls, state: BrandingState) -> Branding:
        return cls(
            logo_url=state.logo_url,
            primary_color=state.primary_color,
            secondary_color=state.secondary_color,
            welcome_message=state.welcome_message,
        )


@strawberry.input(description="Only the fields sent change; a change a rule forbids is refused whole.")
class CustomerPortalSettingsUpdateInput:
    customer_id: strawberry.ID
    enabled: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Switches the portal through the features rules (like portalEnabled)."
    )
    auto_invite: bool | None = strawberry.UNSET
    chat_enabled: bool | None = strawberry.UNSET
    document_upload: bool | None = strawberry.UNSET
    case_visibility: CaseVisibility | None = strawberry.UNSET  # type: ignore[valid-type]


@strawberry.type
class CustomerPortalSettingsUpdatePayload:
    portal: PortalSettings | None
    switched_off: list[str] = strawberry.field(
        description="Feature toggles (camelCase) the portal going off switched off, as customerFeaturesUpdate says."
    )
    errors: list[FeatureError]


@strawberry.input(description="Only the fields sent change; null goes back to the partner's value.")
class CustomerBrandingUpdateInput:
    customer_id: strawberry.ID
    logo: Upload | None = strawberry.field(
        default=strawberry.UNSET,
        description="A PNG or JPG of at most 512 KB (multipart request), re-encoded; SVG is refused.",
    )
    primary_color: str | None = strawberry.field(default=strawberry.UNSET, description="#rrggbb")
    secondary_color: str | None = strawberry.field(default=strawberry.UNSET, description="#rrggbb")
    welcome_message: str | None = strawberry.field(
        default=strawberry.UNSET, description="Plain text, at most 1,000 characters."
    )


@strawberry.type
class CustomerBrandingUpdatePayload:
    customer: Annotated[Customer, strawberry.lazy("schema.customers")] | None
    branding: Branding | None
    errors: list[FeatureError]


@strawberry.type
class PortalMutations:
    @strawberry.mutation(description="Partner admins: the customer's portal settings (and the portal itself).")
    async def customer_portal_settings_update(
        self, info: Info, input: CustomerPortalSettingsUpdateInput
    ) -> CustomerPortalSettingsUpdatePayload:
        outcome = await perform(
            info.context, services.customer_portal_settings_update, input, CustomerPortalSettingsUpdate
        )
        updated = outcome.value
        if updated is not None:
            info.context.reset_loaders()
        return CustomerPortalSettingsUpdatePayload(
            portal=PortalSettings.of(updated.state) if updated else None,
            switched_off=[to_camel_case(name) for name in updated.switched_off] if updated else [],
            errors=FeatureError.list(outcome.errors),
        )

    @strawberry.mutation(description="Partner admins: the customer's own logo, colours and welcome message.")
    async def customer_branding_update(
        self, info: Info, input: CustomerBrandingUpdateInput
    ) -> CustomerBrandingUpdatePayload:
        outcome = await perform(info.context, services.customer_branding_update, input, CustomerBrandingUpdate)
        updated = outcome.value
        return CustomerBrandingUpdatePayload(
            customer=maybe_view(updated.customer) if updated else None,
            branding=Branding.of(updated.branding) if updated else None,
            errors=FeatureError.list(outcome.errors),
        )
