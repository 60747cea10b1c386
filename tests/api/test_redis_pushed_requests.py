"""Pushed requests in Redis through the app (PAR_PUSHED_REQUEST_STORE=redis), on both databases.

The protocol's behaviour with this store (resolve, consume once, expiry boundaries, client binding,
other services) is tests/api/test_authorization.py, which runs with both stores; here is what is
particular to Redis: where requests live, their keys' expiry, the deleted-client bound and outages.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select

from app.core.secrets import REQUEST_URI_PREFIX, reference_hash
from app.db.models import PushedRequest
from app.db.redis_pushed_requests import (
    KEY_PREFIX,
    key_expiry_ms,
    pushed_request_key,
)
from app.main import create_app, update_gauges
from app.settings import Settings
from tests.conftest import BASE_URL, forget_pushed_requests, make_settings
from tests.factories import ClientHandle, Factory, ServiceHandle, par_params, push
from tests.faults.support import assert_result_error, assert_rfc6749_server_error


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url=redis_url, pushed_request_store="redis")


@pytest.fixture(autouse=True)
async def forget_redis_keys(app: FastAPI) -> AsyncIterator[None]:
    yield
    await forget_pushed_requests(app.state.par)


def redis_of(app: FastAPI) -> Redis:
    redis: Redis | None = app.state.par.redis
    assert redis is not None
    return redis


def key_of(service: ServiceHandle, request_uri: str) -> str:
    return pushed_request_key(service.id, reference_hash(request_uri.removeprefix(REQUEST_URI_PREFIX)))


async def rows_in_database(app: FastAPI) -> int:
    async with app.state.par.sessions() as session:
        return await session.scalar(select(func.count()).select_from(PushedRequest)) or 0


async def keys_of(app: FastAPI, service: ServiceHandle) -> list[bytes]:
    return [key async for key in redis_of(app).scan_iter(match=f"{KEY_PREFIX}{service.id}:*", count=1000)]


async def backend_push(client: httpx.AsyncClient, service: ServiceHandle, par_client: ClientHandle) -> httpx.Response:
    body = {"parameters": urlencode(par_params(par_client)), "clientId": str(par_client.id)}
    return await client.post(
        f"/api/{service.id}/pushed_auth_req", json=body | {"clientSecret": par_client.secret}, headers=service.bearer
    )


async def resolve(
    client: httpx.AsyncClient, service: ServiceHandle, client_id: int, request_uri: str
) -> httpx.Response:
    parameters = urlencode({"client_id": str(client_id), "request_uri": request_uri})
    return await client.post(
        f"/api/{service.id}/pushed_auth_req/resolve", json={"parameters": parameters}, headers=service.bearer
    )


async def consume(
    client: httpx.AsyncClient, service: ServiceHandle, client_id: int, request_uri: str
) -> httpx.Response:
    body = {"clientId": str(client_id), "requestUri": request_uri}
    return await client.post(f"/api/{service.id}/pushed_auth_req/consume", json=body, headers=service.bearer)


def action(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["action"]


async def test_pushes_go_to_redis_with_the_requests_expiry(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """PAR-13: a 201 at either front door means Redis holds the request, in a key of its service that
    expires with it (expires_in); the database holds none."""
    before = datetime.now(UTC)
    rfc = await push(client, service, basic_client)
    backend = await backend_push(client, service, basic_client)
    after = datetime.now(UTC)
    assert rfc.status_code == 201, rfc.text
    assert backend.status_code == 200 and backend.json()["action"] == "CREATED", backend.text
    for request_uri in (rfc.json()["request_uri"], backend.json()["requestUri"]):
        expiry = await redis_of(app).pexpiretime(key_of(service, request_uri))
        assert key_expiry_ms(before + timedelta(seconds=60)) <= expiry <= key_expiry_ms(after + timedelta(seconds=60))
    assert len(await keys_of(app, service)) == 2
    assert await rows_in_database(app) == 0


async def test_resolve_moves_the_keys_expiry_and_consume_removes_the_key(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    """NOTE-02: the first resolve opens the authorization session (the key lives as long); PAR-31: the
    consumed request is gone."""
    service = await factory.service(authorizationSessionDuration=600)
    par_client = await factory.client(service)
    request_uri = (await push(client, service, par_client)).json()["request_uri"]
    answer = await resolve(client, service, par_client.id, request_uri)
    assert action(answer) == "OK"
    key = key_of(service, request_uri)
    # expiresAt is truncated to the millisecond, the key's expiry rounded up.
    assert 0 <= await redis_of(app).pexpiretime(key) - answer.json()["expiresAt"] <= 1
    assert action(await consume(client, service, par_client.id, request_uri)) == "OK"
    assert await redis_of(app).exists(key) == 0
    assert action(await consume(client, service, par_client.id, request_uri)) == "BAD_REQUEST"


async def test_a_client_deleted_through_another_replica(
    app: FastAPI,
    client: httpx.AsyncClient,
    second_replica: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
) -> None:
    """The documented bound: no foreign key refuses the push while this replica still caches the client
    (PAR_RECORD_CACHE_SECONDS), but resolve and consume read the client fresh (PAR-33), so its
    requests are unusable at once."""
    before = (await push(client, service, basic_client)).json()["request_uri"]  # caches the client here
    deleted = await second_replica.delete(f"/api/{service.id}/client/delete/{basic_client.id}", headers=service.bearer)
    assert deleted.status_code == 204, deleted.text
    after = await push(client, service, basic_client)
    assert after.status_code == 201, after.text
    for request_uri in (before, after.json()["request_uri"]):
        assert action(await resolve(client, service, basic_client.id, request_uri)) == "BAD_REQUEST"
        assert action(await consume(client, service, basic_client.id, request_uri)) == "BAD_REQUEST"


async def test_live_request_gauge_is_not_reported(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Redis has no cheap count of one key prefix: par_pushed_requests_live stays unset (README)."""
    assert (await push(client, service, basic_client)).status_code == 201
    await update_gauges(app.state.par)
    assert app.state.par.metrics.live_pushed_requests._value.get() == 0  # noqa: SLF001


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def cut_off_replica(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A replica on the same database whose Redis refuses connections (a closed port)."""
    dead_redis = f"redis://127.0.0.1:{closed_port()}/0"
    replica = create_app(make_settings(settings.database_url, redis_url=dead_redis, pushed_request_store="redis"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url=BASE_URL) as http:
        yield http
    await replica.state.par.aclose()


async def test_redis_outage_is_answered_503_and_stores_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    cut_off_replica: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
) -> None:
    """Redis refusing connections is answered like an unavailable database: 503 with Retry-After, in
    RFC 6749 §5.2 form at the RFC endpoint (PAR-19) and as a ResultError at the backend API, never a
    500; nothing is stored, and the request pushed before stays usable where Redis is reachable."""
    earlier = (await push(client, service, basic_client)).json()["request_uri"]
    rfc = await push(cut_off_replica, service, basic_client)
    assert_rfc6749_server_error(rfc, (503,))
    assert rfc.json()["error"] == "temporarily_unavailable" and rfc.headers["retry-after"] == "5"
    for response in (
        await backend_push(cut_off_replica, service, basic_client),
        await resolve(cut_off_replica, service, basic_client.id, earlier),
        await consume(cut_off_replica, service, basic_client.id, earlier),
    ):
        assert_result_error(response, (503,))
        assert response.json()["resultCode"] == "A001101" and response.headers["retry-after"] == "5"
    assert await keys_of(app, service) == [key_of(service, earlier).encode()]
    assert await rows_in_database(app) == 0
    assert action(await consume(client, service, basic_client.id, earlier)) == "OK"


async def test_readiness_reports_redis(client: httpx.AsyncClient, cut_off_replica: httpx.AsyncClient) -> None:
    """A replica whose Redis is away is taken out of the load balancer's rotation (503), not sent pushes."""
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["redis"] == "ok"
    cut_off = await cut_off_replica.get("/readyz")
    assert cut_off.status_code == 503
    assert cut_off.json()["status"] == "unavailable" and cut_off.json()["database"] == "ok"
    assert cut_off.json()["redis"] != "ok"
