"""The harness itself: the app answers over HTTP and a partner can sign in and list customers."""

from __future__ import annotations

from tests.conftest import GQL, Factory


async def test_healthz(client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_partner_signs_in_and_lists_customers(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=2)
    token = await gql.login(tenant.owner.email)
    # when
    data = await gql("{ customers { totalCount nodes { name partner { name } } } }", token=token)
    # then
    assert data["customers"]["totalCount"] == 2
    assert {n["partner"]["name"] for n in data["customers"]["nodes"]} == {tenant.partner.name}
