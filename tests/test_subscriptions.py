"""Live subscriptions over graphql-transport-ws against real uvicorn processes, with a stock client (gql)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError, TransportServerError
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed

from tests.conftest import REDIS_URL
from tests.servers import create_admin, fresh_database, live_server, set_features

CREDITS = gql("subscription($id: ID!) { creditsUpdated(customerId: $id) { id available used assigned health } }")
WALLET = gql("subscription($id: ID!) { walletUpdated(customerId: $id) { id balance { amount } } }")
CAP = gql("subscription($id: ID!) { spendingCapUpdated(customerId: $id) { id spentThisMonth { amount } status } }")
PASSWORD = "Test-pass-1"


class Api:
    """A client of one server over HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.ws = base.replace("http://", "ws://") + "/graphql"

    async def __call__(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{self.base}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    async def login(self, login: str, password: str) -> str:
        data = await self(
            "mutation($i: LoginInput!) { login(input: $i) { token errors { code } } }",
            {"i": {"login": login, "password": password}},
        )
        assert data["login"]["errors"] == [], data
        return data["login"]["token"]


async def setup_tenant(api: Api, admin_email: str, admin_password: str) -> dict[str, Any]:
    admin = await api.login(admin_email, admin_password)
    n = uuid.uuid4().hex[:6]
    partner = await api(
        """mutation($i: PartnerCreateInput!) { partnerCreate(input: $i) { partner { id } errors { code } } }""",
        {"i": {"name": f"P{n}", "ownerEmail": f"owner{n}@example.com", "ownerPassword": PASSWORD}},
        admin,
    )
    partner_id = partner["partnerCreate"]["partner"]["id"]
    staff = await api.login(f"owner{n}@example.com", PASSWORD)
    customers = []
    for i in range(2):
        created = await api(
            """mutation($i: CustomerCreateInput!) { customerCreate(input: $i) { customer { id } errors { field code } } }""",
            {
                "i": {
                    "username": f"c{n}{i}",
                    "firstName": "A",
                    "lastName": "B",
                    "email": f"c{n}{i}@example.com",
                    "password": PASSWORD,
                    "passwordConfirmation": PASSWORD,
                    "companyName": f"C{n}{i}",
                }
            },
            staff,
        )
        customers.append(created["customerCreate"]["customer"]["id"])
    await api(
        """mutation($i: PartnerCreditsAddInput!) { partnerCreditsAdd(input: $i) { errors { code } } }""",
        {"i": {"partnerId": partner_id, "credits": "1000", "idempotencyKey": uuid.uuid4().hex}},
        admin,
    )
    return {
        "admin": admin,
        "staff": staff,
        "customers": customers,
        "partner": partner_id,
        "customer_login": (f"c{n}0@example.com", PASSWORD),
    }


async def recharge(api: Api, token: str, customer: str, credits: str) -> None:
    data = await api(
        """mutation($i: CustomerCreditsRechargeInput!) { customerCreditsRecharge(input: $i) { errors { code } } }""",
        {"i": {"customerId": customer, "credits": credits, "idempotencyKey": uuid.uuid4().hex}},
        token,
    )
    assert data["customerCreditsRecharge"]["errors"] == []


def client(api: Api, token: str | None) -> Client:
    init = {"authorization": f"Bearer {token}"} if token else {}
    return Client(transport=WebsocketsTransport(url=api.ws, init_payload=init, subprotocols=["graphql-transport-ws"]))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str, tuple[str, str]]]:
    """One server for the module (each test signs up its own tenant): a database and a process start cost ~7 s."""
    tmp_path = tmp_path_factory.mktemp("live")
    with fresh_database(tmp_path) as url:
        admin = create_admin(url)
        # every test signs in from 127.0.0.1: more than the default 30 attempts a minute per address
        limits = {"LOGIN_IP_ATTEMPT_LIMITS": "1000/minute"}
        with live_server(url, tmp_path, WS_RECHECK_SECONDS="0.5", WS_INIT_TIMEOUT_SECONDS="1", **limits) as base:
            yield Api(base), url, admin


