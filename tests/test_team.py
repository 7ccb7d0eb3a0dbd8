"""Teams and seats (seeds 000, 002, 003): invitations emailed over real SMTP and accepted by a new or an existing
user, seats (members + pending invitations ≤ the limit, also under 10 concurrent invitations on PostgreSQL), the
portal requirement, removing members and changing roles (never the last admin), partner admins editing a client
user's details, partner staff invitations, the invitation page, and who may do what."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from domain import config as domain_config
from domain.accounts.models import Membership, Role, User
from domain.audit.models import AuditEvent
from domain.customers.models import Customer
from domain.features.models import FeatureToggles
from domain.team.models import Invitation
from tests.conftest import GQL, PASSWORD, Factory, Tenant, count_queries, gid
from tests.mailbox import Mailbox, link_in, run_jobs, smtp_server

PUBLIC_URL = "https://desk.platform.example"
INVITE = """mutation($i: TeamMemberInviteInput!) { teamMemberInvite(input: $i) {
  invitation { id email role status expiresAt customer { id } } errors { field code message } } }"""
ACCEPT = """mutation($i: TeamMemberInviteAcceptInput!) { teamMemberInviteAccept(input: $i) {
  user { id email username firstName } membership { role customer { id } partner { id } } errors { field code message } } }"""
REVOKE = """mutation($i: InvitationRevokeInput!) { invitationRevoke(input: $i) {
  invitation { status } errors { field code message } } }"""
REMOVE = """mutation($i: TeamMemberRemoveInput!) { teamMemberRemove(input: $i) {
  customer { id } errors { field code message } } }"""
ROLE = """mutation($i: MemberRoleUpdateInput!) { memberRoleUpdate(input: $i) {
  membership { role } errors { field code message } } }"""
MEMBER_UPDATE = """mutation($i: TeamMemberUpdateInput!) { teamMemberUpdate(input: $i) {
  user { firstName lastName email phone displayName } errors { field code message } } }"""
PARTNER_INVITE = """mutation($i: PartnerMemberInviteInput!) { partnerMemberInvite(input: $i) {
  invitation { id email role status customer { id } } errors { field code message } } }"""
FEATURES = """mutation($i: CustomerFeaturesUpdateInput!) { customerFeaturesUpdate(input: $i) {
  errors { field code message } } }"""
TEAM = """query($id: ID!) { customer(id: $id) {
  seats { limit members pendingInvitations available }
  invitations(first: 50) { totalCount nodes { email status } }
  teamMembers { totalCount nodes { email } } } }"""


@pytest.fixture(autouse=True)
def public_url() -> Iterator[str]:
    with domain_config.overridden(public_url=PUBLIC_URL):
        yield PUBLIC_URL


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    with smtp_server(tmp_path / "outbox") as box:
        yield box


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


@pytest.fixture
async def tenant(factory: Factory) -> Tenant:
    return await factory.with_portal(await factory.tenant(customers=1))


async def invite(gql: GQL, token: str, customer: Customer, email: str, role: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"customerId": gid("Customer", customer.id), "email": email}
    if role:
        fields["role"] = role
    return (await gql(INVITE, {"i": fields}, token))["teamMemberInvite"]


def codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["errors"]]


async def set_limit(customer: Customer, limit: int) -> None:
    await FeatureToggles.bulk_create([FeatureToggles(customer_id=customer.id)], ignore_conflicts=True)
    await FeatureToggles.filter(customer_id=customer.id).update(max_team_members=limit)


def token_of(link: str) -> str:
    return parse_qs(urlparse(link).query)["token"][0]


NEW_ACCOUNT = {
    "username": "new.member",
    "firstName": "Nia",
    "lastName": "Member",
    "password": "Fresh-pass-1",
    "passwordConfirmation": "Fresh-pass-1",
}


# --- invite and accept ---------------------------------------------------------------------------------------------


async def test_an_invitation_is_emailed_and_accepted_by_a_new_user(
    gql: GQL, app: Any, tenant: Tenant, mailbox: Mailbox
) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    # when
    payload = await invite(gql, staff, customer, "Nia@Example.com", "CUSTOMER_MEMBER")
    await run_jobs(app)
    # then: one branded email with a link to the invitation page on PUBLIC_URL (no verified domain)
    assert payload["errors"] == [] and payload["invitation"]["status"] == "PENDING"
    [message] = mailbox.to("nia@example.com")
    assert tenant.partner.name in message["Subject"] and tenant.partner.name in message["From"]
    link = link_in(message, "/invite?token=")
    assert link.startswith(f"{PUBLIC_URL}/invite?token=pd_inv_")
    page = await gql.client.get(urlparse(link).path + "?" + urlparse(link).query)
    assert page.status_code == 200 and customer.name in page.text and "Create my account" in page.text
    # when: the invited person creates an account with the emailed token
    accepted = (await gql(ACCEPT, {"i": {"token": token_of(link), **NEW_ACCOUNT}}))["teamMemberInviteAccept"]
    # then
    assert accepted["errors"] == []
    assert accepted["user"]["email"] == "Nia@example.com" and accepted["user"]["username"] == "new.member"
    assert accepted["membership"]["role"] == "CUSTOMER_MEMBER"
    assert await Membership.filter(customer_id=customer.id, user__username_key="new.member").exists()
    member_token = await gql.login("new.member", "Fresh-pass-1")
    me = await gql("{ me { organizations { name role current } } }", token=member_token)
    assert me["me"]["organizations"] == [{"name": customer.name, "role": "CUSTOMER_MEMBER", "current": True}]
    team = (await gql(TEAM, {"id": gid("Customer", customer.id)}, staff))["customer"]
    assert team["seats"] == {"limit": 5, "members": 2, "pendingInvitations": 0, "available": 3}
    assert team["invitations"]["totalCount"] == 0
    # the link works once
    again = await gql(ACCEPT, {"i": {"token": token_of(link), **NEW_ACCOUNT, "username": "other"}})
    assert codes(again["teamMemberInviteAccept"]) == [("token", "INVALID")]
    assert (await gql.client.get(urlparse(link).path + "?" + urlparse(link).query)).status_code == 404
    actions = await AuditEvent.filter(customer_id=customer.id).values_list("action", flat=True)
    assert "invitation.create" in actions and "invitation.accept" in actions


async def test_a_signed_in_user_with_the_invited_email_accepts_with_the_token_alone(
    gql: GQL, app: Any, factory: Factory, mailbox: Mailbox
) -> None:
    # given: someone who already has an account (admin of another customer of the same partner)
    tenant = await factory.with_portal(await factory.tenant(customers=2))
    staff = await gql.login(tenant.owner.email)
    existing = tenant.admins[1]
    await invite(gql, staff, tenant.customers[0], existing.email.upper(), "CUSTOMER_ADMIN")
    await run_jobs(app)
    token = token_of(link_in(mailbox.to(existing.email)[0], "/invite?token="))
    page = await gql.client.get("/invite", params={"token": token})
    assert "Sign in and join" in page.text
    # when: anonymous with the token alone, a stranger signed in, then the invited user
    anonymous = (await gql(ACCEPT, {"i": {"token": token}}))["teamMemberInviteAccept"]
    stranger = await gql(ACCEPT, {"i": {"token": token}}, await gql.login(tenant.admins[0].email))
    new_account = (await gql(ACCEPT, {"i": {"token": token, **NEW_ACCOUNT}}))["teamMemberInviteAccept"]
    mine = (await gql(ACCEPT, {"i": {"token": token}}, await gql.login(existing.email)))["teamMemberInviteAccept"]
    # then
    assert codes(anonymous) == [("username", "REQUIRED")]
    assert codes(stranger["teamMemberInviteAccept"]) == [("token", "FORBIDDEN")]
    assert codes(new_account) == [("token", "UNIQUE")]
    assert mine["errors"] == [] and mine["user"]["id"] == gid("User", existing.id)
    assert mine["membership"]["role"] == "CUSTOMER_ADMIN"
    assert await Membership.filter(user_id=existing.id).count() == 2
    assert not await User.filter(username_key="new.member").exists()


async def test_inviting_again_resends_with_a_new_link_and_no_extra_seat(
    gql: GQL, app: Any, tenant: Tenant, mailbox: Mailbox
) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    first = await invite(gql, staff, customer, "twice@example.com")
    await run_jobs(app)
    # when
    second = await invite(gql, staff, customer, "twice@example.com", "CUSTOMER_ADMIN")
    await run_jobs(app)
    # then
    assert first["invitation"]["id"] == second["invitation"]["id"] and second["invitation"]["role"] == "CUSTOMER_ADMIN"
    old, new = (token_of(link_in(m, "/invite?token=")) for m in mailbox.to("twice@example.com"))
    assert old != new
    assert codes((await gql(ACCEPT, {"i": {"token": old, **NEW_ACCOUNT}}))["teamMemberInviteAccept"]) == [
        ("token", "INVALID")
    ]
    seats = (await gql(TEAM, {"id": gid("Customer", customer.id)}, staff))["customer"]["seats"]
    assert seats["pendingInvitations"] == 1
    assert (await gql(ACCEPT, {"i": {"token": new, **NEW_ACCOUNT}}))["teamMemberInviteAccept"]["errors"] == []


async def test_a_re_sent_invitation_job_of_the_old_link_sends_nothing(
    gql: GQL, app: Any, tenant: Tenant, mailbox: Mailbox
) -> None:
    # given: two invitations to one address before any job ran
    staff = await gql.login(tenant.owner.email)
    await invite(gql, staff, tenant.customers[0], "once@example.com")
    await invite(gql, staff, tenant.customers[0], "once@example.com")
    # when
    await run_jobs(app)
    # then: only the newest link goes out
    assert len(mailbox.to("once@example.com")) == 1


# --- seats ---------------------------------------------------------------------------------------------------------


async def test_seats_count_members_and_pending_invitations(gql: GQL, tenant: Tenant) -> None:
    # given: three seats, the admin takes one
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    await set_limit(customer, 3)
    # when
    results = [await invite(gql, staff, customer, f"seat{n}@example.com") for n in range(3)]
    # then
    assert [codes(r) for r in results] == [[], [], [("email", "SEATS_EXHAUSTED")]]
    team = (await gql(TEAM, {"id": gid("Customer", customer.id)}, staff))["customer"]
    assert team["seats"] == {"limit": 3, "members": 1, "pendingInvitations": 2, "available": 0}
    # the limit cannot go below members + pending invitations
    lowered = await gql(FEATURES, {"i": {"customerId": gid("Customer", customer.id), "maxTeamMembers": 2}}, staff)
    assert codes(lowered["customerFeaturesUpdate"]) == [("maxTeamMembers", "INVALID")]
    # when: an invitation is revoked, its seat frees up
    revoked = await gql(REVOKE, {"i": {"invitationId": results[0]["invitation"]["id"]}}, staff)
    retried = await invite(gql, staff, customer, "seat2@example.com")
    # then
    assert revoked["invitationRevoke"] == {"invitation": {"status": "REVOKED"}, "errors": []}
    assert retried["errors"] == []
    assert await Invitation.filter(customer_id=customer.id, revoked_at=None).count() == 2


@pytest.mark.postgres
async def test_ten_concurrent_invitations_never_pass_the_seat_limit(gql: GQL, tenant: Tenant) -> None:
    # given: five seats, one taken by the admin
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    await set_limit(customer, 5)
    # when: ten invitations at once
    results = await asyncio.gather(*(invite(gql, staff, customer, f"rush{n}@example.com") for n in range(10)))
    # then: exactly four get a seat
    outcomes = sorted(r["errors"][0]["code"] if r["errors"] else "OK" for r in results)
    assert outcomes == ["OK"] * 4 + ["SEATS_EXHAUSTED"] * 6
    assert await Invitation.filter(customer_id=customer.id).count() == 4


async def test_team_members_need_the_portal_and_the_team_feature(gql: GQL, tenant: Tenant) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    customer_id = gid("Customer", customer.id)
    # when: team members off, then the portal off (which switches team members off too)
    await gql(FEATURES, {"i": {"customerId": customer_id, "teamMembersEnabled": False}}, staff)
    without_team = await invite(gql, staff, customer, "a@example.com")
    await gql(FEATURES, {"i": {"customerId": customer_id, "portalEnabled": False}}, staff)
    without_portal = await invite(gql, staff, customer, "a@example.com")
    # then
    assert codes(without_team) == [("email", "REQUIRES_FEATURE")]
    assert codes(without_portal) == [("email", "REQUIRES_FEATURE")]
    assert "portal" in without_portal["errors"][0]["message"]
    assert not await Invitation.exists()


async def test_an_invitation_cannot_be_accepted_once_team_members_are_off(gql: GQL, app: Any, tenant: Tenant) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    await invite(gql, staff, customer, "late@example.com")
    invitation = await Invitation.get(email_key="late@example.com")
    from domain.team.services import invitation_token

    await gql(FEATURES, {"i": {"customerId": gid("Customer", customer.id), "teamMembersEnabled": False}}, staff)
    # when
    accepted = await gql(ACCEPT, {"i": {"token": invitation_token(invitation), **NEW_ACCOUNT}})
    # then: nothing is created
    assert codes(accepted["teamMemberInviteAccept"]) == [("token", "REQUIRES_FEATURE")]
    assert not await User.filter(username_key="new.member").exists()


# --- members and roles ---------------------------------------------------------------------------------------------


async def test_the_last_admin_can_be_neither_removed_nor_demoted(gql: GQL, factory: Factory, tenant: Tenant) -> None:
    # given: the customer's one admin and a member
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    admin = tenant.admins[0]
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    customer_id = gid("Customer", customer.id)
    # when
    remove_admin = await gql(REMOVE, {"i": {"customerId": customer_id, "userId": gid("User", admin.id)}}, staff)
    demote_admin = await gql(
        ROLE, {"i": {"customerId": customer_id, "userId": gid("User", admin.id), "role": "CUSTOMER_MEMBER"}}, staff
    )
    wrong_role = await gql(
        ROLE, {"i": {"customerId": customer_id, "userId": gid("User", member.id), "role": "PARTNER_ADMIN"}}, staff
    )
    # then
    assert codes(remove_admin["teamMemberRemove"]) == [(None, "NOT_ELIGIBLE")]
    assert codes(demote_admin["memberRoleUpdate"]) == [(None, "NOT_ELIGIBLE")]
    assert codes(wrong_role["memberRoleUpdate"]) == [("role", "INVALID")]
    # when: the member becomes an admin, the first admin can step down and then leave
    promoted = await gql(
        ROLE, {"i": {"customerId": customer_id, "userId": gid("User", member.id), "role": "CUSTOMER_ADMIN"}}, staff
    )
    demoted = await gql(
        ROLE, {"i": {"customerId": customer_id, "userId": gid("User", admin.id), "role": "CUSTOMER_MEMBER"}}, staff
    )
    admin_token = await gql.login(admin.email)
    removed = await gql(REMOVE, {"i": {"customerId": customer_id, "userId": gid("User", admin.id)}}, staff)
    # then
    assert promoted["memberRoleUpdate"] == {"membership": {"role": "CUSTOMER_ADMIN"}, "errors": []}
    assert demoted["memberRoleUpdate"] == {"membership": {"role": "CUSTOMER_MEMBER"}, "errors": []}
    assert removed["teamMemberRemove"]["errors"] == []
    assert not await Membership.filter(customer_id=customer.id, user_id=admin.id).exists()
    assert await User.filter(id=admin.id, is_active=True).exists()  # the account stays
    # its session acted through the membership: signed out
    assert (await gql.raw("{ me { id } }", token=admin_token)).status_code == 401


async def test_partner_admins_edit_a_client_users_details(
    gql: GQL, app: Any, factory: Factory, mailbox: Mailbox
) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    staff = await gql.login(tenant.owner.email)
    customer = tenant.customers[0]
    admin = tenant.admins[0]
    base = {"customerId": gid("Customer", customer.id), "userId": gid("User", admin.id)}
    # when
    changed = await gql(
        MEMBER_UPDATE,
        {"i": {**base, "firstName": "Carla", "email": "carla@client.example", "phone": "+1 555 0199"}},
        staff,
    )
    await run_jobs(app)
    # then
    assert changed["teamMemberUpdate"] == {
        "user": {
            "firstName": "Carla",
            "lastName": admin.last_name,
            "email": "carla@client.example",
            "phone": "+1 555 0199",
            "displayName": f"Carla {admin.last_name}",
        },
        "errors": [],
    }
    assert await gql.login("carla@client.example")
    assert len(mailbox.to(admin.email)) == 1  # the old address is told
    # refusals: a bad email, someone else's address, the customer's own admin, a shared account
    bad = await gql(MEMBER_UPDATE, {"i": {**base, "email": "nope", "firstName": ""}}, staff)
    assert sorted(codes(bad["teamMemberUpdate"])) == [("email", "INVALID"), ("firstName", "REQUIRED")]
    taken = await gql(MEMBER_UPDATE, {"i": {**base, "email": tenant.owner.email}}, staff)
    assert codes(taken["teamMemberUpdate"]) == [("email", "UNIQUE")]
    own_admin = await gql(MEMBER_UPDATE, {"i": {**base, "firstName": "Self"}}, await gql.login("carla@client.example"))
    assert codes(own_admin["teamMemberUpdate"]) == [(None, "FORBIDDEN")]
    other_partner, _ = await factory.partner()
    elsewhere, _ = await factory.customer(other_partner)
    await Membership.create(
        user_id=admin.id, role=Role.CUSTOMER_MEMBER, customer_id=elsewhere.id, org_key=f"customer:{elsewhere.id}"
    )
    shared = await gql(MEMBER_UPDATE, {"i": {**base, "firstName": "Shared"}}, staff)
    assert codes(shared["teamMemberUpdate"]) == [("userId", "NOT_ELIGIBLE")]


async def test_partner_staff_invitations(gql: GQL, app: Any, factory: Factory, mailbox: Mailbox) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    staff = await gql.login(tenant.owner.email)
    partner_id = gid("Partner", tenant.partner.id)
    # when
    sent = await gql(PARTNER_INVITE, {"i": {"partnerId": partner_id, "email": "ops@agency.example"}}, staff)
    await run_jobs(app)
    token = token_of(link_in(mailbox.to("ops@agency.example")[0], "/invite?token="))
    accepted = await gql(ACCEPT, {"i": {"token": token, **NEW_ACCOUNT}})
    # then
    assert sent["partnerMemberInvite"]["errors"] == [] and sent["partnerMemberInvite"]["invitation"]["customer"] is None
    assert accepted["teamMemberInviteAccept"]["membership"]["role"] == "PARTNER_MEMBER"
    assert await Membership.filter(partner_id=tenant.partner.id, user__username_key="new.member").exists()
    # customer roles, customer admins and other partners are refused
    wrong = await gql(
        PARTNER_INVITE, {"i": {"partnerId": partner_id, "email": "x@example.com", "role": "CUSTOMER_ADMIN"}}, staff
    )
    assert codes(wrong["partnerMemberInvite"]) == [("role", "INVALID")]
    customer_admin = await gql.login(tenant.admins[0].email)
    refused = await gql(PARTNER_INVITE, {"i": {"partnerId": partner_id, "email": "x@example.com"}}, customer_admin)
    assert codes(refused["partnerMemberInvite"]) == [(None, "FORBIDDEN")]
    outsider = await gql.login((await factory.tenant(customers=0)).owner.email)
    hidden = await gql(PARTNER_INVITE, {"i": {"partnerId": partner_id, "email": "x@example.com"}}, outsider)
    assert codes(hidden["partnerMemberInvite"]) == [("partnerId", "NOT_FOUND")]


# --- who may do what -----------------------------------------------------------------------------------------------


async def test_who_may_invite_and_see_invitations(gql: GQL, factory: Factory, tenant: Tenant) -> None:
    # given
    customer = tenant.customers[0]
    customer_admin = await gql.login(tenant.admins[0].email)
    member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
    member_token = await gql.login(member.email)
    outsider = await gql.login((await factory.tenant(customers=0)).owner.email)
    # when
    by_admin = await invite(gql, customer_admin, customer, "by.admin@example.com")
    by_member = await invite(gql, member_token, customer, "by.member@example.com")
    by_outsider = await invite(gql, outsider, customer, "by.outsider@example.com")
    # then
    assert by_admin["errors"] == []
    assert codes(by_member) == [(None, "FORBIDDEN")]
    assert codes(by_outsider) == [("customerId", "NOT_FOUND")]
    # the customer's admins and partner staff see invitations; members see none, outsiders not even the customer
    seen = (await gql(TEAM, {"id": gid("Customer", customer.id)}, customer_admin))["customer"]["invitations"]
    assert seen["totalCount"] == 1
    unseen = (await gql(TEAM, {"id": gid("Customer", customer.id)}, member_token))["customer"]["invitations"]
    assert unseen["totalCount"] == 0
    assert (await gql(TEAM, {"id": gid("Customer", customer.id)}, outsider))["customer"] is None
    node = "query($id: ID!) { node(id: $id) { ... on Invitation { email } } }"
    invitation_id = by_admin["invitation"]["id"]
    assert (await gql(node, {"id": invitation_id}, await gql.login(tenant.owner.email)))["node"] == {
        "email": "by.admin@example.com"
    }
    assert (await gql(node, {"id": invitation_id}, outsider))["node"] is None
    assert (await gql(node, {"id": invitation_id}, member_token))["node"] is None
    revoke = await gql(REVOKE, {"i": {"invitationId": invitation_id}}, outsider)
    assert codes(revoke["invitationRevoke"]) == [("invitationId", "NOT_FOUND")]


async def test_the_invitation_page_refuses_unknown_links(gql: GQL) -> None:
    for token in ("", "pd_inv_1_" + "x" * 43, "garbage"):
        page = await gql.client.get("/invite", params={"token": token})
        assert page.status_code == 404 and "cannot be used" in page.text
        assert "script-src 'nonce-" in page.headers["content-security-policy"]


async def test_team_reads_stay_at_a_fixed_number_of_queries(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=2)
    staff = await gql.login(tenant.owner.email)
    query = """{ customers(first: 100) { nodes { seats { available } invitations(first: 5) { totalCount
      nodes { email invitedBy { email } } } portal { enabled autoInvite } branding { primaryColor }
      demo { enabled nextResetAt } partner { domains customDomains { domain } } } } }"""
    for customer in tenant.customers:
        await invite(gql, staff, customer, f"q{customer.id}@example.com")
    with count_queries() as few:
        await gql(query, token=staff)
    for _ in range(4):
        customer, _ = await factory.customer(tenant.partner)
        await invite(gql, staff, customer, f"q{customer.id}@example.com")
    # when
    with count_queries() as many:
        data = await gql(query, token=staff)
    # then
    assert len(data["customers"]["nodes"]) == 6
    assert len(many.queries) == len(few.queries)


async def test_an_accepted_invitation_signs_up_under_the_customer_creation_policy(gql: GQL, tenant: Tenant) -> None:
    # given
    staff = await gql.login(tenant.owner.email)
    await invite(gql, staff, tenant.customers[0], "weak@example.com")
    from domain.team.services import invitation_token

    token = invitation_token(await Invitation.get(email_key="weak@example.com"))
    # when
    weak = await gql(
        ACCEPT,
        {"i": {**NEW_ACCOUNT, "token": token, "password": "short", "passwordConfirmation": "short", "username": "x"}},
    )
    taken = await gql(ACCEPT, {"i": {**NEW_ACCOUNT, "token": token, "username": tenant.admins[0].username}})
    # then
    assert sorted(codes(weak["teamMemberInviteAccept"])) == [("password", "WEAK_PASSWORD"), ("username", "INVALID")]
    assert codes(taken["teamMemberInviteAccept"]) == [("username", "UNIQUE")]
    assert PASSWORD  # the fixtures' password is untouched


async def test_partner_lists_stay_at_a_fixed_number_of_queries(gql: GQL, factory: Factory) -> None:
    # given: partners with domains and staff invitations, read by a platform admin
    admin = await factory.admin()
    token = await gql.login(admin.email)
    query = """{ partners(first: 100) { nodes { domains customDomains { domain verified }
      invitations(first: 5) { totalCount nodes { email } } } } }"""

    async def partner_with_extras() -> None:
        partner, _ = await factory.partner()
        await gql(
            """mutation($i: PartnerUpdateInput!) { partnerUpdate(input: $i) { errors { code } } }""",
            {"i": {"partnerId": gid("Partner", partner.id), "domains": [f"p{partner.id}.example.com"]}},
            token,
        )
        await gql(
            PARTNER_INVITE, {"i": {"partnerId": gid("Partner", partner.id), "email": f"s{partner.id}@e.com"}}, token
        )

    await partner_with_extras()
    with count_queries() as few:
        await gql(query, token=token)
    for _ in range(4):
        await partner_with_extras()
    # when
    with count_queries() as many:
        data = await gql(query, token=token)
    # then
    assert len(data["partners"]["nodes"]) == 5
    assert all(n["invitations"]["totalCount"] == 1 and len(n["domains"]) == 1 for n in data["partners"]["nodes"])
    assert len(many.queries) == len(few.queries)
