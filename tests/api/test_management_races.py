"""Concurrent management calls on one service: the answers and what is stored are those of some order of
the calls, never a 500 and never a state that no order of them could produce.

Each race runs many rounds (the calls interleave differently from one round to the next); SQLite runs
with several pooled connections, so that its calls interleave too. No assertion depends on timing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.conftest import make_settings
from tests.factories import REDIRECT_URI, Factory, ServiceHandle

ROUNDS = 20
FAPI2_EXCLUDED = {"CLIENT_SECRET_BASIC", "CLIENT_SECRET_POST", "NONE"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, sqlite_pool_size=5)


async def create_client(http: httpx.AsyncClient, service: ServiceHandle, body: dict[str, Any]) -> httpx.Response:
    return await http.post(
        f"/api/{service.id}/client/create", json={"redirectUris": [REDIRECT_URI], **body}, headers=service.bearer
    )


async def list_clients(http: httpx.AsyncClient, service: ServiceHandle) -> list[dict[str, Any]]:
    response = await http.get(f"/api/{service.id}/client/get/list?end=100", headers=service.bearer)
    assert response.status_code == 200, response.text
    clients: list[dict[str, Any]] = response.json()["clients"]
    return clients


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


async def sequential_alias_conflict(http: httpx.AsyncClient, factory: Factory) -> dict[str, Any]:
    """What a duplicate alias gets when the calls do not overlap: the answer every loser must get."""
    service = await factory.service()
    await factory.client(service, clientIdAlias="same")
    response = await create_client(http, service, {"clientType": "PUBLIC", "clientIdAlias": "same"})
    assert response.status_code == 409, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_fapi2_switch_racing_secret_basic_registrations_never_leaves_both(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """FAPI-02: a FAPI 2.0 service holds no client_secret_basic client. A switch and registrations racing
    each other end as one of their orders: the switch first (registrations 400) or a registration first
    (switch 409)."""
    for _ in range(ROUNDS):
        service = await factory.service()
        calls = [create_client(client, service, {"tokenAuthMethod": "CLIENT_SECRET_BASIC"}) for _ in range(4)]
        switch = client.post(
            f"/api/{service.id}/service/update", json={"fapiModes": ["FAPI2_SECURITY"]}, headers=service.bearer
        )
        calls.insert(2, switch)  # registrations start before and after it
        responses = await asyncio.gather(*calls)
        switched = responses.pop(2)
        created = responses
        assert switched.status_code in (200, 409), switched.text
        assert set(statuses(created)) <= {200, 400}, [response.text for response in created]
        stored = await list_clients(client, service)
        fapi_modes = (await client.get(f"/api/{service.id}/service/get", headers=service.bearer)).json()["fapiModes"]
        if switched.status_code == 200:
            assert fapi_modes == ["FAPI2_SECURITY"]
            assert not [row for row in stored if row["tokenAuthMethod"] in FAPI2_EXCLUDED]
        else:
            assert fapi_modes == []
            assert stored, "the switch was refused for clients that must exist"
        assert len(stored) == statuses(created).count(200)


async def test_concurrent_creates_with_one_alias_have_one_winner(client: httpx.AsyncClient, factory: Factory) -> None:
    conflict = await sequential_alias_conflict(client, factory)
    for _ in range(ROUNDS):
        service = await factory.service()
        responses = await asyncio.gather(
            *[create_client(client, service, {"clientType": "PUBLIC", "clientIdAlias": "same"}) for _ in range(10)]
        )
        assert sorted(statuses(responses)) == [200] + [409] * 9, [response.text for response in responses]
        assert all(response.json() == conflict for response in responses if response.status_code == 409)
        assert [row["clientIdAlias"] for row in await list_clients(client, service)] == ["same"]


async def test_concurrent_updates_to_one_alias_have_one_winner(client: httpx.AsyncClient, factory: Factory) -> None:
    conflict = await sequential_alias_conflict(client, factory)
    for _ in range(ROUNDS):
        service = await factory.service()
        clients = [await factory.client(service, clientType="PUBLIC") for _ in range(5)]
        responses = await asyncio.gather(
            *[
                client.post(
                    f"/api/{service.id}/client/update/{handle.id}",
                    json={"clientIdAlias": "same"},
                    headers=service.bearer,
                )
                for handle in clients
            ]
        )
        assert sorted(statuses(responses)) == [200] + [409] * 4, [response.text for response in responses]
        assert all(response.json() == conflict for response in responses if response.status_code == 409)
        aliases = [row.get("clientIdAlias") for row in await list_clients(client, service)]
        assert aliases.count("same") == 1 and aliases.count(None) == 4


async def test_client_update_racing_its_deletion_is_200_or_404(client: httpx.AsyncClient, factory: Factory) -> None:
    for _ in range(ROUNDS):
        service = await factory.service()
        handle = await factory.client(service)
        path = f"/api/{service.id}/client"
        updated, refreshed, deleted, deleted_again = await asyncio.gather(
            client.post(f"{path}/update/{handle.id}", json={"clientName": "renamed"}, headers=service.bearer),
            client.post(f"{path}/secret/refresh/{handle.id}", headers=service.bearer),
            client.delete(f"{path}/delete/{handle.id}", headers=service.bearer),
            client.delete(f"{path}/delete/{handle.id}", headers=service.bearer),
        )
        assert updated.status_code in (200, 404), updated.text
        assert refreshed.status_code in (200, 404), refreshed.text
        assert sorted(statuses([deleted, deleted_again])) == [204, 404], [deleted.text, deleted_again.text]
        assert await list_clients(client, service) == []


async def test_service_deletion_racing_creations_in_it_is_never_a_500(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    for _ in range(ROUNDS):
        service = await factory.service()
        deleted, token, created = await asyncio.gather(
            client.delete(f"/api/{service.id}/service/delete", headers=factory.admin),
            client.post(f"/api/{service.id}/service/token/create", json={}, headers=factory.admin),
            create_client(client, service, {"clientType": "PUBLIC"}),
        )
        assert deleted.status_code == 204, deleted.text
        assert token.status_code in (200, 404), token.text
        # The service's token goes with it: a registration that comes second finds the token gone (401),
        # or, authorized just before, the service (404).
        assert created.status_code in (200, 401, 404), created.text
        gone = await client.get(f"/api/{service.id}/service/get", headers=factory.admin)
        assert gone.status_code == 404, gone.text
