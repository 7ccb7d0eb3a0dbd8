"""Live subscriptions over WebSocket (`graphql-transport-ws`), lean enough for thousands of idle dashboards.

The protocol is graphql-ws's (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md): connection_init
within `ws_init_timeout_seconds` (10 s; 4408 otherwise) carrying `{"authorization": "Bearer …"}` (4403 when refused), one init only (4429),
subscribe only after the ack (4401), unique ids (4409), ping/pong, complete, malformed messages 4400.

Why not Strawberry's handler: it keeps a task, an async generator chain, graphql-core's executor state and the
extension contexts alive per subscription while it waits, ~50 KB per idle subscriber (bench/push.py). Here a
subscription is a pub/sub callback and a few slots: the subscription resolver (authorisation, arguments, the
`LiveStream` it returns) runs through graphql-core once at subscribe, and each push executes the client's selection
against the current object with a fresh context, parsed and validated by the same rules and caches as HTTP.
Nothing runs for an idle subscription; a push costs one short task. Bursts are coalesced: at most one push per
subscription per 100 ms, always of the latest state (streams of discrete events, such as alerts, keep each one).

Sessions are re-checked per token, not per subscription: one sweep authenticates the distinct tokens of all
sockets (the sessions among them in one query) and checks the customers they watch are still visible (one query
per principal); a revoked session or key, an expired token or a disabled
customer closes the socket with 4403. A sweep runs at once when any process commits a revocation (`access.revoked`
through the outbox and the pub/sub) and every `ws_recheck_seconds` anyway, for expiries and anything else.

Queries and mutations sent over the socket run through the full Strawberry pipeline (one result, then complete).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import defaultdict
from collections.abc import AsyncIterable, Coroutine
from dataclasses import replace
from typing import Any

import structlog
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationType,
    create_source_event_stream,
    execute_subscription_event,
    get_operation_ast,
)
from graphql.pyutils import is_awaitable
from strawberry.types import ExecutionResult as StrawberryExecutionResult

from domain.access.services import authenticate_tokens
from domain.errors import ErrorCode
from domain.events.services import ACCESS_REVOKED
from domain.viewer import Viewer
from domain.visibility import visible_customer_ids
from resolvers.context import Context, LiveStream
from schema import schema
from schema.access_guard import refusal
from schema.extensions import BoundedExecution, client_error, cost_error, field_suggestions, prepare_document
from server.auth import InvalidToken, client_ip, viewer_from_token
from server.cors import SocketOrigin, socket_origin
from server.logging import new_request_id
from server.persisted import PersistedDocuments, PersistedQueryError
from server.pubsub import PubSub, Subscription
from server.ratelimit import ApiRateLimiter, RateLimited
from server.settings import Settings

log = structlog.get_logger("partnerdesk.live")

PROTOCOL = "graphql-transport-ws"
MAX_OPERATIONS = 50  # subscriptions (and in-flight queries) per connection
MIN_INTERVAL = 0.1  # at most one push per subscription every 100 ms
BACKLOG = 20  # discrete events kept per subscription while a push is under way
REVOCATION_DEBOUNCE = 0.05  # seconds: revocations within it share one sweep


class LiveEndpoint:
    """The ASGI app of `/graphql` websockets, with the session sweep of its connections."""

    def __init__(
        self, settings: Settings, pubsub: PubSub, rate_limiter: ApiRateLimiter, persisted: PersistedDocuments
    ) -> None:
        self.settings = settings
        self.persisted = persisted
        self.pubsub = pubsub
        self.rate_limiter = rate_limiter
        self.graphql_schema = schema._schema
        self.connections: set[Connection] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._revocations: Subscription | None = None
        self._revocation_sweep: asyncio.Future[None] | None = None
        # (stream key, document, variables, operation name, viewer) → (state, its payload, document)
        self._payloads: dict[tuple[Any, ...], tuple[Any, asyncio.Future[str], DocumentNode]] = {}

    async def shared_payload(self, operation: LiveOperation, state: Any, value: Any) -> str:
        """The serialised `next` payload of a state push, executed once per (change, document, variables,
        equivalent viewer) for every subscriber of this process and sent to each as the same bytes.

        Subscribers share an execution only when everything it can observe is the same: the state object read for
        the change (one read serves all the subscribers it woke), the same parsed document (documents are shared by
        text), the same variables and operation name, and a viewer that differs at most in which of the user's
        sessions it signed in with and in request metadata (address, agent, request id, expiry): role,
        organization, user, membership, API key and its permissions and embed token and its sections all match.
        So a viewer never receives a result computed for another who may see less or more.
        """
        assert operation.connection.viewer is not None
        if state is None:  # nothing read to share a result of
            return await operation.connection.event_payload(
                operation.document, operation.variables, operation.name, value
            )
        key = (
            operation.stream.key,
            id(operation.document),
            json.dumps(operation.variables, sort_keys=True, separators=(",", ":"), default=str),
            operation.name,
            equivalent_viewer(operation.connection.viewer),
        )
        entry = self._payloads.get(key)
        if entry is None or entry[0] is not state or _failed(entry[1]):
            connection = operation.connection
            future = asyncio.ensure_future(
                connection.event_payload(operation.document, operation.variables, operation.name, value)
            )
            future.add_done_callback(_retrieve_failure)
            # the state and the document are held by the entry, so their identities cannot be reused meanwhile
            entry = (state, future, operation.document)
            self._payloads[key] = entry
        return await asyncio.shield(entry[1])

    def forget_payloads(self, stream_key: str) -> None:
        """Drops the shared payloads of a key whose last subscriber in this process left."""
        if not self.pubsub.has_subscribers(stream_key):
            for key in [k for k in self._payloads if k[0] == stream_key]:
                del self._payloads[key]

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="live-session-sweep")
        self._revocations = self.pubsub.add(ACCESS_REVOKED, self._revoked)

    def _revoked(self, _: Subscription) -> None:
        """A session, key or token was revoked, or a customer disabled, somewhere: sweep now rather than at the
        next period (revocations arriving together share one sweep)."""
        if self._revocation_sweep is None or self._revocation_sweep.done():
            self._revocation_sweep = asyncio.ensure_future(self._sweep_soon())

    async def _sweep_soon(self) -> None:
        await asyncio.sleep(REVOCATION_DEBOUNCE)
        try:
            await self.sweep()
        except Exception:
            log.exception("live_session_sweep_failed")

    async def stop(self) -> None:
        if self._revocations is not None:
            self.pubsub.remove(self._revocations)
        if self._revocation_sweep is not None:
            self._revocation_sweep.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Coroutine[Any, Any, None]:
        """The coroutine serving one socket, the connection's own. Not a coroutine function itself: its frame would
        stay alive beside the connection's for as long as the socket is open (248 bytes per idle subscription)."""
        return Connection(self, send).serve(scope, receive)

    def accepted_viewer(self, scope: dict[str, Any], origin: SocketOrigin) -> Viewer | None:
        """The anonymous viewer of a handshake we accept (our subprotocol, an allowed origin: server/cors.py), or
        None.

        Kept out of `Connection.serve`, whose frame lives as long as the socket: nothing of the handshake stays
        alive."""
        headers = dict(scope.get("headers") or ())
        if PROTOCOL not in scope.get("subprotocols", ()) or origin is SocketOrigin.REFUSED:
            return None
        return Viewer.anonymous(
            ip=client_ip(scope.get("client")),
            user_agent=headers.get(b"user-agent", b"").decode("latin-1") or None,
            request_id=new_request_id(),
        )

    # --- session sweep ------------------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ws_recheck_seconds)
            try:
                await self.sweep()
            except Exception:
                log.exception("live_session_sweep_failed")

    async def sweep(self) -> None:
        """Closes (4403) the sockets whose token no longer authenticates or which watch a customer their viewer
        may no longer see. One authentication and one visibility query per distinct token."""
        by_token: defaultdict[str, list[Connection]] = defaultdict(list)
        for connection in list(self.connections):
            if connection.token is not None and not connection.closed:
                by_token[connection.token].append(connection)
        if not by_token:
            return
        viewers = await authenticate_tokens(list(by_token), Viewer.anonymous())
        # visibility depends on who asks, not on which of their sessions: one query per principal
        by_principal: defaultdict[Viewer, list[Connection]] = defaultdict(list)
        for token, connections in by_token.items():
            viewer = viewers.get(token)
            if viewer is None:
                for connection in connections:
                    await connection.close(4403, "Forbidden")
            else:
                by_principal[replace(viewer, session_id=None)] += connections
        for principal, connections in by_principal.items():
            watched = {cid for connection in connections for cid in connection.customer_ids()}
            if not watched:
                continue
            visible = await visible_customer_ids(principal, watched)
            for connection in connections:
                if not connection.customer_ids() <= visible:
                    await connection.close(4403, "Forbidden")


