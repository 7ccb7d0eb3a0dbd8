"""Branding and domains (seed 001): the partner's logo (GraphQL multipart upload, PNG/JPG by content, re-encoded,
SVG and oversized files refused, served by the app), colours, welcome message and sender; a customer's own branding
over its partner's; custom domains verified by a DNS TXT record (a real DNS server on loopback), which then carry
the links of the partner's emails and join the verified origins."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest
from PIL import Image

from domain import config as domain_config
from domain.audit.models import AuditEvent
from domain.partners import domains
from domain.partners.models import Partner, PartnerDomain
from tests.conftest import GQL, Factory, Tenant, gid
from tests.mailbox import link_in, run_jobs, smtp_server

PUBLIC_URL = "https://desk.platform.example"
PARTNER_UPDATE = """mutation($i: PartnerUpdateInput!) { partnerUpdate(input: $i) {
  partner { domains branding { logoUrl primaryColor secondaryColor welcomeMessage senderName senderEmail }
    customDomains { domain verified txtRecordName txtRecordValue } }
  errors { field code message } } }"""
CUSTOMER_BRANDING = """mutation($i: CustomerBrandingUpdateInput!) { customerBrandingUpdate(input: $i) {
  branding { logoUrl primaryColor secondaryColor welcomeMessage } errors { field code message } } }"""
BRANDING = "query($id: ID!) { customer(id: $id) { branding { logoUrl primaryColor secondaryColor welcomeMessage } } }"
VERIFY = """mutation($i: PartnerDomainVerifyInput!) { partnerDomainVerify(input: $i) {
  partner { customDomains { domain verified } } errors { field code message } } }"""


@pytest.fixture(autouse=True)
def public_url(tmp_path: Path) -> Iterator[str]:
    with domain_config.overridden(public_url=PUBLIC_URL, logos_dir=tmp_path / "logos"):
        yield PUBLIC_URL


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    return await factory.with_portal(await factory.tenant(customers=1, name="BrightCall"))


def image(kind: str, size: tuple[int, int] = (64, 32), **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (255, 90, 31)).save(out, format=kind, **save)
    return out.getvalue()


async def upload(
    gql: GQL, token: str, query: str, variables: dict[str, Any], path: str, content: bytes, name: str = "logo.png"
) -> dict[str, Any]:
    response = await gql.client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": query, "variables": variables}),
            "map": json.dumps({"0": [path]}),
        },
        files={"0": (name, content, "application/octet-stream")},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def partner_update(gql: GQL, token: str, partner: Partner, **fields: Any) -> dict[str, Any]:
    data = await gql(PARTNER_UPDATE, {"i": {"partnerId": gid("Partner", partner.id), **fields}}, token)
    return data["partnerUpdate"]


def codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["errors"]]


# --- logos ---------------------------------------------------------------------------------------------------------


async def test_a_logo_upload_is_re_encoded_and_served(gql: GQL, tenant: Tenant, tmp_path: Path) -> None:
    # given: a PNG with bytes hidden after its end, and a JPG
    staff = await gql.login(tenant.owner.email)
    smuggled = image("PNG") + b"<script>alert(1)</script>"
    variables = {"i": {"partnerId": gid("Partner", tenant.partner.id), "branding": {"logo": None}}}
    # when
    first = await upload(gql, staff, PARTNER_UPDATE, variables, "variables.i.branding.logo", smuggled, "x.svg")
    second = await upload(gql, staff, PARTNER_UPDATE, variables, "variables.i.branding.logo", image("JPEG"), "y.bin")
    # then: each stored re-encoded, the newest served, the older one gone
    urls = [d["partnerUpdate"]["partner"]["branding"]["logoUrl"] for d in (first, second)]
    assert [d["partnerUpdate"]["errors"] for d in (first, second)] == [[], []]
    assert urls[0].startswith(f"{PUBLIC_URL}/logos/partner-{tenant.partner.id}-") and urls[0].endswith(".png")
    assert urls[1].endswith(".jpg")
    served = await gql.client.get(urls[1].removeprefix(PUBLIC_URL))
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(served.content)).format == "JPEG"
    assert (await gql.client.get(urls[0].removeprefix(PUBLIC_URL))).status_code == 404
    stored = list((tmp_path / "logos").iterdir())
    assert len(stored) == 1 and b"<script>" not in stored[0].read_bytes()
    assert await AuditEvent.filter(action="partner.update").count() == 2
    # a big logo is scaled down
    big = await upload(
        gql, staff, PARTNER_UPDATE, variables, "variables.i.branding.logo", image("PNG", (3000, 1500), compress_level=9)
    )
    logo = (
        await gql.client.get(big["partnerUpdate"]["partner"]["branding"]["logoUrl"].removeprefix(PUBLIC_URL))
    ).content
    assert Image.open(io.BytesIO(logo)).size == (1024, 512)


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "logo.svg"),
        (b"GIF89a" + b"\x00" * 64, "logo.gif"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "broken.png"),
        (b"", "empty.png"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (512 * 1024), "huge.png"),
    ],
    ids=["svg", "gif", "not-really-png", "empty", "over-512kb"],
)
async def test_other_files_are_refused_as_logos(
    gql: GQL, tenant: Tenant, tmp_path: Path, content: bytes, name: str
) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    variables = {
        "i": {"partnerId": gid("Partner", tenant.partner.id), "branding": {"logo": None, "primaryColor": "#000000"}}
    }
    # when
    data = await upload(gql, staff, PARTNER_UPDATE, variables, "variables.i.branding.logo", content, name)
    # then: refused whole
    assert codes(data["partnerUpdate"]) == [("logo", "INVALID")]
    partner = await Partner.get(id=tenant.partner.id)
    assert partner.logo_url is None and partner.primary_color == "#2563EB"
    assert not (tmp_path / "logos").exists() or not list((tmp_path / "logos").iterdir())


# --- colours, welcome message, sender ------------------------------------------------------------------------------


async def test_partner_branding_fields_are_validated(gql: GQL, tenant: Tenant) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    # when
    refused = await partner_update(
        gql,
        staff,
        tenant.partner,
        branding={
            "primaryColor": "red",
            "secondaryColor": "#12345",
            "welcomeMessage": "x" * 1001,
            "senderName": "Evil <ceo@bank.example>",
        },
    )
    accepted = await partner_update(
        gql,
        staff,
        tenant.partner,
        branding={
            "primaryColor": "#ff5a1f",
            "welcomeMessage": "  Welcome to BrightCall!\nWe answer in minutes. <b>Really</b>  ",
            "senderName": "BrightCall Billing",
            "senderEmail": "billing@brightcall.example.com",
        },
    )
    # then
    assert sorted(codes(refused)) == [
        ("primaryColor", "INVALID"),
        ("secondaryColor", "INVALID"),
        ("senderName", "INVALID"),
        ("welcomeMessage", "INVALID"),
    ]
    assert accepted["errors"] == []
    assert accepted["partner"]["branding"] == {
        "logoUrl": None,
        "primaryColor": "#FF5A1F",
        "secondaryColor": "#0F172A",
        "welcomeMessage": "Welcome to BrightCall!\nWe answer in minutes. <b>Really</b>",
        "senderName": "BrightCall Billing",
        "senderEmail": "billing@brightcall.example.com",
    }
    control = await partner_update(gql, staff, tenant.partner, branding={"welcomeMessage": "bell\x07"})
    assert codes(control) == [("welcomeMessage", "INVALID")]
    twice = await partner_update(
        gql, staff, tenant.partner, senderEmail="a@example.com", branding={"senderEmail": "b@example.com"}
    )
    assert codes(twice) == [("senderEmail", "INVALID")]


async def test_a_customer_branding_overrides_its_partners(gql: GQL, factory: Factory, tenant: Tenant) -> None:
    # given: a branded partner
    staff = await gql.login(tenant.owner.email)
    await partner_update(gql, staff, tenant.partner, branding={"primaryColor": "#111111", "welcomeMessage": "Hi!"})
    customer = tenant.customers[0]
    customer_id = gid("Customer", customer.id)
    customer_admin = await gql.login(tenant.admins[0].email)
    assert (await gql(BRANDING, {"id": customer_id}, customer_admin))["customer"]["branding"] == {
        "logoUrl": None,
        "primaryColor": "#111111",
        "secondaryColor": "#0F172A",
        "welcomeMessage": "Hi!",
    }
    # when: the customer gets its own colour, logo and message
    variables = {
        "i": {"customerId": customer_id, "logo": None, "primaryColor": "#22aa22", "welcomeMessage": "Bluebird portal"}
    }
    own = await upload(gql, staff, CUSTOMER_BRANDING, variables, "variables.i.logo", image("PNG"))
    # then
    branding = own["customerBrandingUpdate"]["branding"]
    assert own["customerBrandingUpdate"]["errors"] == []
    assert branding["primaryColor"] == "#22AA22" and branding["secondaryColor"] == "#0F172A"
    assert branding["logoUrl"].startswith(f"{PUBLIC_URL}/logos/customer-{customer.id}-")
    assert (await gql(BRANDING, {"id": customer_id}, customer_admin))["customer"]["branding"] == branding
    # when: null goes back to the partner's values
    back = await gql(CUSTOMER_BRANDING, {"i": {"customerId": customer_id, "primaryColor": None, "logo": None}}, staff)
    # then
    assert back["customerBrandingUpdate"]["branding"]["primaryColor"] == "#111111"
    assert back["customerBrandingUpdate"]["branding"]["logoUrl"] is None
    assert back["customerBrandingUpdate"]["branding"]["welcomeMessage"] == "Bluebird portal"
    # customer users cannot change it; other partners cannot see it
    refused = await gql(
        CUSTOMER_BRANDING, {"i": {"customerId": customer_id, "primaryColor": "#000000"}}, customer_admin
    )
    assert codes(refused["customerBrandingUpdate"]) == [(None, "FORBIDDEN")]
    outsider = await gql.login((await factory.tenant(customers=0)).owner.email)
    hidden = await gql(CUSTOMER_BRANDING, {"i": {"customerId": customer_id, "primaryColor": "#000000"}}, outsider)
    assert codes(hidden["customerBrandingUpdate"]) == [("customerId", "NOT_FOUND")]
    assert (await gql(BRANDING, {"id": customer_id}, outsider))["customer"] is None


# --- domains -------------------------------------------------------------------------------------------------------


class FakeDns(asyncio.DatagramProtocol):
    """A DNS server on loopback answering TXT questions from `records` (NXDOMAIN for other names)."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        values = self.records.get(question.name.to_text().rstrip(".").lower())
        if values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", *[f'"{v}"' for v in values]))
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def fake_dns() -> AsyncIterator[FakeDns]:
    server = FakeDns()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: server, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    with domain_config.overridden(dns_nameservers=[f"127.0.0.1:{port}"]):
        yield server
    transport.close()


