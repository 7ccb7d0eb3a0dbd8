"""Shared push execution: a change's state is executed once per (document, variables, equivalent viewer) for all
the subscribers of a process and sent as the same bytes; a viewer never gets a result computed for another."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql import parse

from domain.accounts.models import Role
from domain.viewer import Viewer
from server.live import LiveEndpoint, equivalent_viewer
from server.persisted import PersistedDocuments
from server.pubsub import PubSub
from server.ratelimit import ApiRateLimiter
from server.settings import get_settings
from tests.servers import create_admin, fresh_database, live_server
from tests.test_subscriptions import CREDITS, Api, client, recharge, setup_tenant


class FakeStream:
    def __init__(self, key: str) -> None:
        self.key = key


class FakeConnection:
    """Stands in for a websocket connection: its execution answers what its own viewer may see."""

    executions: list[Viewer] = []

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer

    async def event_payload(self, document: Any, variables: Any, name: Any, value: Any) -> str:
        FakeConnection.executions.append(self.viewer)
        await asyncio.sleep(0)  # other subscribers arrive while it runs
        seen = "partner-figures" if self.viewer.is_partner_staff else "customer-figures"
        return json.dumps({"data": {"state": value, "seen": seen, "user": self.viewer.user_id}})


class FakeOperation:
    def __init__(self, viewer: Viewer, document: Any, variables: dict[str, Any] | None = None) -> None:
        self.connection = FakeConnection(viewer)
        self.stream = FakeStream("wallet.changed:7")
        self.document = document
        self.variables = variables
        self.name = None


@pytest.fixture
def endpoint() -> Iterator[LiveEndpoint]:
    FakeConnection.executions = []
    persisted = PersistedDocuments.for_deployment(
        only=False, path=None, builtin=(), redis_url=None, key_prefix="pd-test"
    )
    yield LiveEndpoint(get_settings(), PubSub(None), ApiRateLimiter(None, "pd-test"), persisted)


STAFF = Viewer(user_id=1, session_id=10, role=Role.PARTNER_ADMIN, partner_id=3, label="staff@example.com")
CUSTOMER = Viewer(user_id=2, session_id=20, role=Role.CUSTOMER_ADMIN, partner_id=3, customer_id=7, label="c@e.com")


async def test_two_viewers_with_different_visibility_never_share_a_push(endpoint: LiveEndpoint) -> None:
    # given a staff member and a customer admin watching the same customer with the same document
    document = parse("subscription { walletUpdated(customerId: 1) { id } }")
    state = {"balance": "10"}
    staff, customer = FakeOperation(STAFF, document), FakeOperation(CUSTOMER, document)
    # when one change reaches both
    pushed = await asyncio.gather(
        endpoint.shared_payload(staff, state, "wallet"),  # type: ignore[arg-type]
        endpoint.shared_payload(customer, state, "wallet"),  # type: ignore[arg-type]
    )
    # then each got what its own viewer may see
    assert [json.loads(p)["data"]["seen"] for p in pushed] == ["partner-figures", "customer-figures"]
    assert len(FakeConnection.executions) == 2


async def test_equivalent_viewers_share_one_execution_and_the_same_bytes(endpoint: LiveEndpoint) -> None:
    # given 50 sockets of the same user in the same organization, signed in 50 times from different addresses
    document = parse("subscription { walletUpdated(customerId: 1) { id } }")
    state = {"balance": "10"}
    operations = [
        FakeOperation(
            Viewer(
                user_id=1,
                session_id=100 + n,
                role=Role.PARTNER_ADMIN,
                partner_id=3,
                label="staff@example.com",
                ip=f"203.0.113.{n}",
                request_id=f"req-{n}",
            ),
            document,
            {"id": "1"},
        )
        for n in range(50)
    ]
    # when
    pushed = await asyncio.gather(*(endpoint.shared_payload(op, state, "wallet") for op in operations))  # type: ignore[arg-type]
    # then
    assert len(FakeConnection.executions) == 1
    assert len(set(pushed)) == 1
    # and the next change (the state read after it) is executed again, once
    after = {"balance": "9"}
    await asyncio.gather(*(endpoint.shared_payload(op, after, "wallet") for op in operations))  # type: ignore[arg-type]
    assert len(FakeConnection.executions) == 2


async def test_other_variables_or_another_user_of_the_same_role_are_executed_apart(endpoint: LiveEndpoint) -> None:
    document = parse("subscription($id: ID!) { walletUpdated(customerId: $id) { id } }")
    state = {"balance": "10"}
    colleague = Viewer(user_id=5, session_id=50, role=Role.PARTNER_ADMIN, partner_id=3, label="other@example.com")
    operations = [
        FakeOperation(STAFF, document, {"id": "1"}),
        FakeOperation(STAFF, document, {"id": "1", "extra": True}),
        FakeOperation(colleague, document, {"id": "1"}),
    ]
    pushed = await asyncio.gather(*(endpoint.shared_payload(op, state, "wallet") for op in operations))  # type: ignore[arg-type]
    assert len(FakeConnection.executions) == 3
    assert json.loads(pushed[2])["data"]["user"] == 5


def test_the_equivalence_keeps_everything_visibility_depends_on() -> None:
    base = STAFF
    assert equivalent_viewer(base) == equivalent_viewer(
        Viewer(user_id=1, session_id=99, role=Role.PARTNER_ADMIN, partner_id=3, label="staff@example.com", ip="x")
    )
    for other in (
        Viewer(user_id=1, session_id=10, role=Role.PARTNER_MEMBER, partner_id=3, label="staff@example.com"),
        Viewer(user_id=1, session_id=10, role=Role.PARTNER_ADMIN, partner_id=4, label="staff@example.com"),
        Viewer(
            user_id=1, session_id=10, role=Role.CUSTOMER_ADMIN, partner_id=3, customer_id=7, label="staff@example.com"
        ),
        Viewer(
            role=Role.CUSTOMER_ADMIN, partner_id=3, customer_id=7, api_key_id=1, api_permissions=frozenset({"READ"})
        ),
        Viewer(role=Role.CUSTOMER_MEMBER, partner_id=3, customer_id=7, embed_token_id=1, embed_sections=frozenset()),
    ):
        assert equivalent_viewer(base) != equivalent_viewer(other)


@pytest.mark.postgres
async def test_staff_and_customer_subscribers_of_one_customer_each_get_their_push(tmp_path: Path) -> None:
    # given one API process, partner staff and the customer's admin both watching the customer's credits
    with fresh_database(tmp_path) as url:
        admin = create_admin(url)
        with live_server(url, tmp_path) as base:
            api = Api(base)
            tenant = await setup_tenant(api, *admin)
            customer = tenant["customers"][0]
            own = await api.login(*tenant["customer_login"])
            async with client(api, tenant["staff"]) as staff_session, client(api, own) as own_session:
                staff_stream = staff_session.subscribe(CREDITS, variable_values={"id": customer})
                own_stream = own_session.subscribe(CREDITS, variable_values={"id": customer})
                # (each state subscription sends the current state first)
                assert float((await anext(staff_stream))["creditsUpdated"]["available"]) == 0
                assert float((await anext(own_stream))["creditsUpdated"]["available"]) == 0
                staff_next = asyncio.ensure_future(anext(staff_stream))
                own_next = asyncio.ensure_future(anext(own_stream))
                await asyncio.sleep(0.5)
                # when the credits change
                await recharge(api, tenant["staff"], customer, "42")
                # then both are pushed the new state
                staff_update = await asyncio.wait_for(staff_next, 10)
                own_update = await asyncio.wait_for(own_next, 10)
                assert float(staff_update["creditsUpdated"]["available"]) == 42
                assert float(own_update["creditsUpdated"]["available"]) == 42
                await staff_stream.aclose()
                await own_stream.aclose()
