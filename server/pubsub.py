"""Change notifications for live subscriptions, fanned out to every API process.

The relay publishes "customer X's credits changed" once, and every API process's subscribers hear it: with Redis
through a channel every process listens to; without Redis on PostgreSQL through `NOTIFY` on a channel every
process LISTENs to (one relay runs per database, server/locks.py, so a change must reach the other processes);
embedded (SQLite, one process) straight to this process's subscribers. A subscriber holds a flag, not a queue:
however many changes arrive, it wakes once and reads the current state (coalescing, never a backlog).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import redis.asyncio as aioredis
import structlog

from domain.events.services import ACCESS_REVOKED, LIVE_TOPICS, live_key

log = structlog.get_logger("partnerdesk.pubsub")
T = TypeVar("T")


class Subscription:
    """One subscriber of one key, remembering the last payload.

    The websocket endpoint gives it a callback (called on each change, no task or event per idle subscriber);
    other callers wait on it, and only they pay for an asyncio.Event.
    """

    __slots__ = ("_event", "callback", "key", "payload", "seen")

    def __init__(self, key: str, callback: Callable[[Subscription], None] | None = None) -> None:
        self.key = key
        self.callback = callback
        self._event: asyncio.Event | None = None
        self.payload: dict[str, Any] = {}
        self.seen = 0  # the process's delivery count when the latest payload arrived

    def notify(self, payload: dict[str, Any], seen: int = 0) -> None:
        self.payload = payload
        self.seen = seen
        if self.callback is not None:
            self.callback(self)
        if self._event is not None:
            self._event.set()

    async def wait(self, within: float | None = None) -> bool:
        """True when notified (and clears the flag), False when `within` seconds pass first."""
        if self._event is None:
            self._event = asyncio.Event()
        try:
            async with asyncio.timeout(within):  # no extra task per waiting subscriber, unlike wait_for on 3.11
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True


# PostgreSQL refuses a NOTIFY payload from 8,000 bytes on; live payloads are ids and a few figures
NOTIFY_MAX_BYTES = 7_900
# the messages in order: the subquery orders them before the aggregate calls pg_notify on each
_NOTIFY_SQL = (
    "SELECT count(pg_notify($1, s.m)) FROM "
    "(SELECT u.m FROM unnest($2::text[]) WITH ORDINALITY AS u(m, n) ORDER BY u.n) AS s"
)


class PubSub:
    def __init__(self, redis_url: str | None = None, key_prefix: str = "pd", database_url: str | None = None) -> None:
        """`database_url`: a PostgreSQL URL to fan out through LISTEN/NOTIFY when there is no Redis."""
        self.redis_url = redis_url
        self.channel = f"{key_prefix}:events"  # one per deployment (REDIS_KEY_PREFIX)
        self.database_url = None if redis_url else database_url
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._deliveries = 0  # notifications delivered in this process so far
        self._reads: dict[str, tuple[int, asyncio.Future[Any]]] = {}  # key → (deliveries when it began, read)
        self._redis: aioredis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._outgoing: list[str] = []  # messages waiting for their NOTIFY (PostgreSQL without Redis)
        self._sender: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ local registry

    def add(self, key: str, callback: Callable[[Subscription], None] | None = None) -> Subscription:
        subscription = Subscription(key, callback)
        # a new subscriber has seen every change delivered so far: a shared read begun before now is too old for
        # its first state (`shared_read`)
        subscription.seen = self._deliveries
        self._subscribers[key].add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.key]
                self._reads.pop(subscription.key, None)

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[Subscription]:
        subscription = self.add(key)
        try:
            yield subscription
        finally:
            self.remove(subscription)

    def has_subscribers(self, key: str) -> bool:
        return bool(self._subscribers.get(key))

    def subscriber_count(self) -> int:
        """Subscribers of customers' live topics (the process's own listeners, such as revocations, not counted)."""
        return sum(len(s) for key, s in self._subscribers.items() if key.partition(":")[0] in LIVE_TOPICS)

    async def shared_read(self, subscription: Subscription, read: Callable[[], Awaitable[T]]) -> T:
        """`read()` once per process for all the subscribers of a key woken by the same change(s).

        A read that began after the subscriber's latest notification was delivered here began after that change
        committed, so its result is as fresh as a read of the subscriber's own; it is shared. Otherwise (none yet,
        or it began earlier, or it failed) the subscriber starts the next shared read.
        """
        key = subscription.key
        entry = self._reads.get(key)
        if entry is not None and entry[1].done() and (entry[1].cancelled() or entry[1].exception() is not None):
            entry = None
        if entry is None or entry[0] < subscription.seen:
            task = asyncio.ensure_future(read())  # a task: a caller's cancellation stops no one
            task.add_done_callback(_retrieve)
            entry = (self._deliveries, task)
            if key in self._subscribers:  # forgotten with the key's last subscriber
                self._reads[key] = entry
        result: T = await asyncio.shield(entry[1])
        return result

    def deliver_local(self, key: str, payload: dict[str, Any]) -> int:
        subscribers = self._subscribers.get(key, ())
        self._deliveries += 1
        for subscription in list(subscribers):
            subscription.notify(payload, self._deliveries)
        return len(subscribers)

    # ------------------------------------------------------------ fan-out

    async def publish(self, key: str, payload: dict[str, Any]) -> None:
        message = json.dumps({"key": key, "payload": payload}, separators=(",", ":"))
        if self._redis is not None:
            await self._redis.publish(self.channel, message)
        elif self._listener is not None and self.database_url is not None and len(message.encode()) <= NOTIFY_MAX_BYTES:
            # queued, and sent with whatever else the relay publishes meanwhile in one statement: a drain of many
            # events costs one round trip, not one per event
            self._outgoing.append(message)
            if self._sender is None or self._sender.done():
                self._sender = asyncio.create_task(self._send_notifications(), name="pubsub-notify")
        else:
            if self._listener is not None and self.database_url is not None:
                log.warning("pubsub_payload_too_large", key=key, size=len(message))
            self.deliver_local(key, payload)

    async def start(self) -> None:
        if self.redis_url:
            self._redis = aioredis.from_url(self.redis_url)
            ready = asyncio.Event()
            self._listener = asyncio.create_task(self._listen(ready), name="pubsub-listener")
            await asyncio.wait_for(ready.wait(), 10)
        elif self.database_url is not None:
            ready = asyncio.Event()
            self._listener = asyncio.create_task(self._listen_pg(ready), name="pubsub-listener")
            await asyncio.wait_for(ready.wait(), 10)

    async def _send_notifications(self) -> None:
        """Sends the queued messages, in order, as one NOTIFY statement per batch (outside any transaction: each
        is delivered at once); if the database refuses, this process's subscribers still get them."""
        from tortoise import connections

        while self._outgoing:
            batch, self._outgoing = self._outgoing, []
            try:
                await connections.get("default").execute_query(_NOTIFY_SQL, [self.channel, batch])
            except Exception:
                log.exception("pubsub_notify_failed", messages=len(batch))
                for message in batch:
                    data = json.loads(message)
                    self.deliver_local(data["key"], data["payload"])

    async def _listen_pg(self, ready: asyncio.Event) -> None:
        """LISTENs on a connection of its own (reconnecting after failures); each notification is delivered to this
        process's subscribers."""
        from server.listen import listen_forever

        def received(text: str) -> None:
            try:
                data = json.loads(text)
                self.deliver_local(data["key"], data["payload"])
            except Exception:
                log.exception("pubsub_notification_failed")

        assert self.database_url is not None
        await listen_forever(self.database_url, self.channel, received, up=ready.set)

    async def _listen(self, ready: asyncio.Event) -> None:
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as channel:
                    await channel.subscribe(self.channel)
                    ready.set()
                    async for message in channel.listen():
                        data = json.loads(message["data"])
                        self.deliver_local(data["key"], data["payload"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pubsub_listener_failed")
                await asyncio.sleep(1)

    async def stop(self) -> None:
        if self._sender is not None and not self._sender.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._sender), 5)  # what the relay published last
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Marks a shared read's failure as seen: the callers that awaited it got it; all of them may have left."""
    if not task.cancelled():
        task.exception()


def live_publisher(pubsub: PubSub) -> Any:
    """The relay's hook: outbox events of live topics become pub/sub notifications."""

    async def publish(event: Any) -> None:
        if event.topic in LIVE_TOPICS and event.customer_id is not None:
            await pubsub.publish(live_key(event.topic, event.customer_id), {"outbox_id": event.id, **event.payload})
        elif event.topic == ACCESS_REVOKED:
            await pubsub.publish(ACCESS_REVOKED, {"outbox_id": event.id})

    return publish