async def test_subscriber_receives_the_current_state_then_the_new_credit_balance(server) -> None:
    # given a customer with 5 credits
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    customer = tenant["customers"][0]
    await recharge(api, tenant["staff"], customer, "5")
    async with client(api, tenant["staff"]) as session:
        stream = session.subscribe(CREDITS, variable_values={"id": customer})
        # when it subscribes: the current state comes first, with no change
        first = await asyncio.wait_for(anext(stream), 10)
        # then after a change, the new state
        await recharge(api, tenant["staff"], customer, "25")
        update = await asyncio.wait_for(anext(stream), 10)
        assert first["creditsUpdated"]["id"] == update["creditsUpdated"]["id"]  # the same Node: caches update in place
        assert float(first["creditsUpdated"]["available"]) == 5
        assert float(update["creditsUpdated"]["available"]) == 30
        await stream.aclose()


async def test_the_first_message_of_each_state_subscription_is_the_current_state(server) -> None:
    # given a customer with credits, a wallet balance and a spending cap, and the same state read by a query
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    customer, staff = tenant["customers"][0], tenant["staff"]
    await recharge(api, staff, customer, "12")
    data = await api(
        """mutation($i: BillingPreferencesUpdateInput!) { billingPreferencesUpdate(input: $i) { errors { code } } }""",
        {"i": {"customerId": customer, "billingMode": "REFILLABLE_WALLET", "monthlySpendingCap": "50.00"}},
        staff,
    )
    assert data["billingPreferencesUpdate"]["errors"] == [], data
    data = await api(
        """mutation($i: WalletRefillInput!) { walletRefill(input: $i) { errors { code } } }""",
        {"i": {"customerId": customer, "amount": "20.00", "idempotencyKey": uuid.uuid4().hex}},
        staff,
    )
    assert data["walletRefill"]["errors"] == [], data
    queried = await api(
        """query($id: ID!) { customer(id: $id) { credits { id available } wallet { id balance { amount } }
        spendingCap { id spentThisMonth { amount } status } } }""",
        {"id": customer},
        staff,
    )
    usage = gql("subscription($id: ID!) { usageSummaryUpdated(customerId: $id) { unitType quantity cost { amount } } }")
    async with client(api, staff) as session:
        # when each state view is subscribed to, with nothing changing
        firsts = {}
        for name, document in (
            ("creditsUpdated", CREDITS),
            ("walletUpdated", WALLET),
            ("spendingCapUpdated", CAP),
            ("usageSummaryUpdated", usage),
        ):
            stream = session.subscribe(document, variable_values={"id": customer})
            firsts[name] = (await asyncio.wait_for(anext(stream), 10))[name]
            await stream.aclose()
    # then each first message is the state the query shows
    state = queried["customer"]
    assert firsts["creditsUpdated"]["id"] == state["credits"]["id"]
    assert firsts["creditsUpdated"]["available"] == state["credits"]["available"]
    assert firsts["walletUpdated"] == state["wallet"]
    assert firsts["spendingCapUpdated"] == state["spendingCap"]
    assert firsts["usageSummaryUpdated"] == []


async def test_a_refused_change_pushes_nothing(server) -> None:
    # given a subscriber and a pool of 1,000 credits
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    customer = tenant["customers"][0]
    async with client(api, tenant["staff"]) as session:
        stream = session.subscribe(CREDITS, variable_values={"id": customer})
        await asyncio.wait_for(anext(stream), 10)  # the current state
        pending = asyncio.ensure_future(anext(stream))
        # when a recharge beyond the pool is refused (its transaction rolls back)
        data = await api(
            """mutation($i: CustomerCreditsRechargeInput!) { customerCreditsRecharge(input: $i) {
            errors { code } } }""",
            {"i": {"customerId": customer, "credits": "5000", "idempotencyKey": uuid.uuid4().hex}},
            tenant["staff"],
        )
        assert [e["code"] for e in data["customerCreditsRecharge"]["errors"]] == ["POOL_EXHAUSTED"]
        # then nothing is pushed
        done, _ = await asyncio.wait({pending}, timeout=1.5)
        assert not done
        # and the next committed change is
        await recharge(api, tenant["staff"], customer, "3")
        update = await asyncio.wait_for(pending, 10)
        assert float(update["creditsUpdated"]["available"]) == 3
        await stream.aclose()


