"""Rate limiting at both front doors (PAR-24): 429 with Retry-After, shared across replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage

from app.api.observability import Metrics
from app.api.rate_limit import Caller, RateLimits
from app.db.rate_limits import SyncedCounters
from app.main import create_app
from app.settings import Settings
from tests.conftest import BASE_URL, make_settings
from tests.factories import ClientHandle, Factory, ServiceHandle, par_params


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        rate_limit_per_address="8/minute",
        rate_limit_per_client="5/minute",
        rate_limit_failed_authentication="3/minute",
    )


def assert_throttled(response: httpx.Response, *, api: bool = False) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    body = response.json()
    if api:
        assert set(body) == {"resultCode", "resultMessage"}
    else:
        assert body["error"] == "temporarily_unavailable" and response.headers["cache-control"] == "no-store"


async def test_per_client_budget(client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle) -> None:
    for _ in range(5):
        assert (
            await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        ).status_code == 201
    assert_throttled(await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic()))


async def test_per_address_budget_spans_clients(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    clients = [await factory.client(service) for _ in range(3)]
    statuses = [
        (await client.post(service.par_path, data=par_params(c), headers=c.basic())).status_code
        for c in clients
        for _ in range(3)
    ]
    assert statuses[:8] == [201] * 8 and statuses[8] == 429


async def test_failed_authentication_locks_out_harder(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Three wrong secrets spend the failed-authentication budget: even the right secret then waits."""
    for _ in range(3):
        assert (
            await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic("wrong"))
        ).status_code == 401
    assert_throttled(await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic()))


async def test_backend_api_is_limited_with_a_result_error(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    body = {
        "parameters": urlencode(par_params(basic_client)),
        "clientId": str(basic_client.id),
        "clientSecret": basic_client.secret,
    }
    for _ in range(5):
        answer = await client.post(f"/api/{service.id}/pushed_auth_req", headers=service.bearer, json=body)
        assert answer.json()["action"] == "CREATED"
    assert_throttled(
        await client.post(f"/api/{service.id}/pushed_auth_req", headers=service.bearer, json=body), api=True
    )


async def synced(*apps: FastAPI) -> None:
    """What the replicas' background tasks have done within two PAR_RATE_LIMIT_SYNC_SECONDS: each
    added its hits to the shared counters, then each read the totals back."""
    for _ in range(2):
        for application in apps:
            await application.state.par.rate_limits.storage.sync()


async def test_budgets_are_shared_by_replicas(
    app: FastAPI, second_replica_app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Each replica counts its own hits at once and learns the others' at each sync."""
    replicas = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=BASE_URL) for a in (app, second_replica_app)
    ]
    for n in range(5):
        replica = replicas[n % 2]
        assert (
            await replica.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        ).status_code == 201
        await synced(app, second_replica_app)
    for replica in replicas:
        assert_throttled(
            await replica.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        )


async def test_between_syncs_replicas_overshoot_by_at_most_what_the_others_admitted(
    app: FastAPI, second_replica_app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """The documented bound: without a sync, each replica admits up to the budget on its own; after one,
    both refuse until the window ends."""
    replicas = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=BASE_URL) for a in (app, second_replica_app)
    ]
    admitted = 0
    for replica in replicas:
        for _ in range(6):
            response = await replica.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
            admitted += response.status_code == 201
    assert admitted == 10  # 5 per replica: each saw only its own hits
    await synced(app, second_replica_app)
    for replica in replicas:
        assert_throttled(
            await replica.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        )


async def test_refusals_are_counted(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    for _ in range(6):
        await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    text = (await client.get("/metrics")).text
    assert 'par_rate_limited_total{front_door="rfc9126",scope="client"} 1.0' in text


@pytest.fixture
async def redis_replicas(database_url: str, redis_url: str) -> AsyncIterator[list[FastAPI]]:
    settings = make_settings(database_url, redis_url=redis_url, rate_limit_per_client="2/minute")
    apps = [create_app(settings) for _ in range(2)]
    await apps[0].state.par.rate_limits.storage.reset()
    yield apps
    for app in apps:
        await app.state.par.aclose()


async def test_redis_storage_is_shared(redis_replicas: list[FastAPI]) -> None:
    from tests.conftest import ADMIN_TOKEN

    apps = redis_replicas
    first, second = (httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=BASE_URL) for a in apps)
    factory = Factory(first, admin_token=ADMIN_TOKEN)
    service = await factory.service()
    par_client = await factory.client(service)
    for replica in (first, second):
        assert (
            await replica.post(service.par_path, data=par_params(par_client), headers=par_client.basic())
        ).status_code == 201
        await synced(*apps)
    assert_throttled(await first.post(service.par_path, data=par_params(par_client), headers=par_client.basic()))


async def test_a_stranger_cannot_lock_a_client_out(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Client ids are public: failures elsewhere, and unauthenticated requests, spend nothing of the client's."""
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as stranger:
        statuses = [
            (
                await stranger.post(
                    service.par_path, data=par_params(basic_client), headers=basic_client.basic("guess")
                )
            ).status_code
            for _ in range(6)
        ]
    assert statuses[:3] == [401] * 3 and statuses[3:] == [429] * 3
    for _ in range(5):
        assert (
            await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        ).status_code == 201


async def test_remembered_counter_keys_are_bounded() -> None:
    """Counter keys are remembered to save rebuilding them, but never more than the bound: a flood of
    distinct addresses or client ids cannot grow the process."""
    limits = RateLimits(
        SyncedCounters(MemoryStorage(), interval=60),
        per_address="100/minute",
        per_client="100/minute",
        failed_authentication="100/minute",
        metrics=Metrics(),
        max_remembered_keys=10,
    )
    for number in range(200):
        assert await limits.admit(Caller("rfc9126", 1, f"10.0.0.{number}", f"client-{number}")) is None
    assert len(limits._keys) <= 10
    refused = Caller("rfc9126", 1, "10.9.9.9", None)
    for _ in range(100):
        assert await limits.admit(refused) is None
    assert await limits.admit(refused) is not None  # counting is unaffected by forgetting keys
    await limits.storage.aclose()
