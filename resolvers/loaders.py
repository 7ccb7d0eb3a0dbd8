"""Per-request DataLoaders (aiodataloader), one per relation, each reading through `restrict()`.

They live on the request context, never at module level: a loader's cache must not outlive the request or
cross tenants. Nested connections (a partner's customers, a customer's campaigns) load through them too, so a
page of parents costs the same few statements whatever its size.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from aiodataloader import DataLoader as BaseDataLoader
from tortoise.models import Model

from domain.access.models import ApiKey, EmbedToken
from domain.accounts.models import Membership, User
from domain.alerts.models import Alert
from domain.audit.models import AuditEvent
from domain.billing import cap
from domain.billing import read as billing
from domain.campaigns.models import Campaign
from domain.customers import services as customers
from domain.customers.models import Customer
from domain.demo import services as demo
from domain.errors import DomainError
from domain.features import pricing
from domain.features import services as features
from domain.invoices.models import Invoice
from domain.ledger.models import LedgerAccount, Transfer, TransferKind
from domain.packages import services as packages
from domain.packages.models import Package, PackageAssignment
from domain.partners import domains as partner_domains
from domain.partners.models import Partner
from domain.payments.models import Payment
from domain.portal import services as portal
from domain.reports.models import HealedContact, ReportSchedule, UsageReport
from domain.storage import services as storage
from domain.team import seats
from domain.team.models import Invitation
from domain.usage.models import UsageEvent, UsageHold
from domain.viewer import Viewer
from domain.visibility import audit_actors_shown, restrict
from domain.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookMessage
from resolvers.common import Page, paginate_many, pk_fits

M = TypeVar("M", bound=Model)


class DataLoader(BaseDataLoader):
    """A DataLoader whose futures survive the cancellation of any one caller.

    aiodataloader hands every caller of a key the same future, and graphql-core cancels the sibling fields of a
    field that failed: the cancellation then reached the shared future, and every other field waiting on that key
    (elsewhere in the document, or later in the request) got a CancelledError that escaped as an HTTP 500.
    """

    def load(self, key: Any) -> asyncio.Future[Any]:
        return asyncio.shield(super().load(key))


def _by_id(model: type[M], viewer: Viewer, **narrow: Any) -> DataLoader:
    """Visible rows by id (None for the rest), of those matching `narrow` when given."""

    async def batch(ids: Sequence[int]) -> list[M | None]:
        wanted = [i for i in set(ids) if pk_fits(model, i)]
        visible = restrict(model, viewer).filter(id__in=wanted, **narrow)
        rows = {row.pk: row for row in await visible} if wanted else {}
        return [rows.get(i) for i in ids]

    return DataLoader(batch_load_fn=batch)


def _pages(fetch: Callable[[Any, list[int], int, int | None], Any]) -> DataLoader:
    """Pages of a nested connection, keyed `(parent id, *arguments, page size, after pk)`: the parents that share
    the arguments are paginated together (`paginate_many`). A refusal (a bad filter) fails only its own keys."""

    async def batch(keys: Sequence[tuple[Any, ...]]) -> list[Page[Any] | Exception]:
        groups: dict[tuple[Any, ...], set[int]] = defaultdict(set)
        for key in keys:
            groups[key[1:]].add(key[0])
        pages: dict[tuple[Any, ...], Page[Any] | Exception] = {}
        for (*arguments, size, after_pk), parent_ids in groups.items():
            try:
                found = await fetch(tuple(arguments), sorted(parent_ids), size, after_pk)
            except DomainError as exc:
                found = dict.fromkeys(parent_ids, exc)
            for parent_id, page in found.items():
                pages[(parent_id, *arguments, size, after_pk)] = page
        return [pages[tuple(key)] for key in keys]

    return DataLoader(batch_load_fn=batch)


def _grouped(fetch: Callable[[list[int]], Any], key: Callable[[Any], int]) -> DataLoader:
    async def batch(ids: Sequence[int]) -> list[list[Any]]:
        groups: dict[int, list[Any]] = defaultdict(list)
        for row in await fetch(list(set(ids))):
            groups[key(row)].append(row)
        return [groups.get(i, []) for i in ids]

    return DataLoader(batch_load_fn=batch)


class Loaders:
    """Named loaders, created on first use within one request."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self._cache: dict[str, DataLoader] = {}

    def _get(self, name: str, factory: Callable[[], DataLoader]) -> DataLoader:
        loader = self._cache.get(name)
        if loader is None:
            loader = self._cache[name] = factory()
        return loader

    @property
    def partner_by_id(self) -> DataLoader:
        return self._get("partner_by_id", lambda: _by_id(Partner, self.viewer))

    @property
    def customer_by_id(self) -> DataLoader:
        return self._get("customer_by_id", lambda: _by_id(Customer, self.viewer))

    @property
    def user_by_id(self) -> DataLoader:
        return self._get("user_by_id", lambda: _by_id(User, self.viewer))

    @property
    def membership_by_id(self) -> DataLoader:
        return self._get("membership_by_id", lambda: _by_id(Membership, self.viewer))

    @property
    def audit_event_by_id(self) -> DataLoader:
        return self._get("audit_event_by_id", lambda: _by_id(AuditEvent, self.viewer))

    @property
    def memberships_by_user(self) -> DataLoader:
        """Visible memberships of each user, ordered by id."""

        def fetch(ids: list[int]) -> Any:
            return restrict(Membership, self.viewer).filter(user_id__in=ids).order_by("id")

        return self._get("memberships_by_user", lambda: _grouped(fetch, lambda m: m.user_id))

    @property
    def members_by_customer(self) -> DataLoader:
        """Visible memberships of each customer, ordered by id."""

        def fetch(ids: list[int]) -> Any:
            return restrict(Membership, self.viewer).filter(customer_id__in=ids).order_by("id")

        return self._get("members_by_customer", lambda: _grouped(fetch, lambda m: m.customer_id))

    @property
    def customers_by_partner(self) -> DataLoader:
        """A page of each partner's visible customers; key `(partner id, status, search, size, after pk)`."""

        def fetch(arguments: tuple[Any, ...], ids: list[int], size: int, after_pk: int | None) -> Any:
            status, search = arguments
            qs = customers.search_customers(self.viewer, status, search)
            return paginate_many(qs, "partner_id", ids, size, after_pk)

        return self._get("customers_by_partner", lambda: _pages(fetch))

    @property
    def campaigns_by_customer(self) -> DataLoader:
        """A page of each (visible) customer's campaigns, oldest first; key `(customer id, size, after pk)`."""

        def fetch(arguments: tuple[Any, ...], ids: list[int], size: int, after_pk: int | None) -> Any:
            return paginate_many(Campaign.all(), "customer_id", ids, size, after_pk)

        return self._get("campaigns_by_customer", lambda: _pages(fetch))

    async def users_of_customer(self, customer_id: int) -> list[User]:
        memberships = await self.members_by_customer.load(customer_id)
        users = await self.user_by_id.load_many([m.user_id for m in memberships])
        return [u for u in users if u is not None]

    @property
    def transfer_by_id(self) -> DataLoader:
        return self._get("transfer_by_id", lambda: _by_id(Transfer, self.viewer))

    @property
    def wallet_refill_by_id(self) -> DataLoader:
        """Visible transfers that are wallet refills (the credited side is then always the customer's wallet)."""
        return self._get("wallet_refill_by_id", lambda: _by_id(Transfer, self.viewer, kind=TransferKind.WALLET_REFILL))

    @property
    def ledger_account_by_id(self) -> DataLoader:
        """Ledger accounts the viewer owns (None for the rest): whose balances it may see."""
        return self._get("ledger_account_by_id", lambda: _by_id(LedgerAccount, self.viewer))

    @property
    def audit_actor_shown(self) -> DataLoader:
        """By (user id, API key id): whether the viewer may see who acted on an audit event, and from where."""

        async def batch(actors: Sequence[tuple[int | None, int | None]]) -> list[bool]:
            return await audit_actors_shown(self.viewer, actors)

        return self._get("audit_actor_shown", lambda: DataLoader(batch_load_fn=batch))

    @property
    def usage_event_by_id(self) -> DataLoader:
        return self._get("usage_event_by_id", lambda: _by_id(UsageEvent, self.viewer))

    @property
    def usage_hold_by_id(self) -> DataLoader:
        return self._get("usage_hold_by_id", lambda: _by_id(UsageHold, self.viewer))

    @property
    def alert_by_id(self) -> DataLoader:
        return self._get("alert_by_id", lambda: _by_id(Alert, self.viewer))

    @property
    def api_key_by_id(self) -> DataLoader:
        return self._get("api_key_by_id", lambda: _by_id(ApiKey, self.viewer))

    @property
    def embed_token_by_id(self) -> DataLoader:
        return self._get("embed_token_by_id", lambda: _by_id(EmbedToken, self.viewer))

    @property
    def campaign_by_id(self) -> DataLoader:
        return self._get("campaign_by_id", lambda: _by_id(Campaign, self.viewer))

    @property
    def usage_report_by_id(self) -> DataLoader:
        return self._get("usage_report_by_id", lambda: _by_id(UsageReport, self.viewer))

    @property
    def healed_contact_by_id(self) -> DataLoader:
        return self._get("healed_contact_by_id", lambda: _by_id(HealedContact, self.viewer, wrong_number=False))

    @property
    def report_schedule_by_id(self) -> DataLoader:
        return self._get("report_schedule_by_id", lambda: _by_id(ReportSchedule, self.viewer))

    @property
    def package_by_id(self) -> DataLoader:
        return self._get("package_by_id", lambda: _by_id(Package, self.viewer))

    @property
    def package_assignment_by_id(self) -> DataLoader:
        return self._get("package_assignment_by_id", lambda: _by_id(PackageAssignment, self.viewer))

    @property
    def package_by_customer(self) -> DataLoader:
        """Each visible customer's current package assignment (None without one)."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            found = await packages.current_assignments(self.viewer, list(set(ids)))
            return [found.get(i) for i in ids]

        return self._get("package_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def package_customer_count(self) -> DataLoader:
        """Customers each package is in force for (visible ones only)."""

        async def batch(ids: Sequence[int]) -> list[int]:
            counts = await packages.customer_counts(self.viewer, list(set(ids)))
            return [counts[i] for i in ids]

        return self._get("package_customer_count", lambda: DataLoader(batch_load_fn=batch))

    @property
    def prices_visible(self) -> DataLoader:
        """By customer id: whether the viewer may see that customer's prices and costs (domain/features/pricing.py);
        the caller has already shown the customer is visible."""

        async def batch(ids: Sequence[int]) -> list[bool]:
            visible = await pricing.prices_visible(self.viewer, ids)
            return [visible[i] for i in ids]

        return self._get("prices_visible", lambda: DataLoader(batch_load_fn=batch))

    @property
    def storage_by_customer(self) -> DataLoader:
        """Knowledge-base storage of visible customers (None for the rest)."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            customers = [c for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            states = await storage.storage_states(self.viewer, customers)
            return [states.get(i) for i in ids]

        return self._get("storage_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def storage_pool_by_partner(self) -> DataLoader:
        """Storage pools by partner id (the caller decides who may see them)."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            states = await storage.pool_states(ids)
            return [states[i] for i in ids]

        return self._get("storage_pool_by_partner", lambda: DataLoader(batch_load_fn=batch))

    @property
    def cap_by_customer(self) -> DataLoader:
        async def batch(ids: Sequence[int]) -> list[Any]:
            visible = [c.id for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            states = await cap.cap_states(visible)
            return [states.get(i) for i in ids]

        return self._get("cap_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def credits_by_customer(self) -> DataLoader:
        """Credit meters (available, used, assigned) of visible customers."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            customers = [c for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            states = await billing.credit_states(customers)
            return [states.get(i) for i in ids]

        return self._get("credits_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def features_by_customer(self) -> DataLoader:
        """Feature toggles (with the low-credit threshold) of visible customers."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            visible = [c.id for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            states = await features.feature_states(visible)
            return [states.get(i) for i in ids]

        return self._get("features_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def wallet_by_customer(self) -> DataLoader:
        async def batch(ids: Sequence[int]) -> list[Any]:
            customers = [c for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            states = await billing.wallet_states(customers)
            return [states.get(i) for i in ids]

        return self._get("wallet_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def pool_by_partner(self) -> DataLoader:
        async def batch(ids: Sequence[int]) -> list[Any]:
            states = await billing.pool_states(list(ids))
            return [states[i] for i in ids]

        return self._get("pool_by_partner", lambda: DataLoader(batch_load_fn=batch))

    @property
    def billing_by_customer(self) -> DataLoader:
        async def batch(ids: Sequence[int]) -> list[Any]:
            prefs = await billing.preferences_of(list(ids))
            return [prefs[i] for i in ids]

        return self._get("billing_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def webhook_endpoint_by_id(self) -> DataLoader:
        return self._get("webhook_endpoint_by_id", lambda: _by_id(WebhookEndpoint, self.viewer, deleted_at=None))

    @property
    def webhook_delivery_by_id(self) -> DataLoader:
        return self._get("webhook_delivery_by_id", lambda: _by_id(WebhookDelivery, self.viewer))

    @property
    def webhook_message_by_id(self) -> DataLoader:
        """Messages by id, for deliveries the viewer already sees (they carry the message id)."""

        async def batch(ids: Sequence[int]) -> list[WebhookMessage | None]:
            rows = {m.id: m for m in await WebhookMessage.filter(id__in=list(set(ids)))}
            return [rows.get(i) for i in ids]

        return self._get("webhook_message_by_id", lambda: DataLoader(batch_load_fn=batch))

    @property
    def webhook_attempts_by_delivery(self) -> DataLoader:
        """The attempts of deliveries the viewer already sees, newest first."""

        def fetch(ids: list[int]) -> Any:
            return WebhookAttempt.filter(delivery_id__in=ids).order_by("-attempt", "-id")

        return self._get("webhook_attempts_by_delivery", lambda: _grouped(fetch, lambda a: a.delivery_id))

    @property
    def invoice_by_id(self) -> DataLoader:
        return self._get("invoice_by_id", lambda: _by_id(Invoice, self.viewer))

    @property
    def payment_by_id(self) -> DataLoader:
        return self._get("payment_by_id", lambda: _by_id(Payment, self.viewer))

    @property
    def invitation_by_id(self) -> DataLoader:
        return self._get("invitation_by_id", lambda: _by_id(Invitation, self.viewer))

    @property
    def invitations_by_customer(self) -> DataLoader:
        """A page of each customer's pending invitations the viewer may see, newest first; key `(customer id,
        size, after pk)`."""

        def fetch(arguments: tuple[Any, ...], ids: list[int], size: int, after_pk: int | None) -> Any:
            qs = restrict(Invitation, self.viewer).filter(**seats.pending_invitations())
            return paginate_many(qs, "customer_id", ids, size, after_pk, newest_first=True)

        return self._get("invitations_by_customer", lambda: _pages(fetch))

    @property
    def invitations_by_partner(self) -> DataLoader:
        """A page of each partner's pending staff invitations the viewer may see, newest first."""

        def fetch(arguments: tuple[Any, ...], ids: list[int], size: int, after_pk: int | None) -> Any:
            qs = restrict(Invitation, self.viewer).filter(customer_id=None, **seats.pending_invitations())
            return paginate_many(qs, "partner_id", ids, size, after_pk, newest_first=True)

        return self._get("invitations_by_partner", lambda: _pages(fetch))

    @property
    def seats_by_customer(self) -> DataLoader:
        """Seat counts (limit, members, pending invitations) of visible customers."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            visible = [c.id for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            found = await seats.seats_of(visible)
            return [found.get(i) for i in ids]

        return self._get("seats_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def portal_by_customer(self) -> DataLoader:
        """Portal settings (with the portal switch) of visible customers."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            visible = [c.id for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            states = await portal.portal_states(visible)
            return [states.get(i) for i in ids]

        return self._get("portal_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def branding_by_customer(self) -> DataLoader:
        """Each visible customer's branding: its own values over its partner's."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            customers = [c for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            found = await portal.brandings_of(customers)
            return [found.get(i) for i in ids]

        return self._get("branding_by_customer", lambda: DataLoader(batch_load_fn=batch))

    @property
    def domains_by_partner(self) -> DataLoader:
        """Each partner's custom domains in its order (callers load visible partners only)."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            found = await partner_domains.domains_of(list(set(ids)))
            return [found.get(i, []) for i in ids]

        return self._get("domains_by_partner", lambda: DataLoader(batch_load_fn=batch))

    @property
    def demo_by_customer(self) -> DataLoader:
        """Demo mode of visible customers."""

        async def batch(ids: Sequence[int]) -> list[Any]:
            visible = [c.id for c in await self.customer_by_id.load_many(list(ids)) if c is not None]
            states = await demo.demo_states(visible)
            return [states.get(i) for i in ids]

        return self._get("demo_by_customer", lambda: DataLoader(batch_load_fn=batch))


def first_of(rows: Iterable[M | None]) -> M | None:
    return next((r for r in rows if r is not None), None)