async def test_unauthorised_subscriptions_are_refused(server) -> None:
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    other = await setup_tenant(api, *admin)
    # no token: the connection is rejected in connection_init
    with pytest.raises((TransportServerError, ConnectionError, Exception)):
        async with client(api, None) as session:
            await session.execute(
                gql("subscription($id: ID!) { creditsUpdated(customerId: $id) { id } }"),
                variable_values={"id": tenant["customers"][0]},
            )
    # another partner's customer: NOT_FOUND, like the query
    async with client(api, other["staff"]) as session:
        with pytest.raises(TransportQueryError) as refused:
            async for _ in session.subscribe(CREDITS, variable_values={"id": tenant["customers"][0]}):
                pass
        assert "NOT_FOUND" in str(refused.value) or "not found" in str(refused.value).lower()


async def test_a_revoked_session_is_disconnected(server) -> None:
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    token = await api.login(*tenant["customer_login"])
    async with client(api, token) as session:
        stream = session.subscribe(CREDITS, variable_values={"id": tenant["customers"][0]})
        await asyncio.wait_for(anext(stream), 10)  # the current state
        pending = asyncio.ensure_future(anext(stream))
        await api(
            "mutation($i: CustomerDisableInput!) { customerDisable(input: $i) { errors { code } } }",
            {"i": {"customerId": tenant["customers"][0]}},
            tenant["staff"],
        )
        with pytest.raises(Exception):  # noqa: B017 - the transport closes with 4403
            await asyncio.wait_for(pending, 10)


async def test_bursts_are_coalesced_to_the_latest_state(server) -> None:
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    customer = tenant["customers"][0]
    received: list[dict] = []
    async with client(api, tenant["staff"]) as session:

        async def collect() -> None:
            async for update in session.subscribe(CREDITS, variable_values={"id": customer}):
                received.append(update["creditsUpdated"])

        task = asyncio.ensure_future(collect())
        await asyncio.sleep(0.3)
        await asyncio.gather(*[recharge(api, tenant["staff"], customer, "1") for _ in range(20)])
        await asyncio.sleep(1.5)
        task.cancel()
    assert received, "no update arrived"
    assert float(received[-1]["available"]) == 20  # the latest state always arrives
    assert len(received) < 20  # and bursts were coalesced


@pytest.mark.slow
async def test_connect_disconnect_cycles_leave_no_subscribers_behind(server) -> None:
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    customer = tenant["customers"][0]

    async def cycle() -> None:
        async with client(api, tenant["staff"]) as session:
            stream = session.subscribe(CREDITS, variable_values={"id": customer})
            task = asyncio.ensure_future(anext(stream))
            await asyncio.sleep(0.01)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # cancelled while waiting, or done: the current state came first
            await stream.aclose()

    async def metrics() -> dict[str, float]:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{api.base}/metrics")).text
        values = {}
        for line in text.splitlines():
            if line.startswith(
                ("partnerdesk_live_subscriptions ", "partnerdesk_asyncio_tasks ", "process_resident_memory_bytes ")
            ):
                name, value = line.split()
                values[name] = float(value)
        return values

    for _ in range(20):
        await cycle()
    await asyncio.sleep(0.5)
    before = await metrics()
    for _ in range(200):
        await cycle()
    await asyncio.sleep(1)
    after = await metrics()
    gc.collect()
    assert after["partnerdesk_live_subscriptions"] == 0
    assert after["partnerdesk_asyncio_tasks"] <= before["partnerdesk_asyncio_tasks"] + 2, (before, after)
    assert after["process_resident_memory_bytes"] - before["process_resident_memory_bytes"] < 20 * 2**20, (
        before,
        after,
    )


