"""Customer users see only figures their customer owns (issue 11, item 2).

One partner with two clients, and a neighbour partner, seeded with distinctive partner- and platform-level values:
the partner's pool balance (987654.321), its revenue (which includes the other client's usage), the funding total
behind wallet refills, the other client's email (in a package's restricted emails) and the partner staff's email,
IP and user agent. Each of the five ways they leaked has a test; a sweep runs every root field of the schema (and
each subscription's first push) as the client's admin, a member, an API key and an embed token, and searches
every answer for them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from graphql import GraphQLField, GraphQLObjectType, get_named_type, is_leaf_type, is_required_argument, parse
from tortoise.expressions import Q

from domain.access.policy import embed_may_read
from domain.accounts.models import Role, User
from domain.alerts.models import Alert
from domain.audit.models import AuditEvent
from domain.audit.sequencer import sequence_pending
from domain.customers.models import Customer
from domain.events.services import LIVE_TOPICS, live_key
from domain.ledger import services as ledger
from domain.ledger.models import Currency, LedgerAccount, Transfer, TransferKind
from domain.packages.models import Package
from domain.partners.models import Partner
from domain.reports.models import UsageReport
from domain.viewer import Viewer
from schema import schema as app_schema
from schema.cost import operation_cost
from schema.extensions import MAX_COST
from tests.conftest import GQL, Factory, gid

STAFF_IP = "198.51.100.23"
STAFF_AGENT = "StaffConsole/4.2.1 (partner back office)"
POOL_AFTER_RECHARGE = "987654.321"

NODE_TRANSFER = """query($id: ID!) { node(id: $id) { ... on LedgerTransfer {
  kind amount debitBalanceAfter creditBalanceAfter } } }"""
NODE_REFILL = "query($id: ID!) { node(id: $id) { ... on WalletRefill { amount { amount } balanceAfter { amount } } } }"
AUDIT = """query($f: AuditEventFilter) { auditEvents(filter: $f, first: 100) { nodes {
  action actorLabel ip userAgent details seq } } }"""


def key() -> str:
    return uuid.uuid4().hex


def figure(value: Decimal) -> str:
    """A balance as an answer would show it, without sign or trailing zeros (searched for as a substring)."""
    return format(abs(value).normalize(), "f")


@dataclass
class World:
    """Partner Alpha (its staff working from STAFF_IP) with clients `own` and `sibling`; partner Bravo with one."""

    alpha: Partner
    staff: User
    own: Customer
    own_admin: User
    sibling_admin: User
    package: Package
    transfers: list[Transfer]  # every transfer touching an account of `own`, oldest first
    audit_event_ids: list[int]  # `own`'s
    alert_ids: list[int]
    report_id: int
    staff_token: str
    tokens: dict[str, str]  # customer-side viewer → bearer token
    hidden: dict[str, str] = field(default_factory=dict)  # what → text no customer-side viewer may be shown

    def transfer(self, kind: TransferKind) -> Transfer:
        return next(t for t in self.transfers if t.kind == kind)


@pytest.fixture
async def staff_gql(app: Any) -> AsyncIterator[GQL]:
    """The partner's staff, from their own address and browser."""
    transport = httpx.ASGITransport(app=app, client=(STAFF_IP, 4444))
    headers = {"user-agent": STAFF_AGENT}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as c:
        yield GQL(c)


