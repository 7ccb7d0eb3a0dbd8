"""No N+1: a page of customers with their features, team, the team's memberships and the partner costs a fixed
number of SQL statements, whether it holds 5 customers or 50; so do connections nested in connections (a
partner's customers, each with its campaigns and its partner's customers again)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.accounts.models import Membership, Role
from domain.accounts.services import org_key
from domain.campaigns.models import Campaign
from domain.customers.models import Customer
from domain.partners.models import Partner
from tests.conftest import GQL, Factory, count_queries, gid

PAGE = """
query {
  customers(first: 100) {
    totalCount
    edges {
      node {
        name
        partner { name }
        features { apiAccess portalSections lowCreditThreshold maxTeamMembers }
        package { version expiresAt package { title userCount } }
        teamMembers(first: 10) {
          totalCount
          nodes { username memberships { role customer { name } partner { name } } }
        }
      }
    }
  }
}"""
PARTNER_PAGE = """
query($id: ID!) {
  partner(id: $id) {
    name
    customers(first: 100) {
      totalCount
      nodes { name partner { name } teamMembers(first: 10) { nodes { username memberships { customer { name } } } } }
    }
  }
}"""


async def grow(factory: Factory, partner: Partner, until: int) -> None:
    """Adds customers, each with an admin and a member; every second member also belongs to the previous customer."""
    previous: Customer | None = await Customer.filter(partner_id=partner.id).order_by("-id").first()
    while await Customer.filter(partner_id=partner.id).count() < until:
        customer, _ = await factory.customer(partner)
        member = await factory.user(role=Role.CUSTOMER_MEMBER, customer=customer)
        if previous is not None and customer.id % 2 == 0:
            await Membership.create(
                user=member, role=Role.CUSTOMER_MEMBER, customer=previous, org_key=org_key(customer_id=previous.id)
            )
        previous = customer


async def measure(gql: GQL, query: str, variables: dict[str, Any] | None, token: str) -> tuple[int, dict[str, Any]]:
    with count_queries() as counter:
        data = await gql(query, variables, token=token)
    return len(counter.queries), data


def team_shape(data: dict[str, Any]) -> tuple[int, int, int]:
    """(customers, team members, memberships with a visible customer) in the answer."""
    nodes = [e["node"] for e in data["customers"]["edges"]]
    members = [m for n in nodes for m in n["teamMembers"]["nodes"]]
    memberships = [ms for m in members for ms in m["memberships"] if ms["customer"] is not None]
    return len(nodes), len(members), len(memberships)


@pytest.mark.parametrize("role", [Role.PARTNER_ADMIN, Role.PARTNER_MEMBER, Role.PLATFORM_ADMIN])
async def test_customer_page_costs_the_same_for_5_and_50_customers(gql: GQL, factory: Factory, role: Role) -> None:
    # given
    partner, owner = await factory.partner("Counting Agency")
    other = await factory.tenant(customers=3)  # noise behind the wall (and, for the platform admin, on the page)
    viewer = owner if role is Role.PARTNER_ADMIN else await factory.user(role=role, partner=partner)
    if role is Role.PLATFORM_ADMIN:
        viewer = await factory.admin()
    token = await gql.login(viewer.email)
    await grow(factory, partner, 5)
    # when
    small, small_data = await measure(gql, PAGE, None, token)
    await grow(factory, partner, 50)
    large, large_data = await measure(gql, PAGE, None, token)
    # then
    extra = len(other.customers) if role is Role.PLATFORM_ADMIN else 0
    assert team_shape(small_data)[0] == 5 + extra
    assert team_shape(large_data)[0] == 50 + extra
    _, members, memberships = team_shape(large_data)
    assert members >= 2 * 50 and memberships > members  # the shared members really have two memberships
    print(f"\nSQL statements for a customers page as {role}: 5 customers → {small}, 50 customers → {large}")
    assert small == large, f"5 customers took {small} statements, 50 took {large}: an N+1 crept in"


async def test_partner_customers_connection_costs_the_same_for_5_and_50(gql: GQL, factory: Factory) -> None:
    # given
    partner, owner = await factory.partner("Counting Agency")
    token = await gql.login(owner.email)
    variables = {"id": gid("Partner", partner.id)}
    await grow(factory, partner, 5)
    # when
    small, small_data = await measure(gql, PARTNER_PAGE, variables, token)
    await grow(factory, partner, 50)
    large, large_data = await measure(gql, PARTNER_PAGE, variables, token)
    # then
    assert small_data["partner"]["customers"]["totalCount"] == 5
    assert len(large_data["partner"]["customers"]["nodes"]) == 50
    print(f"\nSQL statements for partner.customers: 5 customers → {small}, 50 customers → {large}")
    assert small == large


async def test_customer_user_page_costs_no_more_with_more_siblings(gql: GQL, factory: Factory) -> None:
    # given
    partner, _ = await factory.partner("Counting Agency")
    _, admin = await factory.customer(partner, "Watched Co")
    token = await gql.login(admin.email)
    await grow(factory, partner, 5)
    # when
    small, small_data = await measure(gql, PAGE, None, token)
    await grow(factory, partner, 50)
    large, large_data = await measure(gql, PAGE, None, token)
    # then
    assert [e["node"]["name"] for e in small_data["customers"]["edges"]] == ["Watched Co"]
    assert [e["node"]["name"] for e in large_data["customers"]["edges"]] == ["Watched Co"]
    assert small == large


NESTED = """
query($id: ID!) {
  partner(id: $id) {
    customers(first: 50) {
      nodes {
        name
        campaigns(first: 5) { totalCount nodes { name } }
        partner { customers(first: 50) { totalCount nodes { name } } }
      }
    }
  }
}"""
PARTNERS = "{ partners(first: 50) { nodes { name customers(first: 50) { totalCount nodes { name } } } } }"


async def test_nested_connections_are_loaded_in_batches(gql: GQL, factory: Factory) -> None:
    # given a partner whose customers each have campaigns, reached again through each customer's partner
    partner, owner = await factory.partner("Counting Agency")
    token = await gql.login(owner.email)
    variables = {"id": gid("Partner", partner.id)}

    async def grow_with_campaigns(until: int) -> None:
        await grow(factory, partner, until)
        launched = set(await Campaign.all().values_list("customer_id", flat=True))
        for customer in await Customer.filter(partner_id=partner.id).exclude(id__in=launched):
            await Campaign.create(customer_id=customer.id, name=f"Launch {customer.id}")

    await grow_with_campaigns(5)
    # when
    small, _ = await measure(gql, NESTED, variables, token)
    await grow_with_campaigns(50)
    large, large_data = await measure(gql, NESTED, variables, token)
    # then
    nodes = large_data["partner"]["customers"]["nodes"]
    assert len(nodes) == 50 and all(n["campaigns"]["totalCount"] == 1 for n in nodes)
    assert all(n["partner"]["customers"]["totalCount"] == 50 for n in nodes)
    print(f"\nSQL statements for nested connections: 5 customers → {small}, 50 customers → {large}")
    assert small == large, f"5 customers took {small} statements, 50 took {large}: a nested connection is N+1"


async def test_a_page_of_partners_loads_their_customers_in_one_batch(gql: GQL, factory: Factory) -> None:
    # given
    admin = await factory.admin()
    token = await gql.login(admin.email)
    for _ in range(3):
        await factory.tenant(customers=2)
    # when
    small, _ = await measure(gql, PARTNERS, None, token)
    for _ in range(12):
        await factory.tenant(customers=3)
    large, data = await measure(gql, PARTNERS, None, token)
    # then
    counts = [p["customers"]["totalCount"] for p in data["partners"]["nodes"]]
    assert counts == [2] * 3 + [3] * 12
    assert [len(p["customers"]["nodes"]) for p in data["partners"]["nodes"]] == counts
    assert small == large, f"3 partners took {small} statements, 15 took {large}"