@pytest.mark.redis
@pytest.mark.postgres
async def test_two_processes_fan_out_through_redis(tmp_path: Path) -> None:
    # given two API processes on one database and one Redis
    with fresh_database(tmp_path) as url:
        admin = create_admin(url)
        namespace = f"pd-fanout-{uuid.uuid4().hex[:6]}"
        with (
            live_server(url, tmp_path, REDIS_URL=REDIS_URL or "", DRAMATIQ_NAMESPACE=namespace) as base_a,
            live_server(url, tmp_path, REDIS_URL=REDIS_URL or "", DRAMATIQ_NAMESPACE=namespace) as base_b,
        ):
            api_a, api_b = Api(base_a), Api(base_b)
            tenant = await setup_tenant(api_b, *admin)
            customer = tenant["customers"][0]
            # when a subscriber on A watches while the change is written through B
            async with client(api_a, tenant["staff"]) as session:
                stream = session.subscribe(CREDITS, variable_values={"id": customer})
                await asyncio.wait_for(anext(stream), 10)  # the current state
                first = asyncio.ensure_future(anext(stream))
                await recharge(api_b, tenant["staff"], customer, "42")
                # then A pushes the new balance
                update = await asyncio.wait_for(first, 10)
                assert float(update["creditsUpdated"]["available"]) == 42
                await stream.aclose()


# --- the protocol, spoken by hand (close codes are what a client library hides) -------------------------------------


class Socket:
    """A raw graphql-transport-ws client."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, within: float = 10) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), within))

    async def init(self, token: str) -> None:
        await self.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert (await self.receive()) == {"type": "connection_ack"}

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})

    async def closed_with(self, within: float = 10) -> int | None:
        """The close code the server ends the connection with (fails if a message arrives instead)."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), within)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        raise AssertionError(f"expected the server to close, got {message}")


@contextlib.asynccontextmanager
async def socket(api: Api) -> AsyncIterator[Socket]:
    async with websockets.connect(api.ws, subprotocols=["graphql-transport-ws"]) as ws:
        yield Socket(ws)


def pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


async def test_protocol_rules_close_with_the_documented_codes(server) -> None:
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    token = tenant["staff"]
    credits = "subscription($id: ID!) { creditsUpdated(customerId: $id) { available } }"
    variables = {"id": tenant["customers"][0]}
    async with socket(api) as ws:  # subscribe before the acknowledgement
        await ws.subscribe("1", credits, variables)
        assert await ws.closed_with() == 4401
    async with socket(api) as ws:
        await ws.init(token)
        await ws.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert await ws.closed_with() == 4429
    async with socket(api) as ws:
        await ws.init(token)
        await ws.subscribe("1", credits, variables)
        assert (await ws.receive())["type"] == "next"  # the current state
        await ws.subscribe("1", credits, variables)
        assert await ws.closed_with() == 4409
    async with socket(api) as ws:
        await ws.init(token)
        await ws.send({"type": "shout"})
        assert await ws.closed_with() == 4400
    async with socket(api) as ws:
        await ws.ws.send("not json")
        assert await ws.closed_with() == 4400
    async with socket(api) as ws:
        await ws.send({"type": "connection_init", "payload": {"authorization": "Bearer pd_sess_forged"}})
        assert await ws.closed_with() == 4403
    async with socket(api) as ws:  # WS_INIT_TIMEOUT_SECONDS=1 on this server
        assert await ws.closed_with(within=5) == 4408
    with pytest.raises(websockets.exceptions.InvalidStatus):  # another subprotocol is refused at the handshake
        async with websockets.connect(api.ws, subprotocols=["graphql-ws"]):
            pass