async def ok(gql: GQL, token: str, mutation: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Runs a one-input mutation (named after its input type) and checks it succeeded."""
    name = mutation[0].lower() + mutation[1:]
    rejected = "rejected { code message }" if mutation == "UsageRecord" else ""
    document = f"mutation($i: {mutation}Input!) {{ {name}(input: $i) {{ errors {{ code message }} {rejected} }} }}"
    data = (await gql(document, {"i": variables}, token))[name]
    assert data["errors"] == [] and not data.get("rejected"), data
    return data


@pytest.fixture
async def world(gql: GQL, staff_gql: GQL, factory: Factory) -> World:
    alpha, staff = await factory.partner("Alpha Agency")
    own, own_admin = await factory.customer(alpha, "Own Client")
    sibling, sibling_admin = await factory.customer(alpha, "Sibling Client")
    bravo, bravo_staff = await factory.partner("Bravo Agency")
    foreign, _ = await factory.customer(bravo, "Foreign Client")
    own_member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=own)
    platform = await gql.login((await factory.admin()).email)
    staff_token = await staff_gql.login(staff.email)
    own_id, sibling_id = gid("Customer", own.id), gid("Customer", sibling.id)

    # the pool; a package for `own` that also names the sibling's admin among its restricted emails
    pool = {"partnerId": gid("Partner", alpha.id), "credits": "987754.321", "idempotencyKey": key()}
    await ok(gql, platform, "PartnerCreditsAdd", pool)
    features = ["CUSTOMER_PORTAL", "API_ACCESS", "EMBEDS", "TEAM_MEMBERS", "ADVANCED_ANALYTICS"]
    await ok(
        staff_gql,
        staff_token,
        "PackageCreate",
        {"title": "Gold plan", "features": features, "restrictedEmails": [sibling_admin.email, own_admin.email]},
    )
    package = await Package.get(partner_id=alpha.id)
    assign = {"customerId": own_id, "packageId": gid("Package", package.id), "idempotencyKey": key()}
    await ok(staff_gql, staff_token, "PackageAssign", assign)
    # 100 credits from the pool leave it at 987654.321
    recharge = {"customerId": own_id, "credits": "100", "idempotencyKey": key()}
    await ok(staff_gql, staff_token, "CustomerCreditsRecharge", recharge)
    # refills everywhere (the funding total), `own`'s last; `own` pays its usage from the wallet
    prefs = {"customerId": own_id, "billingMode": "REFILLABLE_WALLET", "refillProcessedAlert": True}
    await ok(staff_gql, staff_token, "BillingPreferencesUpdate", prefs)
    for client, token, customer_id, amount in [
        (gql, await gql.login(bravo_staff.email), gid("Customer", foreign.id), "55555.55"),
        (staff_gql, staff_token, sibling_id, "7777.77"),
        (staff_gql, staff_token, own_id, "100.00"),
    ]:
        refill = {"customerId": customer_id, "amount": amount, "idempotencyKey": key(), "reference": "bank"}
        await ok(client, token, "WalletRefill", refill)
    # the sibling's usage first, so the partner's revenue after `own`'s usage includes it
    for customer_id, unit, quantity in [(sibling_id, "VOICE_MINUTES", "1234.5678"), (own_id, "SMS_SEGMENTS", "10")]:
        event = {
            "idempotencyKey": key(),
            "customerId": customer_id,
            "unitType": unit,
            "quantity": quantity,
            "occurredAt": datetime.now(UTC).isoformat(),
        }
        await ok(staff_gql, staff_token, "UsageRecord", {"events": [event]})

    # the client's own people and machines, from the client's own address
    own_token = await gql.login(own_admin.email)
    await ok(gql, own_token, "CustomerUpdate", {"customerId": own_id, "city": "Lisbon"})
    api_key = await gql(
        "mutation($i: ApiKeyCreateInput!) { apiKeyCreate(input: $i) { secret } }",
        {"i": {"customerId": own_id, "name": "crm", "permissions": ["ADMIN"], "tier": "STANDARD"}},
        own_token,
    )
    sections = ["USAGE_DASHBOARD", "WALLET", "CREDITS", "SPENDING_CAP"]
    embed = await gql(
        "mutation($i: EmbedTokenCreateInput!) { embedTokenCreate(input: $i) { token } }",
        {"i": {"customerId": own_id, "sections": sections, "expiresInSeconds": 3600}},
        own_token,
    )
    today = datetime.now(UTC).date().isoformat()
    await ok(
        gql, own_token, "UsageExportCreate", {"customerId": own_id, "format": "VOICE_CSV", "from": today, "to": today}
    )

    accounts = await LedgerAccount.filter(customer_id=own.id).values_list("id", flat=True)
    touching = Q(debit_account_id__in=accounts) | Q(credit_account_id__in=accounts)
    w = World(
        alpha,
        staff,
        own,
        own_admin,
        sibling_admin,
        package,
        transfers=await Transfer.filter(touching).order_by("id"),
        audit_event_ids=list(await AuditEvent.filter(customer_id=own.id).values_list("id", flat=True)),
        alert_ids=list(await Alert.filter(customer_id=own.id).values_list("id", flat=True)),
        report_id=(await UsageReport.get(customer_id=own.id)).id,
        staff_token=staff_token,
        tokens={
            "customer admin": own_token,
            "customer member": await gql.login(own_member.email),
            "API key": api_key["apiKeyCreate"]["secret"],
            "embed token": embed["embedTokenCreate"]["token"],
        },
    )
    w.hidden = {
        "the partner's pool balance": POOL_AFTER_RECHARGE,
        # the sum of its revenue sub-accounts (ledger.revenue_balance), which includes the sibling's usage
        "the partner's revenue": figure(await ledger.revenue_balance(Currency.USD, alpha.id)),
        "the refill funding total": figure(w.transfer(TransferKind.WALLET_REFILL).debit_balance_after),
        "another client's email": sibling_admin.email,
        "the partner staff's email": staff.email,
        "the partner staff's IP": STAFF_IP,
        "the partner staff's user agent": STAFF_AGENT,
    }
    return w


async def audit_of(gql: GQL, token: str, action: str | None = None) -> list[dict[str, Any]]:
    await sequence_pending()  # as the API processes' sequencer would have by now
    events = (await gql(AUDIT, {}, token))["auditEvents"]["nodes"]
    return [e for e in events if action is None or e["action"] == action]


# --- the five paths ------------------------------------------------------------------------------------------------


async def test_a_recharge_shows_the_customer_its_credits_but_not_the_partners_pool(gql: GQL, world: World) -> None:
    # given the recharge that left the pool at 987654.321
    recharge = gid("LedgerTransfer", world.transfer(TransferKind.CREDITS_RECHARGE).id)
    # when
    customer = (await gql(NODE_TRANSFER, {"id": recharge}, world.tokens["customer admin"]))["node"]
    staff = (await gql(NODE_TRANSFER, {"id": recharge}, world.staff_token))["node"]
    customer_audit = await audit_of(gql, world.tokens["customer admin"], "customer.credits_recharge")
    staff_audit = await audit_of(gql, world.staff_token, "customer.credits_recharge")
    # then
    assert customer["debitBalanceAfter"] is None
    assert Decimal(customer["creditBalanceAfter"]) == 100
    assert Decimal(staff["debitBalanceAfter"]) == Decimal(POOL_AFTER_RECHARGE)
    assert "pool_balance_after" not in customer_audit[0]["details"]
    assert Decimal(customer_audit[0]["details"]["customer_balance_after"]) == 100
    assert Decimal(staff_audit[0]["details"]["pool_balance_after"]) == Decimal(POOL_AFTER_RECHARGE)


async def test_a_usage_charge_hides_the_partners_revenue_from_the_customer(gql: GQL, world: World) -> None:
    # given the charge for `own`'s usage, credited to the partner's revenue (a sub-account of it)
    charge = world.transfer(TransferKind.USAGE_CHARGE)
    # when
    as_transfer = await gql(NODE_TRANSFER, {"id": gid("LedgerTransfer", charge.id)}, world.tokens["API key"])
    as_refill = await gql(NODE_REFILL, {"id": gid("WalletRefill", charge.id)}, world.tokens["customer admin"])
    staff = (await gql(NODE_TRANSFER, {"id": gid("LedgerTransfer", charge.id)}, world.staff_token))["node"]
    # then
    assert as_transfer["node"]["creditBalanceAfter"] is None
    assert Decimal(as_transfer["node"]["debitBalanceAfter"]) == Decimal("99.90")
    assert as_refill["node"] is None  # a usage charge is no wallet refill, whatever its id is dressed as
    assert Decimal(staff["creditBalanceAfter"]) == charge.credit_balance_after


async def test_a_wallet_refill_hides_the_funding_total_from_the_customer(gql: GQL, world: World) -> None:
    # given `own`'s refill, the last of three (one of them another partner's)
    refill = world.transfer(TransferKind.WALLET_REFILL)
    # when
    as_transfer = await gql(NODE_TRANSFER, {"id": gid("LedgerTransfer", refill.id)}, world.tokens["customer admin"])
    as_refill = await gql(NODE_REFILL, {"id": gid("WalletRefill", refill.id)}, world.tokens["customer member"])
    # then
    assert as_transfer["node"]["debitBalanceAfter"] is None
    assert Decimal(as_transfer["node"]["creditBalanceAfter"]) == 100
    assert Decimal(as_refill["node"]["balanceAfter"]["amount"]) == 100


async def test_package_assignment_details_hide_the_restricted_emails(gql: GQL, world: World) -> None:
    # when
    customer = await audit_of(gql, world.tokens["customer admin"], "package.assign")
    staff = await audit_of(gql, world.staff_token, "package.assign")
    # then
    assert customer[0]["details"]["package"]["title"] == "Gold plan"
    assert "restricted_emails" not in customer[0]["details"]["package"]
    assert world.sibling_admin.email not in json.dumps(customer)
    assert world.sibling_admin.email in staff[0]["details"]["package"]["restricted_emails"]


async def test_customer_users_see_their_own_people_but_not_partner_staff(gql: GQL, world: World) -> None:
    # when
    customer = await audit_of(gql, world.tokens["customer admin"])
    staff = await audit_of(gql, world.staff_token)
    # then partner staff's events are shown without who, from where and the chain position
    by_staff = [e for e in customer if e["action"] in ("package.assign", "wallet.refill", "customer.credits_recharge")]
    assert len(by_staff) == 3
    assert {(e["actorLabel"], e["ip"], e["userAgent"], e["seq"]) for e in by_staff} == {(None, None, None, None)}
    update = next(e for e in customer if e["action"] == "customer.update")
    assert (update["actorLabel"], update["ip"]) == (world.own_admin.email, "203.0.113.7")
    seen_by_staff = next(e for e in staff if e["action"] == "package.assign")
    assert (seen_by_staff["actorLabel"], seen_by_staff["ip"], seen_by_staff["userAgent"]) == (
        world.staff.email,
        STAFF_IP,
        STAFF_AGENT,
    )
    assert seen_by_staff["seq"] > 0


# --- every root field -----------------------------------------------------------------------------------------------

GRAPH = app_schema._schema
MAX_LEVELS = 9  # object levels below a root field: within the server's depth limit of 12
ROOT_PAGE = 100
NESTED_PAGE = 2  # nested connections: a page each; root pages shrink to fit the cost limit (`affordable`)
MayRead = Callable[[str, str], bool]


@dataclass(frozen=True)
class Call:
    """One way to call a root field: its arguments, and for a field returning an interface the type to select."""

    arguments: dict[str, Any]
    on: str | None = None


def _nodes(w: World) -> list[Call]:
    """`node(id:)` for what a customer viewer could ask about: every transfer touching the client's accounts (as a
    transfer and dressed as a refill), its audit events and alerts, its per-customer state, its partner."""
    calls = [
        Call({"id": gid(t, transfer.id)}, t) for transfer in w.transfers for t in ("LedgerTransfer", "WalletRefill")
    ]
    calls += [Call({"id": gid("AuditEvent", pk)}, "AuditEvent") for pk in w.audit_event_ids]
    calls += [Call({"id": gid("Alert", pk)}, "Alert") for pk in w.alert_ids]
    for type_name in ("Customer", "Wallet", "CreditBalance", "SpendingCap", "FeatureToggles"):
        calls.append(Call({"id": gid(type_name, w.own.id)}, type_name))
    calls.append(Call({"id": gid("Partner", w.alpha.id)}, "Partner"))
    calls.append(Call({"id": gid("User", w.staff.id)}, "User"))
    return calls


def _summaries(w: World) -> list[Call]:
    today = datetime.now(UTC).date().isoformat()
    own = gid("Customer", w.own.id)
    return [Call({"customerId": own, "from": today, "to": today, "groupBy": g}) for g in ("UNIT_TYPE", "DAY", "MONTH")]


# Root fields that cannot be called generically (a required argument other than `customerId`, or an interface).
EXPLICIT: dict[str, Callable[[World], list[Call]]] = {
    "Query.node": _nodes,
    "Query.partner": lambda w: [Call({"id": gid("Partner", w.alpha.id)})],
    "Query.customer": lambda w: [Call({"id": gid("Customer", w.own.id)})],
    "Query.package": lambda w: [Call({"id": gid("Package", w.package.id)})],
    "Query.usageSummary": _summaries,
    "Query.usageDashboard": lambda w: [
        Call(
            {
                "customerId": gid("Customer", w.own.id),
                "from": datetime.now(UTC).date().isoformat(),
                "to": datetime.now(UTC).date().isoformat(),
            }
        )
    ],
    "Query.auditEvent": lambda w: [Call({"id": gid("AuditEvent", pk)}) for pk in w.audit_event_ids],
    "Subscription.usageReportUpdated": lambda w: [Call({"id": gid("UsageReport", w.report_id)})],
    "Query.billingPortalSession": lambda w: [
        Call({"customerId": gid("Customer", w.own.id), "returnUrl": "https://desk.example/billing"})
    ],
    # the partner's endpoints are beyond a customer viewer's reach (their deliveries included)
    "Query.webhookDeliveries": lambda w: [Call({"endpointId": gid("WebhookEndpoint", 1), "first": ROOT_PAGE})],
}


def calls_of(root: str, name: str, root_field: GraphQLField, w: World) -> list[Call]:
    """From EXPLICIT, else generic: the client's id for a required `customerId`, a full page when paginated."""
    explicit = EXPLICIT.get(f"{root}.{name}")
    if explicit is not None:
        return explicit(w)
    required = {a for a, arg in root_field.args.items() if is_required_argument(arg)}
    generic = required <= {"customerId"} and isinstance(get_named_type(root_field.type), GraphQLObjectType)
    assert generic, f"{root}.{name} cannot be called generically: give it arguments in EXPLICIT"
    arguments: dict[str, Any] = {"customerId": gid("Customer", w.own.id)} if required else {}
    if "first" in root_field.args:
        arguments["first"] = ROOT_PAGE
    return [Call(arguments)]