class Connection:
    """One socket: who it is (after connection_init) and its operations by id."""

    __slots__ = ("base", "closed", "embed_only", "endpoint", "operations", "send", "token", "viewer")

    def __init__(self, endpoint: LiveEndpoint, send: Any) -> None:
        self.endpoint = endpoint
        self.send = send
        self.base: Viewer | None = None  # the handshake's anonymous viewer (`accept`), then the signed-in one
        self.embed_only = False  # opened from a sandboxed iframe (`Origin: null`): embed tokens only
        self.viewer: Viewer | None = None
        self.token: str | None = None
        self.closed = False
        self.operations: dict[str, LiveOperation | OneShot | None] = {}  # None: being set up

    async def accept(self, scope: dict[str, Any]) -> bool:
        """Accepts the handshake (True) or refuses it."""
        origin = await socket_origin(scope)
        base = self.endpoint.accepted_viewer(scope, origin)
        if base is None:
            await self.send({"type": "websocket.close", "code": 1008})  # before the accept: the handshake gets 403
            return False
        await self.send({"type": "websocket.accept", "subprotocol": PROTOCOL})
        self.base, self.embed_only = base, origin is SocketOrigin.EMBED_ONLY
        # the headers have been read (origin, agent) and nothing reads them again, but the server keeps the scope
        # as long as the socket: let them go (uvicorn's list, its tuples and lower-cased names, ~600 bytes)
        scope["headers"] = ()
        return True

    async def serve(self, scope: dict[str, Any], receive: Any) -> None:
        """The socket from its handshake to its end, in one coroutine: its frame is the only one of ours that stays
        alive for as long as the socket is open, so the receive loop is not a coroutine of its own."""
        if (await receive())["type"] != "websocket.connect" or not await self.accept(scope):
            return
        self.endpoint.connections.add(self)
        try:
            deadline = asyncio.get_running_loop().time() + self.endpoint.settings.ws_init_timeout_seconds
            while not self.closed:
                if self.viewer is None:
                    try:
                        async with asyncio.timeout_at(deadline):
                            message = await receive()
                    except TimeoutError:
                        await self.close(4408, "Connection initialisation timeout")
                        return
                else:
                    message = await receive()
                if message["type"] == "websocket.disconnect":
                    self.closed = True
                    return
                if message["type"] != "websocket.receive":
                    continue
                if _too_big(message, self.endpoint.settings.max_body_bytes):
                    # the same cap as HTTP bodies: a huge frame is parsed by nobody (1009: message too big)
                    await self.close(1009, "Message too big")
                    return
                data = _decoded(message)
                message = None  # an idle socket keeps neither its last frame nor its last message alive
                if data is None:
                    await self.close(4400, "Failed to parse message")
                    return
                try:
                    await self.handle(data)
                except Exception:
                    log.exception("live_message_failed", request_id=self.base.request_id if self.base else None)
                    await self.close(1011, "Internal error")
                    return
                data = None
        finally:
            self.endpoint.connections.discard(self)
            self.release()

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            await self.init(message.get("payload"))
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self.subscribe(message.get("id"), message.get("payload"))
        elif kind == "complete":
            self.complete(message.get("id"))
        else:
            await self.close(4400, f"Unknown message type: {kind}")

    async def init(self, payload: Any) -> None:
        if self.viewer is not None:
            await self.close(4429, "Too many initialisation requests")
            return
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            await self.close(4400, "Invalid connection init payload")
            return
        raw = payload.get("authorization") or payload.get("Authorization")
        scheme, _, token = str(raw or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await self.close(4403, "Forbidden")
            return
        assert self.base is not None  # set by the handshake
        try:
            viewer = await viewer_from_token(token, self.base)
        except InvalidToken:
            await self.close(4403, "Forbidden")
            return
        if self.embed_only and viewer.embed_token_id is None:
            await self.close(4403, "Forbidden")  # only the embed widget runs in an opaque origin
            return
        self.viewer = viewer
        # the signed-in viewer carries the handshake's address, agent and request id: the anonymous one can go
        self.base = viewer
        self.token = token
        await self.send_json({"type": "connection_ack"})

    async def subscribe(self, id: Any, payload: Any) -> None:
        if self.viewer is None:
            await self.close(4401, "Unauthorized")
            return
        if not isinstance(id, str) or not id or not isinstance(payload, dict):
            await self.close(4400, "Invalid subscribe message")
            return
        if id in self.operations:
            await self.close(4409, f"Subscriber for {id} already exists")
            return
        try:  # APQ and PERSISTED_ONLY, as over HTTP
            query = await self.endpoint.persisted.resolve(
                payload.get("query"), payload.get("extensions"), payload.get("documentId")
            )
        except PersistedQueryError as exc:
            await self.send_errors(id, [GraphQLError(exc.message, extensions={"code": exc.code})])
            return
        variables, name = payload.get("variables"), payload.get("operationName")
        if not isinstance(query, str) or not isinstance(variables, dict | None) or not isinstance(name, str | None):
            await self.close(4400, "Invalid subscribe message")
            return
        if len(self.operations) >= MAX_OPERATIONS:
            await self.send_errors(id, [GraphQLError("Subscription limit reached")])
            return
        document = prepare_document(schema, query, suggestions=self.endpoint.settings.is_dev)
        if isinstance(document, list):
            await self.send_errors(id, document)
            return
        operation = get_operation_ast(document, name)
        if operation is None:
            await self.send_errors(id, [GraphQLError("Could not determine the operation to run.")])
            return
        too_costly = cost_error(self.endpoint.graphql_schema, document, name, variables)
        if too_costly is not None:  # the same limit as over HTTP, for subscriptions (their pushes) and one-shots
            await self.send_errors(id, [too_costly])
            return
        if self.viewer.is_machine:  # API keys and embed tokens: their permissions, then their request limit
            reason = refusal(self.viewer, self.endpoint.graphql_schema, document, name)
            if reason:
                await self.send_errors(id, [GraphQLError(reason, extensions={"code": str(ErrorCode.FORBIDDEN)})])
                return
            try:
                await self.endpoint.rate_limiter.check(self.viewer)
            except RateLimited as exc:
                await self.send_errors(id, [GraphQLError(str(exc), extensions={"code": str(ErrorCode.RATE_LIMITED)})])
                return
        if operation.operation is not OperationType.SUBSCRIPTION:
            one_shot = OneShot(self, id)
            self.operations[id] = one_shot
            one_shot.task = asyncio.ensure_future(one_shot.run(query, variables, name))
            one_shot.task.add_done_callback(_log_failure)
            return
        self.operations[id] = None
        try:
            stream = await self.source(document, variables, name)
        except Exception as exc:  # a bug in a resolver: masked like any unexpected error
            stream = ExecutionResult(None, [GraphQLError(str(exc), original_error=exc, path=[id])])
        if self.closed or id not in self.operations:  # completed (or closed) while it was being set up
            return
        if isinstance(stream, ExecutionResult):
            del self.operations[id]
            await self.send_errors(id, stream.errors or [GraphQLError("Subscription refused")])
        elif isinstance(stream, LiveStream):
            self.operations[id] = LiveOperation(self, id, document, variables, name, stream)
        else:  # a resolver yielding by itself: driven by a task like any async iterable
            driven = OneShot(self, id)
            self.operations[id] = driven
            driven.task = asyncio.ensure_future(driven.iterate(document, variables, name, stream))
            driven.task.add_done_callback(_log_failure)

    async def source(
        self, document: DocumentNode, variables: dict[str, Any] | None, name: str | None
    ) -> AsyncIterable[Any] | ExecutionResult:
        """Runs the subscription field's resolver: authorisation, arguments, the stream it returns."""
        executor = self.executor(document, variables, name)
        if isinstance(executor, list):
            return ExecutionResult(None, executor)
        stream = create_source_event_stream(executor)
        return await stream if is_awaitable(stream) else stream  # type: ignore[return-value]

    def executor(self, document: DocumentNode, variables: dict[str, Any] | None, name: str | None) -> Any:
        return BoundedExecution.build(
            self.endpoint.graphql_schema,
            document,
            context_value=self.context(),
            raw_variable_values=variables,
            operation_name=name,
            hide_suggestions=not self.endpoint.settings.is_dev,
        )

    def context(self) -> Context:
        """A fresh context (and DataLoaders) for each execution: a push must never see a previous push's rows."""
        assert self.viewer is not None
        viewer = self.viewer
        return Context(
            None,
            None,
            viewer,
            viewer.request_id or new_request_id(),
            pubsub=self.endpoint.pubsub,
            execution_timeout=self.endpoint.settings.execution_timeout_seconds,
        )

    def complete(self, id: Any) -> None:
        operation = self.operations.pop(id, None) if isinstance(id, str) else None
        if operation is not None:
            operation.stop()

    def customer_ids(self) -> set[int]:
        return {op.stream.customer_id for op in self.operations.values() if isinstance(op, LiveOperation)}

    async def send_event(
        self, id: str, document: DocumentNode, variables: dict[str, Any] | None, name: str | None, value: Any
    ) -> None:
        """Executes the operation's selection against one event's object and sends the result."""
        executor = self.executor(document, variables, name)
        if isinstance(executor, list):  # variables stopped coercing: cannot happen with the same schema
            await self.send_errors(id, executor)
            return
        result = execute_subscription_event(executor.build_per_event_executor(value))
        await self.send_result(id, await result if is_awaitable(result) else result)  # type: ignore[arg-type]

    async def send_result(self, id: str, result: ExecutionResult | StrawberryExecutionResult) -> None:
        await self.send_json({"id": id, "type": "next", "payload": self.result_payload(result)})

    def result_payload(self, result: ExecutionResult | StrawberryExecutionResult) -> dict[str, Any]:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            request_id = self.viewer.request_id if self.viewer else ""
            payload["errors"] = [
                client_error(e, request_id, suggestions=self.endpoint.settings.is_dev).formatted for e in result.errors
            ]
        return payload

    async def event_payload(
        self, document: DocumentNode, variables: dict[str, Any] | None, name: str | None, value: Any
    ) -> str:
        """The JSON of a `next` payload: the operation's selection executed against one event's object."""
        executor = self.executor(document, variables, name)
        if isinstance(executor, list):  # variables stopped coercing: cannot happen with the same schema
            return json.dumps({"data": None, "errors": [e.formatted for e in executor]}, separators=(",", ":"))
        result = execute_subscription_event(executor.build_per_event_executor(value))
        done = await result if is_awaitable(result) else result
        return json.dumps(self.result_payload(done), separators=(",", ":"))  # type: ignore[arg-type]

    async def send_payload(self, id: str, payload: str) -> None:
        """Sends a `next` message around a payload already serialised (shared by equivalent subscribers)."""
        if self.closed:
            return
        text = f'{{"id":{json.dumps(id)},"type":"next","payload":{payload}}}'
        try:
            await self.send({"type": "websocket.send", "text": text})
        except Exception:  # the peer went away: the receive loop sees the disconnect and cleans up
            self.closed = True

    async def send_errors(self, id: str, errors: list[GraphQLError]) -> None:
        request_id = self.viewer.request_id if self.viewer else ""
        suggestions = self.endpoint.settings.is_dev
        formatted = [client_error(e, request_id, suggestions=suggestions).formatted for e in errors]
        await self.send_json({"id": id, "type": "error", "payload": formatted})

    async def send_json(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            await self.send({"type": "websocket.send", "text": json.dumps(message, separators=(",", ":"))})
        except Exception:  # the peer went away: the receive loop sees the disconnect and cleans up
            self.closed = True

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.send({"type": "websocket.close", "code": code, "reason": reason})

    def release(self) -> None:
        self.closed = True
        operations, self.operations = self.operations, {}
        for operation in operations.values():
            if operation is not None:
                operation.stop()


class LiveOperation:
    """A subscription: a pub/sub callback, the client's document, and the state of its coalescing."""

    __slots__ = (
        "backlog",
        "busy",
        "connection",
        "document",
        "id",
        "last",
        "name",
        "stream",
        "subscription",
        "task",
        "timer",
        "variables_json",
        "waiting",
    )

    def __init__(
        self,
        connection: Connection,
        id: str,
        document: DocumentNode,
        variables: dict[str, Any] | None,
        name: str | None,
        stream: LiveStream,
    ) -> None:
        self.connection = connection
        self.id = id
        self.document = document
        # kept as canonical JSON text, the same string for every subscriber sending the same variables (interned):
        # the decoded dict, its keys table and its strings were ~300 bytes per idle subscription, the text ~75
        # shared by the subscribers of a customer. Decoded only when the operation is executed.
        self.variables_json = (
            None if variables is None else sys.intern(json.dumps(variables, sort_keys=True, separators=(",", ":")))
        )
        self.name = name
        self.stream = stream
        self.last = 0.0  # loop time of the last push
        self.busy = False  # a push is under way
        self.waiting = False  # a change arrived during the push or the pause
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.backlog: list[dict[str, Any]] | None = None
        self.subscription: Subscription | None = connection.endpoint.pubsub.add(stream.key, self.changed)
        if stream.initial:
            # the current state now; a change committing meanwhile is caught by the subscription just added
            self.schedule()

    @property
    def variables(self) -> dict[str, Any] | None:
        """The operation's variables (a fresh dict each time)."""
        return None if self.variables_json is None else json.loads(self.variables_json)

    def changed(self, subscription: Subscription) -> None:
        if self.stream.each_change:
            if self.backlog is None:
                self.backlog = []
            if len(self.backlog) < BACKLOG:
                self.backlog.append(subscription.payload)
        if self.busy or self.timer is not None:
            self.waiting = True  # the push after this one reads the state then
            return
        self.schedule()

    def schedule(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.last + MIN_INTERVAL - loop.time()
        if delay > 0:
            self.timer = loop.call_later(delay, self.flush)
        else:
            self.flush()

    def flush(self) -> None:
        self.timer = None
        self.busy = True
        self.waiting = False
        self.task = asyncio.ensure_future(self.push())

    async def push(self) -> None:
        try:
            if self.stream.each_change:
                payloads, self.backlog = self.backlog or [], None
                for payload in payloads:
                    await self.send(await self.stream.render(None, payload))
            else:
                assert self.subscription is not None
                read = self.stream.read
                state = await self.connection.endpoint.pubsub.shared_read(self.subscription, read) if read else None
                value = await self.stream.render(state, self.subscription.payload)
                if value is not None and self.subscription is not None:
                    shared = await self.connection.endpoint.shared_payload(self, state, value)
                    await self.connection.send_payload(self.id, shared)
        except asyncio.CancelledError:
            raise
        except Exception:
            # a failed read (database restarting): the next change pushes the state again
            log.exception("live_push_failed", key=self.stream.key)
        finally:
            self.task = None
            self.busy = False
            self.last = asyncio.get_running_loop().time()
            if self.waiting and self.subscription is not None:
                self.waiting = False
                self.schedule()

    async def send(self, value: Any) -> None:
        if value is None or self.subscription is None:
            return
        await self.connection.send_event(self.id, self.document, self.variables, self.name, value)

    def stop(self) -> None:
        if self.subscription is not None:
            self.connection.endpoint.pubsub.remove(self.subscription)
            self.subscription = None
            self.connection.endpoint.forget_payloads(self.stream.key)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            self.task = None


class OneShot:
    """A query or mutation sent over the socket (full Strawberry pipeline), or a stream a resolver yields itself."""

    __slots__ = ("connection", "id", "task")

    def __init__(self, connection: Connection, id: str) -> None:
        self.connection = connection
        self.id = id
        self.task: asyncio.Future[None] | None = None

    async def run(self, query: str, variables: dict[str, Any] | None, name: str | None) -> None:
        connection = self.connection
        try:
            result: ExecutionResult | StrawberryExecutionResult
            try:
                # field suggestions as over HTTP; set in this operation's task only: a context set for the whole
                # connection's task would be one more object per idle socket (136 bytes)
                with field_suggestions(connection.endpoint.settings.is_dev):
                    result = await schema.execute(
                        query, variable_values=variables, context_value=connection.context(), operation_name=name
                    )
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # completed by the client, or the socket closed
                # a cancellation leaked out of the operation (see server/graphql.py): answer it, masked
                # (CancelledError is a BaseException: graphql-core's masking reads `original_error` only)
                error = GraphQLError(str(exc), original_error=exc, path=[self.id])  # type: ignore[arg-type]
                result = ExecutionResult(None, [error])
            await connection.send_result(self.id, result)
            await connection.send_json({"id": self.id, "type": "complete"})
        finally:
            if connection.operations.get(self.id) is self:
                del connection.operations[self.id]

    async def iterate(
        self, document: DocumentNode, variables: dict[str, Any] | None, name: str | None, stream: Any
    ) -> None:
        connection = self.connection
        try:
            async for value in stream:
                await connection.send_event(self.id, document, variables, name, value)
            await connection.send_json({"id": self.id, "type": "complete"})
        finally:
            if connection.operations.get(self.id) is self:
                del connection.operations[self.id]
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def equivalent_viewer(viewer: Viewer) -> Viewer:
    """What a push's execution can observe of a viewer: everything but the session it signed in with and the
    request metadata (two sockets of the same user in the same organization get the same answer)."""
    return replace(viewer, session_id=None, ip=None, user_agent=None, request_id="", credential_expires_at=None)


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _retrieve_failure(future: asyncio.Future[Any]) -> None:
    """Marks a shared execution's failure as seen: its subscribers got it (and logged it) or all left."""
    if not future.cancelled():
        future.exception()


def _log_failure(task: asyncio.Future[None]) -> None:
    """An operation's task failed outside GraphQL's own error handling (a bug): log it, the socket goes on."""
    if not task.cancelled() and task.exception() is not None:
        log.error("live_operation_failed", exc_info=task.exception())


def _too_big(message: dict[str, Any], cap: int) -> bool:
    """Whether a frame is over `cap` bytes (as UTF-8, like an HTTP body). A character is 1 to 4 bytes: most
    frames are decided without encoding them."""
    text = message.get("text")
    if text is None:
        return len(message.get("bytes") or b"") > cap
    if len(text) > cap or len(text) * 4 <= cap:
        return len(text) > cap
    return len(text.encode("utf-8", "surrogatepass")) > cap


def _decoded(message: dict[str, Any]) -> dict[str, Any] | None:
    try:
        data = json.loads(message.get("text") or message.get("bytes") or b"")
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("type"), str) else None