async def test_ping_queries_and_errors_over_the_socket(server) -> None:
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    async with socket(api) as ws:
        await ws.init(tenant["staff"])
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong"
        # a query runs once through the full pipeline, then completes
        await ws.subscribe("q", "{ me { email } }")
        first, second = await ws.receive(), await ws.receive()
        assert first["type"] == "next" and first["payload"]["data"]["me"]["email"].startswith("owner")
        assert second == {"id": "q", "type": "complete"}
        # a query whose variables do not coerce answers as over HTTP, with field suggestions outside production
        typo = "query($g: UsageGroupBy!) { usageSummary(customerId: $c, from: $d, to: $d, groupBy: $g) { __typename } }"
        typo = typo.replace("query(", "query($c: ID!, $d: Date!, ")
        await ws.subscribe("typo", typo, {"c": tenant["customers"][0], "d": "2026-01-01", "g": "UNIT_TYP"})
        first, second = await ws.receive(), await ws.receive()
        assert first["type"] == "next" and "Did you mean the enum value 'UNIT_TYPE'?" in str(first["payload"])
        assert second == {"id": "typo", "type": "complete"}
        # a document that does not validate: an error message for that id, the socket stays open
        await ws.subscribe("bad", "subscription { creditsUpdated(customerId: 1) { nope } }")
        error = await ws.receive()
        assert error["type"] == "error" and error["id"] == "bad" and "nope" in error["payload"][0]["message"]
        # the same limits as over HTTP
        deep = "subscription($id: ID!) { creditsUpdated(customerId: $id) " + "{ id " * 14 + "}" * 15
        await ws.subscribe("deep", deep, {"id": tenant["customers"][0]})
        assert (await ws.receive())["type"] == "error"
        # a customer outside the viewer's reach: NOT_FOUND, as the query answers
        other = await setup_tenant(api, *admin)
        await ws.subscribe(
            "x", "subscription($id: ID!) { walletUpdated(customerId: $id) { id } }", {"id": other["customers"][0]}
        )
        refused = await ws.receive()
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "NOT_FOUND"
        # after all that, a subscription still works on the same socket
        await ws.subscribe(
            "c",
            "subscription($id: ID!) { creditsUpdated(customerId: $id) { available } }",
            {"id": tenant["customers"][0]},
        )
        current = await ws.receive()
        assert current == {"id": "c", "type": "next", "payload": {"data": {"creditsUpdated": {"available": "0"}}}}
        await recharge(api, tenant["staff"], tenant["customers"][0], "7")
        update = await ws.receive()
        assert update == {"id": "c", "type": "next", "payload": {"data": {"creditsUpdated": {"available": "7.000000"}}}}


async def test_at_most_fifty_operations_per_connection(server) -> None:
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    query = "subscription($id: ID!) { alertRaised(customerId: $id) { id } }"  # sends nothing until an alert
    async with socket(api) as ws:
        await ws.init(tenant["staff"])
        for i in range(51):
            await ws.subscribe(str(i), query, {"id": tenant["customers"][i % 2]})
        refused = await ws.receive()
        assert refused["id"] == "50" and refused["type"] == "error"
        assert refused["payload"][0]["message"] == "Subscription limit reached"
        # completing one frees a place
        await ws.send({"id": "0", "type": "complete"})
        await ws.subscribe("50", query, {"id": tenant["customers"][0]})
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong"  # no error for "50" came before the pong