def selection(type_: GraphQLObjectType, may_read: MayRead, path: frozenset[str] = frozenset()) -> str:
    """Every field of `type_` that takes no required argument, nested objects included (a type once per path, so
    cycles end); `edges` left out for `nodes`, which hold the same objects."""
    parts = ["__typename"]
    for name, f in type_.fields.items():
        if name == "edges" or not may_read(type_.name, name) or any(map(is_required_argument, f.args.values())):
            continue
        inner = get_named_type(f.type)
        if is_leaf_type(inner):
            parts.append(name)
        elif isinstance(inner, GraphQLObjectType) and inner.name not in path and len(path) < MAX_LEVELS:
            page = f"(first: {NESTED_PAGE})" if "first" in f.args else ""
            parts.append(f"{name}{page} {{ {selection(inner, may_read, path | {inner.name})} }}")
    return " ".join(parts)


def document(kind: str, name: str, root_field: GraphQLField, call: Call, may_read: MayRead) -> tuple[str, dict]:
    """An operation running `name` with `call`'s arguments (as variables) and every field the viewer may read."""
    declared = ", ".join(f"${a}: {root_field.args[a].type}" for a in call.arguments)
    passed = ", ".join(f"{a}: ${a}" for a in call.arguments)
    returned = GRAPH.get_type(call.on) if call.on else get_named_type(root_field.type)
    assert isinstance(returned, GraphQLObjectType), f"{name}: name the type to select in EXPLICIT"
    fields = selection(returned, may_read, frozenset({returned.name}))
    body = f"... on {call.on} {{ {fields} }}" if call.on else fields
    head = f"{kind}({declared})" if declared else kind
    return f"{head} {{ {name}{f'({passed})' if passed else ''} {{ {body} }} }}", call.arguments