async def test_domains_are_validated_and_kept_in_order(gql: GQL, tenant: Tenant) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    # when
    refused = await partner_update(
        gql,
        staff,
        tenant.partner,
        domains=["https://portal.example.com", "10.0.0.1", "localhost", "desk.platform.example"],
    )
    accepted = await partner_update(
        gql,
        staff,
        tenant.partner,
        domains=["Portal.BrightCall.example.", "app.brightcall.example", "portal.brightcall.example"],
    )
    # then
    assert sorted(codes(refused)) == [
        ("domains", "INVALID"),
        ("domains.0", "INVALID"),
        ("domains.1", "INVALID"),
        ("domains.2", "INVALID"),
    ]
    assert accepted["errors"] == []
    assert accepted["partner"]["domains"] == ["portal.brightcall.example", "app.brightcall.example"]
    record = accepted["partner"]["customDomains"][0]
    assert record["verified"] is False and record["txtRecordName"] == "_partnerdesk.portal.brightcall.example"
    assert record["txtRecordValue"].startswith("partnerdesk-verify=")
    # customer users see the domains but not how to verify them
    view = "query($id: ID!) { partner(id: $id) { domains customDomains { domain } } }"
    seen = await gql(view, {"id": gid("Partner", tenant.partner.id)}, await gql.login(tenant.admins[0].email))
    assert seen["partner"] == {"domains": ["portal.brightcall.example", "app.brightcall.example"], "customDomains": []}