async def test_api_keys_and_embed_tokens_on_sockets(server) -> None:
    api, url, admin = server
    tenant = await setup_tenant(api, *admin)
    customer = tenant["customers"][0]
    set_features(url, pk(customer), api_access=True, embed_urls_enabled=True, portal_enabled=True)

    async def key(permissions: list[str]) -> tuple[str, str]:
        data = await api(
            """mutation($i: ApiKeyCreateInput!) { apiKeyCreate(input: $i) { apiKey { id } secret errors { code } } }""",
            {"i": {"customerId": customer, "name": "dash", "permissions": permissions}},
            tenant["staff"],
        )
        assert data["apiKeyCreate"]["errors"] == [], data
        return data["apiKeyCreate"]["apiKey"]["id"], data["apiKeyCreate"]["secret"]

    credits = "subscription($id: ID!) { creditsUpdated(customerId: $id) { available } }"
    wallet = "subscription($id: ID!) { walletUpdated(customerId: $id) { balance { amount } } }"
    read_id, read_key = await key(["READ"])
    _, write_key = await key(["WRITE"])
    async with socket(api) as ws:  # a READ key watches its customer
        await ws.init(read_key)
        await ws.subscribe("1", credits, {"id": customer})
        assert (await ws.receive())["type"] == "next"  # the current state
        await recharge(api, tenant["staff"], customer, "3")
        assert (await ws.receive())["payload"]["data"]["creditsUpdated"]["available"] == "3.000000"
        # revoking the key ends the socket at the next session sweep
        revoked = await api(
            "mutation($i: ApiKeyRevokeInput!) { apiKeyRevoke(input: $i) { errors { code } } }",
            {"i": {"apiKeyId": read_id}},
            tenant["staff"],
        )
        assert revoked["apiKeyRevoke"]["errors"] == []
        assert await ws.closed_with(within=5) == 4403
    async with socket(api) as ws:  # a key without READ may not subscribe
        await ws.init(write_key)
        await ws.subscribe("1", credits, {"id": customer})
        refused = await ws.receive()
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"

    data = await api(
        """mutation($i: EmbedTokenCreateInput!) { embedTokenCreate(input: $i) { token errors { code } } }""",
        {"i": {"customerId": customer, "sections": ["WALLET"], "expiresInSeconds": 600}},
        tenant["staff"],
    )
    assert data["embedTokenCreate"]["errors"] == [], data
    async with socket(api) as ws:  # an embed token watches its sections only
        await ws.init(data["embedTokenCreate"]["token"])
        await ws.subscribe("w", wallet, {"id": customer})
        await ws.subscribe("c", credits, {"id": customer})
        messages = {(m := await ws.receive())["id"]: m for _ in range(2)}
        assert messages["c"]["type"] == "error" and messages["c"]["payload"][0]["extensions"]["code"] == "FORBIDDEN"
        assert messages["w"]["type"] == "next"  # the wallet subscription was accepted: its current state


async def test_revocations_disconnect_at_once_without_waiting_for_the_periodic_check(tmp_path: Path) -> None:
    # given a server whose periodic re-check is far away (5 minutes)
    with fresh_database(tmp_path) as url:
        admin = create_admin(url)
        with live_server(url, tmp_path, WS_RECHECK_SECONDS="300") as base:
            api = Api(base)
            tenant = await setup_tenant(api, *admin)
            credits = "subscription($id: ID!) { creditsUpdated(customerId: $id) { available } }"
            token = await api.login(*tenant["customer_login"])
            async with socket(api) as signed_out, socket(api) as disabled, socket(api) as bystander:
                await signed_out.init(token)
                await signed_out.subscribe("1", credits, {"id": tenant["customers"][0]})
                await disabled.init(await api.login(*tenant["customer_login"]))
                await disabled.subscribe("1", credits, {"id": tenant["customers"][0]})
                await bystander.init(tenant["staff"])
                await bystander.subscribe("1", credits, {"id": tenant["customers"][1]})
                for ws in (signed_out, disabled, bystander):
                    assert (await ws.receive())["type"] == "next"  # the current state
                # when the session signs out: its socket closes within seconds
                await api("mutation { logout { errors { code } } }", token=token)
                assert await signed_out.closed_with(within=5) == 4403
                # when the customer is disabled: its users' sockets close, the partner's other watch goes on
                await api(
                    "mutation($i: CustomerDisableInput!) { customerDisable(input: $i) { errors { code } } }",
                    {"i": {"customerId": tenant["customers"][0]}},
                    tenant["staff"],
                )
                assert await disabled.closed_with(within=5) == 4403
                await bystander.send({"type": "ping"})
                assert (await bystander.receive())["type"] == "pong"


