"""A slow ``jwksUri`` holds no database connection: while pushes wait for a client's keys, pushes of
other services go on, on SQLite's one connection and on a small PostgreSQL pool alike.

Anyone can make a push fetch keys (a made-up assertion names the client), so a fetch that held the
request's pooled connection for ``PAR_JWKS_FETCH_TIMEOUT_SECONDS`` let a few such pushes stall every
service of the deployment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from joserfc.jwk import ECKey

from app.settings import Settings
from tests.conftest import make_settings
from tests.factories import (
    ClientHandle,
    Factory,
    ServiceHandle,
    client_assertion,
    par_params,
    public_jwks,
    request_object,
)
from tests.jwks_server import JwksServer

KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "slow-1"})
SLOW_PUSHES = 3  # more than the pool has connections (1 on SQLite, 2 on PostgreSQL here)
HOLD_LIMIT_SECONDS = 60.0  # the slow server answers by itself after this, so a failing test still ends


@pytest.fixture
def slow_jwks() -> Iterator[JwksServer]:
    server = JwksServer(held=True, expected=SLOW_PUSHES, hold_limit=HOLD_LIMIT_SECONDS)
    server.document = json.loads(public_jwks(KEY))
    yield server
    server.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """A small pool whose wait outlasts nothing here: a request that needs a connection while the slow
    pushes held them all would get a 503 (or wait for the slow server, which the test holds)."""
    return make_settings(
        database_url,
        jwks_allow_private_addresses=True,
        jwks_fetch_timeout_seconds=HOLD_LIMIT_SECONDS,
        db_pool_size=2,
        sqlite_pool_size=1,
        db_pool_timeout_seconds=10,
    )


async def slow_push(
    http: httpx.AsyncClient, service: ServiceHandle, clients: list[ClientHandle], n: int
) -> httpx.Response:
    """Three ways a push needs a client's keys: a private_key_jwt assertion (RFC 7523) at the RFC 9126
    endpoint and at the backend API, and a request object (RFC 9101) signed with a jwksUri client's key."""
    client = clients[n]
    if n == 0:
        credentials = client_assertion(client, KEY, "ES256", aud=service.issuer)
        return await http.post(service.par_path, data=par_params(client) | credentials)
    if n == 1:
        credentials = client_assertion(client, KEY, "ES256", aud=service.issuer)
        body = {"parameters": urlencode(par_params(client) | credentials)}
        return await http.post(f"/api/{service.id}/pushed_auth_req", json=body, headers=service.bearer)
    parameters: dict[str, Any] = par_params(client)
    signed = request_object(client, KEY, aud=service.issuer, **parameters)
    params = {"client_id": str(client.id), "request": signed}
    return await http.post(service.par_path, data=params, headers=client.basic())


async def test_pushes_waiting_for_a_slow_jwks_uri_hold_no_connection(
    client: httpx.AsyncClient, factory: Factory, slow_jwks: JwksServer
) -> None:
    service = await factory.service()
    clients = [
        await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwksUri=f"{slow_jwks.base_url}/jwks/0"),
        await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwksUri=f"{slow_jwks.base_url}/jwks/1"),
        await factory.client(service, jwksUri=f"{slow_jwks.base_url}/jwks/2"),
    ]
    other_service = await factory.service()
    other_client = await factory.client(other_service)  # the management call empties the record caches

    slow = [asyncio.ensure_future(slow_push(client, service, clients, n)) for n in range(SLOW_PUSHES)]
    try:
        # Until each slow push waits at the server, or one is answered without its keys (a 503: the
        # others held every pooled connection while they waited).
        while not slow_jwks.all_waiting.is_set() and not any(push.done() for push in slow):
            await asyncio.sleep(0.01)
        finished = [push.result().text for push in slow if push.done()]
        assert not finished, f"pushes waiting for keys held the connections others needed: {finished}"
        # Every slow push now waits for its keys; another service's push reads its service and client.
        response = await client.post(
            other_service.par_path, data=par_params(other_client), headers=other_client.basic()
        )
        assert response.status_code == 201, response.text
        assert not any(push.done() for push in slow), "the slow server has not answered yet"
        resolved = await client.post(
            f"/api/{other_service.id}/pushed_auth_req/resolve",
            json={
                "parameters": urlencode(
                    {"client_id": str(other_client.id), "request_uri": response.json()["request_uri"]}
                )
            },
            headers=other_service.bearer,
        )
        assert resolved.status_code == 200 and resolved.json()["action"] == "OK", resolved.text
    finally:
        slow_jwks.release.set()
        answers = await asyncio.gather(*slow)
    # Once the keys came, the slow pushes went on (checking connections out again) and succeeded.
    assert answers[0].status_code == 201, answers[0].text
    assert answers[1].status_code == 200 and answers[1].json()["action"] == "CREATED", answers[1].text
    assert answers[2].status_code == 201, answers[2].text
