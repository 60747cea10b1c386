"""Cached service and client records (app/db/cache.py): what a change made through one replica does on
another, with the documented bound PAR_RECORD_CACHE_SECONDS: no cache may let a deleted client or a rotated
secret keep working for longer than that documented, configurable bound."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.db.cache import RecordCache
from app.main import create_app
from tests.conftest import ADMIN_TOKEN, BASE_URL, make_settings
from tests.factories import ClientHandle, Factory, ServiceHandle, par_params, push


@pytest.fixture(params=[0.0, 300.0], ids=["cache-off", "cache-300s"])
def record_cache_seconds(request: pytest.FixtureRequest) -> float:
    return float(request.param)


@pytest.fixture
async def replicas(record_cache_seconds: float, database_url: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    settings = make_settings(database_url, record_cache_seconds=record_cache_seconds)
    apps: list[FastAPI] = [create_app(settings) for _ in range(2)]
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=BASE_URL) for a in apps]
    yield clients
    for http, application in zip(clients, apps, strict=True):
        await http.aclose()
        await application.state.par.aclose()


async def setup(replicas: list[httpx.AsyncClient]) -> tuple[ServiceHandle, ClientHandle]:
    factory = Factory(replicas[0], admin_token=ADMIN_TOKEN)
    service = await factory.service()
    client = await factory.client(service)
    statuses = [(await push(replica, service, client)).status_code for replica in replicas]
    assert statuses == [201, 201]  # both have cached it
    return service, client


async def test_a_deleted_client_stops_at_once_everywhere(replicas: list[httpx.AsyncClient]) -> None:
    """Even where it is still cached: the stored request's foreign key refuses it (invalid_client, and
    nothing stored)."""
    service, client = await setup(replicas)
    first = replicas[0]
    deleted = await first.delete(f"/api/{service.id}/client/delete/{client.id}", headers=service.bearer)
    assert deleted.status_code == 204
    for replica in replicas:
        response = await replica.post(service.par_path, data=par_params(client), headers=client.basic())
        assert response.status_code == 401 and response.json()["error"] == "invalid_client", response.text
        assert response.headers["www-authenticate"].startswith("Basic")


async def test_a_rotated_secret_works_where_it_was_rotated(
    replicas: list[httpx.AsyncClient], record_cache_seconds: float
) -> None:
    service, client = await setup(replicas)
    first, second = replicas
    refreshed = await first.post(f"/api/{service.id}/client/secret/refresh/{client.id}", headers=service.bearer)
    rotated = ClientHandle(client.id, refreshed.json()["newClientSecret"], client.body)
    assert (await push(first, service, rotated)).status_code == 201
    assert (await push(first, service, client)).status_code == 401
    # The other replica: at once without a cache; with one, until its entry is older than the bound.
    assert (await push(second, service, client)).status_code == (401 if record_cache_seconds == 0 else 201)


def test_entries_expire_and_the_cache_is_bounded() -> None:
    cache: RecordCache[int, str] = RecordCache(ttl=-1.0, max_entries=2)
    cache.put(1, "a")
    assert cache.get(1) is None  # ttl <= 0: nothing is kept
    cache = RecordCache(ttl=60.0, max_entries=2)
    for key in (1, 2, 3):
        cache.put(key, str(key))
    assert [cache.get(key) for key in (1, 2, 3)] == [None, "2", "3"]


async def test_a_revoked_service_token_stops_where_it_was_revoked(
    replicas: list[httpx.AsyncClient], record_cache_seconds: float
) -> None:
    """The backend API caches which service a token belongs to (app.state.AppState.find_token_service)."""
    first, second = replicas
    factory = Factory(first, admin_token=ADMIN_TOKEN)
    service = await factory.service()
    url = f"/api/{service.id}/pushed_auth_req/resolve"
    body = {"parameters": "client_id=1&request_uri=urn:ietf:params:oauth:request_uri:x"}
    for replica in replicas:
        assert (await replica.post(url, json=body, headers=service.bearer)).status_code == 200
    tokens = await first.get(f"/api/{service.id}/service/token/get/list", headers=factory.admin)
    for token in tokens.json():
        revoked = await first.delete(f"/api/{service.id}/service/token/delete/{token['id']}", headers=factory.admin)
        assert revoked.status_code == 204
    assert (await first.post(url, json=body, headers=service.bearer)).status_code == 401
    expected = 401 if record_cache_seconds == 0 else 200
    assert (await second.post(url, json=body, headers=service.bearer)).status_code == expected


async def test_only_a_committed_change_empties_the_caches(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    """Refused and read-only management calls leave the caches alone: otherwise anyone, even without a
    token, could make every push read its service and client from the database again."""
    service = await factory.service()
    registered = await factory.client(service)
    state = app.state.par

    def held() -> bool:
        return None not in (state.services.get(service.id), state.clients.get((service.id, str(registered.id))))

    async def cached() -> bool:
        assert (await push(client, service, registered)).status_code == 201
        return held()

    assert await cached()
    stranger = {"Authorization": "Bearer not-a-token"}
    for method, path, headers in [
        ("GET", "/api/service/get/list", {}),
        ("GET", f"/api/{service.id}/client/get/list", {}),
        ("POST", f"/api/{service.id}/service/update", stranger),
        ("DELETE", f"/api/{service.id}/client/delete/{registered.id}", stranger),
        ("GET", f"/api/{service.id}/client/secret/refresh/{registered.id}", {}),
        ("GET", f"/api/{service.id}/client/get/{registered.id}", service.bearer),
        ("POST", f"/api/{service.id}/client/update/{registered.id}", service.bearer),  # no body: 400
        ("POST", f"/api/{service.id}/client/secret/update/{registered.id}", service.bearer),  # no body: 400
        ("POST", f"/api/{service.id}/client/secret/update/{registered.id}", stranger),
        ("DELETE", f"/api/{service.id}/client/delete/999", service.bearer),  # 404
    ]:
        response = await client.request(method, path, headers=headers)
        assert response.status_code in (200, 400, 401, 404), (path, response.text)
        assert held(), (method, path)
    updated = await client.post(f"/api/{service.id}/service/update", json={"description": "x"}, headers=service.bearer)
    assert updated.status_code == 200
    assert state.services.get(service.id) is None and not held()
    assert await cached()