async def test_each_alert_and_the_latest_cap_state_are_pushed(server) -> None:
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    customer, staff = tenant["customers"][0], tenant["staff"]
    data = await api(
        """mutation($i: BillingPreferencesUpdateInput!) { billingPreferencesUpdate(input: $i) { errors { code } } }""",
        {"i": {"customerId": customer, "monthlySpendingCap": "1.00", "capAlertAt80": True}},
        staff,
    )
    assert data["billingPreferencesUpdate"]["errors"] == [], data

    async def minutes(count: str) -> None:
        event = {
            "idempotencyKey": uuid.uuid4().hex,
            "customerId": customer,
            "unitType": "VOICE_MINUTES",
            "quantity": count,
            "occurredAt": datetime.now(UTC).isoformat(),
        }
        recorded = await api(
            "mutation($i: UsageRecordInput!) { usageRecord(input: $i) { accepted } }", {"i": {"events": [event]}}, staff
        )
        assert recorded["usageRecord"]["accepted"] == 1

    async with socket(api) as ws:
        await ws.init(staff)
        await ws.subscribe("a", "subscription($id: ID!) { alertRaised(customerId: $id) { kind } }", {"id": customer})
        await ws.subscribe(
            "s", "subscription($id: ID!) { spendingCapUpdated(customerId: $id) { status } }", {"id": customer}
        )
        await asyncio.sleep(0.2)
        # when usage crosses 80% ($0.84) and, right after, 100% ($1.02) of the $1 cap
        await minutes("14")
        await minutes("3")
        alerts: list[str] = []
        caps: list[str] = []
        with contextlib.suppress(TimeoutError):
            while len(alerts) < 2 or caps[-1:] != ["REACHED"]:
                message = await ws.receive(within=5)
                if message["id"] == "a":
                    alerts.append(message["payload"]["data"]["alertRaised"]["kind"])
                else:
                    caps.append(message["payload"]["data"]["spendingCapUpdated"]["status"])
    # then both alerts arrive, in order (discrete events are not coalesced), and the cap ends REACHED
    assert alerts == ["CAP_WARNING", "CAP_REACHED"]
    assert caps[-1] == "REACHED"


async def test_review_regressions_over_the_socket(server) -> None:
    """Issue 11 over graphql-transport-ws: the same cost limit as HTTP, an answer when a failed field cancels its
    siblings, tokens with odd characters refused (not 1011), and frames capped like HTTP bodies."""
    api, _, admin = server
    tenant = await setup_tenant(api, *admin)
    customer = tenant["customers"][0]
    shared_load = (
        f'{{ a: customer(id: "{customer}") {{ features {{ id }} }}'
        f' b: customer(id: "{customer}") {{ features {{ id }} campaigns(after: "x") {{ totalCount }} }} }}'
    )
    nested_pages = (
        "query($p: ID!) { partner(id: $p) { customers(first: 100) { nodes { partner { customers(first: 100) {"
        " nodes { partner { customers(first: 3) { nodes { id } } } } } } } } } }"
    )
    refills = " ".join(f"r{i}: refills(first: 100) {{ edges {{ node {{ id }} }} nodes {{ id }} }}" for i in range(20))
    costly_subscription = f"subscription($id: ID!) {{ walletUpdated(customerId: $id) {{ {refills} }} }}"
    async with socket(api) as ws:
        await ws.init(tenant["staff"])
        # when a field fails while a sibling waits for the same loader key: one answer, then complete
        await ws.subscribe("shared", shared_load)
        answer, done = await ws.receive(), await ws.receive()
        assert answer["type"] == "next", answer
        assert answer["payload"]["data"]["b"] is None and answer["payload"]["data"]["a"]["features"]["id"]
        assert [e["extensions"]["code"] for e in answer["payload"]["errors"]] == ["INVALID"]
        assert done == {"id": "shared", "type": "complete"}
        # when a query or a subscription would resolve too much: refused with the limit's code, as over HTTP
        await ws.subscribe("pages", nested_pages, {"p": tenant["partner"]})
        await ws.subscribe("push", costly_subscription, {"id": customer})
        for id in ("pages", "push"):
            refused = await ws.receive()
            assert refused["id"] == id and refused["type"] == "error", refused
            assert refused["payload"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
        # when a frame is larger than an HTTP body may be
        await ws.send({"type": "ping", "payload": {"pad": "x" * 1_000_001}})
        assert await ws.closed_with() == 1009
    for token in ("pd_live_\u00b2_x", "pd_embed_\u00b2_x", "pd_sess_\ud800"):
        async with socket(api) as ws:
            await ws.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
            assert await ws.closed_with() == 4403, token
