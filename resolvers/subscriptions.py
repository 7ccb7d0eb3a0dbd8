"""Live views: authorise like the query, then wake on committed changes and read the current state.

Every `recheck` seconds without a change the socket's session is checked again; a revoked session or a disabled
customer ends the connection (4403).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from domain.accounts.services import authenticate_session
from domain.customers.models import Customer
from domain.errors import DomainError
from domain.visibility import get_visible, restrict
from resolvers.common import decode_global_id

MIN_INTERVAL = 0.1  # at most one push per object every 100 ms


async def visible_customer(ctx: Any, customer_id: Any) -> Customer:
    pk = decode_global_id(customer_id, "Customer", "customerId")
    return await get_visible(Customer, ctx.viewer, pk, field="customerId")


async def _still_allowed(ctx: Any, customer_id: int) -> bool:
    token = ctx.get("token")
    if not token:
        return False
    viewer = await authenticate_session(token, ctx.viewer)
    if viewer is None:
        return False
    return await restrict(Customer, viewer).filter(id=customer_id).exists()


async def watch(
    ctx: Any, topic: str, customer_id: int, read: Callable[[], Awaitable[Any]] | None = None
) -> AsyncIterator[Any]:
    """Yields the payload of the latest change of `topic` for the customer, coalesced to one per 100 ms; with
    `read`, what `read()` returns after the change instead, read once per process for all its subscribers (the
    state of the customer, the same for every viewer allowed to subscribe)."""
    from server.pubsub import iterate, key_for  # the pub/sub lives in the composition root

    app_state = ctx.request.app.state
    with app_state.pubsub.subscribe(key_for(topic, customer_id)) as subscription:
        async for changed in iterate(
            subscription, min_interval=MIN_INTERVAL, recheck=app_state.settings.ws_recheck_seconds
        ):
            if not changed:
                if not await _still_allowed(ctx, customer_id):
                    await ctx.request.close(code=4403, reason="Session ended")
                    return
                continue
            if read is None:
                yield subscription.payload
            else:
                yield await app_state.pubsub.shared_read(subscription, read)


__all__ = ["DomainError", "visible_customer", "watch"]