def affordable(kind: str, name: str, root_field: GraphQLField, call: Call, may_read: MayRead) -> tuple[str, dict]:
    """`document`, its root page shrunk until the operation passes the cost limit (a refused one shows nothing)."""
    while True:
        operation = document(kind, name, root_field, call, may_read)
        first = call.arguments.get("first")
        if first is None or first <= 1 or operation_cost(GRAPH, parse(operation[0]), None, operation[1]) <= MAX_COST:
            return operation
        call = replace(call, arguments={**call.arguments, "first": first // 2})


def reader(viewer: str) -> MayRead:
    """What the viewer may select: embed tokens are refused whole beyond their sections (all four here)."""
    if viewer != "embed token":
        return lambda parent, field_name: True
    sections = frozenset({"USAGE_DASHBOARD", "WALLET", "CREDITS", "SPENDING_CAP"})
    embed = Viewer(role=Role.CUSTOMER_MEMBER, embed_token_id=1, embed_sections=sections)
    return lambda parent, field_name: embed_may_read(embed, parent, field_name)


class LiveSocket:
    """graphql-transport-ws through the app's own ASGI websocket interface, in this process."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def open(self, token: str) -> None:
        scope = {
            "type": "websocket",
            "path": "/graphql",
            "subprotocols": ["graphql-transport-ws"],
            "headers": [],
            "client": ("203.0.113.7", 5555),
            "query_string": b"",
        }
        self.task = asyncio.ensure_future(self.app(scope, self.to_app.get, self.from_app.put))
        await self.to_app.put({"type": "websocket.connect"})
        assert (await self.from_app.get())["type"] == "websocket.accept"
        await self.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert await self.receive() == {"type": "connection_ack"}

    async def send(self, message: dict[str, Any]) -> None:
        await self.to_app.put({"type": "websocket.receive", "text": json.dumps(message)})

    async def receive(self) -> dict[str, Any]:
        message = await asyncio.wait_for(self.from_app.get(), 30)  # a guard against hanging, not a timing
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def close(self) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        await self.task


async def first_pushes(
    app: Any, token: str, operations: dict[str, tuple[str, dict[str, Any]]], own: int, alert: int
) -> dict[str, dict[str, Any]]:
    """Subscribes to every operation, announces a change of each live topic of the client, and returns the first
    message of each subscription (`next` with the pushed object, or `error`)."""
    socket = LiveSocket(app)
    await socket.open(token)
    try:
        for op_id, (query, variables) in operations.items():
            await socket.send({"type": "subscribe", "id": op_id, "payload": {"query": query, "variables": variables}})
        await socket.send({"type": "ping"})  # answered after every subscribe before it is set up
        first: dict[str, dict[str, Any]] = {}
        while (message := await socket.receive())["type"] != "pong":
            first.setdefault(message["id"], message)
        for topic in sorted(LIVE_TOPICS):
            await app.state.pubsub.publish(live_key(topic, own), {"alert_id": alert})
        while len(first) < len(operations):
            message = await socket.receive()
            first.setdefault(message["id"], message)
        return first
    finally:
        await socket.close()


def label(name: str, arguments: dict[str, Any]) -> str:
    return f"{name} {json.dumps(arguments)}"


@pytest.mark.parametrize("viewer", ["customer admin", "customer member", "API key", "embed token"])
async def test_no_root_field_shows_a_customer_viewer_a_partner_or_platform_figure(
    gql: GQL, app: Any, world: World, viewer: str
) -> None:
    # given every root field (and every subscription), called as `viewer` selecting all it may read
    token, may_read = world.tokens[viewer], reader(viewer)
    answers: dict[str, str] = {}
    subscriptions: dict[str, tuple[str, dict[str, Any]]] = {}
    pushes: dict[str, str] = {}  # the first message expected of each subscription: refused ones answer an error
    # when
    for root, kind in (("Query", "query"), ("Subscription", "subscription")):
        root_type = GRAPH.get_type(root)
        assert isinstance(root_type, GraphQLObjectType)
        for name, root_field in root_type.fields.items():
            for call in calls_of(root, name, root_field, world):
                operation = affordable(kind, name, root_field, call, may_read)
                if kind == "subscription":
                    subscriptions[label(name, call.arguments)] = operation
                    pushes[label(name, call.arguments)] = "next" if may_read(root, name) else "error"
                else:
                    answers[label(name, call.arguments)] = (await gql.raw(*operation, token)).text
    pushed = await first_pushes(app, token, subscriptions, world.own.id, world.alert_ids[0])
    answers |= {where: json.dumps(message) for where, message in pushed.items()}
    # then no answer holds a figure beyond the client, and none failed unexpectedly
    leaks = [(what, where) for where, text in answers.items() for what, value in world.hidden.items() if value in text]
    assert leaks == [], leaks
    assert [where for where, text in answers.items() if "INTERNAL_SERVER_ERROR" in text] == []
    # (and every operation ran: one refused by the cost limit would show nothing, leaks included)
    assert [where for where, text in answers.items() if "QUERY_TOO_COMPLEX" in text] == []
    # and the sweep did reach the client's own figures (99.90 left in the wallet, 100 credits after the recharge)
    assert '"99.90"' in answers[label("customer", {"id": gid("Customer", world.own.id)})]
    assert {where: message["type"] for where, message in pushed.items()} == pushes
    if viewer != "embed token":
        recharge = gid("LedgerTransfer", world.transfer(TransferKind.CREDITS_RECHARGE).id)
        assert '"creditBalanceAfter":"100.000000"' in answers[label("node", {"id": recharge})]
    if viewer in ("customer admin", "API key"):
        # (read on its own: the sweep's page of events shrinks with every nested connection the schema grows)
        audit = (await gql.raw(AUDIT, {}, token)).text
        assert all(f'"action":"{a}"' in audit for a in ("package.assign", "customer.credits_recharge", "wallet.refill"))