async def test_a_domain_verified_by_its_txt_record_carries_the_links_of_emails(
    gql: GQL, app: Any, factory: Factory, tenant: Tenant, fake_dns: FakeDns, tmp_path: Path
) -> None:
    # given: two domains, the second one verifiable
    staff = await gql.login(tenant.owner.email)
    listed = await partner_update(
        gql, staff, tenant.partner, domains=["portal.brightcall.example", "app.brightcall.example"]
    )
    records = {r["domain"]: r for r in listed["partner"]["customDomains"]}
    partner_id = gid("Partner", tenant.partner.id)
    # when: checked before the record exists
    early = await gql(VERIFY, {"i": {"partnerId": partner_id, "domain": "app.brightcall.example"}}, staff)
    # then
    assert codes(early["partnerDomainVerify"]) == [("domain", "NOT_ELIGIBLE")]
    assert "_partnerdesk.app.brightcall.example" in early["partnerDomainVerify"]["errors"][0]["message"]
    # when: the partner publishes the record
    record = records["app.brightcall.example"]
    fake_dns.records[record["txtRecordName"]] = ["unrelated", record["txtRecordValue"]]
    verified = await gql(VERIFY, {"i": {"partnerId": partner_id, "domain": "APP.brightcall.example"}}, staff)
    # then
    assert verified["partnerDomainVerify"]["errors"] == []
    assert verified["partnerDomainVerify"]["partner"]["customDomains"] == [
        {"domain": "portal.brightcall.example", "verified": False},
        {"domain": "app.brightcall.example", "verified": True},
    ]
    assert [*(await domains.verified_domains()).values()] == [["app.brightcall.example"]]
    assert await domains.public_url_of(tenant.partner.id) == "https://app.brightcall.example"
    # the partner's invitation emails now link there
    with smtp_server(tmp_path / "outbox") as mailbox:
        app.state.broker.flush_all()
        await gql(
            "mutation($i: TeamMemberInviteInput!) { teamMemberInvite(input: $i) { errors { code } } }",
            {"i": {"customerId": gid("Customer", tenant.customers[0].id), "email": "new@example.com"}},
            staff,
        )
        await run_jobs(app)
        assert link_in(mailbox.to("new@example.com")[0], "/invite?token=").startswith(
            "https://app.brightcall.example/invite?token="
        )
    # another partner cannot take the verified domain
    other, other_owner = await factory.partner()
    taken = await partner_update(gql, await gql.login(other_owner.email), other, domains=["app.brightcall.example"])
    assert codes(taken) == [("domains", "UNIQUE")]
    # a disabled partner's domains are no longer trusted origins
    await Partner.filter(id=tenant.partner.id).update(status="DISABLED")
    assert await domains.verified_domains() == {}


async def test_the_job_verifies_pending_domains_and_drops_those_whose_record_is_gone(
    gql: GQL, tenant: Tenant, fake_dns: FakeDns
) -> None:
    # given: a pending domain whose record is published
    staff = await gql.login(tenant.owner.email)
    await partner_update(gql, staff, tenant.partner, domains=["portal.brightcall.example"])
    row = await PartnerDomain.get(domain="portal.brightcall.example")
    fake_dns.records[domains.record_name(row.domain)] = [domains.record_value(row)]
    # when
    assert await domains.verify_due_domains() == 1
    # then
    row = await PartnerDomain.get(id=row.id)
    assert row.verified_at is not None
    # when: a day later the record is gone
    del fake_dns.records[domains.record_name(row.domain)]
    from datetime import timedelta

    assert await domains.verify_due_domains(row.last_checked_at + timedelta(days=1, minutes=1)) == 0
    # then
    assert (await PartnerDomain.get(id=row.id)).verified_at is None
