"""The embed widget's page (`GET /embed?token=…`): what an embed token shows — its customer, the sections it was
issued for (narrowed by the snippet's `data-sections`), its partner's branding — and whose sites may frame it.

A token that no longer works (expired, revoked, its customer disabled or embeds switched off) still names its
partner when its secret is genuine, so the partner's sites can show the "ask for a new link" message under the
partner's brand; a token that is not genuine names nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from domain.access.models import EmbedSection, EmbedToken
from domain.access.services import EMBED_TOKEN_PREFIX, _secret_matches, _split, authenticate_embed_token
from domain.customers.models import Customer
from domain.partners.models import Partner
from domain.viewer import Viewer


@dataclass(frozen=True, slots=True)
class EmbedBranding:
    partner_name: str
    logo_url: str | None
    primary_color: str
    secondary_color: str

    @classmethod
    def of(cls, partner: Partner) -> EmbedBranding:
        return cls(partner.name, partner.logo_url, partner.primary_color, partner.secondary_color)


@dataclass(frozen=True, slots=True)
class EmbedPage:
    """A working token: what its page shows."""

    partner_id: int
    customer_id: int
    customer_name: str
    sections: tuple[EmbedSection, ...]  # in the widget's order
    branding: EmbedBranding
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class EmbedRefused:
    """A token that does not work (any more); its partner when the token is genuine."""

    partner_id: int | None = None
    branding: EmbedBranding | None = None


def chosen_sections(granted: Iterable[str], requested: Iterable[str]) -> tuple[EmbedSection, ...]:
    """The sections a page shows: those the snippet asks for among the token's (all of the token's when it asks for
    none of them), in the enum's order. Sections the token lacks are never shown, whatever is asked."""
    allowed = {s for s in EmbedSection if s.value in set(granted)}
    wanted = {s for s in allowed if s.value in {r.strip().upper() for r in requested}}
    return tuple(s for s in EmbedSection if s in (wanted or allowed))


async def embed_page(token: str, requested: Iterable[str] = ()) -> EmbedPage | EmbedRefused:
    viewer = await authenticate_embed_token(token, Viewer.anonymous())
    if viewer is None or viewer.customer_id is None:
        return await _refused(token)
    customer = await Customer.filter(id=viewer.customer_id).select_related("partner").first()
    row = await EmbedToken.get_or_none(id=viewer.embed_token_id)
    if customer is None or row is None:
        return EmbedRefused()
    return EmbedPage(
        partner_id=customer.partner_id,
        customer_id=customer.id,
        customer_name=customer.name,
        sections=chosen_sections(viewer.embed_sections, requested),
        branding=EmbedBranding.of(customer.partner),
        expires_at=row.expires_at,
    )


async def _refused(token: str) -> EmbedRefused:
    parts = _split(token, EMBED_TOKEN_PREFIX) if token.isascii() and token.isprintable() else None
    if parts is None:
        return EmbedRefused()
    row = await EmbedToken.get_or_none(id=parts[0])
    if row is None or not _secret_matches(parts[1], row.secret_hash):
        return EmbedRefused()
    partner = await Partner.get_or_none(id=row.partner_id)
    return EmbedRefused(row.partner_id, EmbedBranding.of(partner) if partner else None)
