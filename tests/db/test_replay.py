"""Replay stores (CA-05): the database store and the Redis store, both shared across replicas."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from joserfc.jwk import ECKey
from redis.asyncio import Redis

from app.db.replay import RedisReplayStore
from app.main import create_app
from tests.conftest import ADMIN_TOKEN, BASE_URL, make_settings
from tests.factories import Factory, client_assertion, par_params, public_jwks


async def test_redis_store_remembers_once_and_expires(redis_url: str) -> None:
    store = RedisReplayStore(Redis.from_url(redis_url))
    key = uuid.uuid4().hex
    try:
        assert await store.remember(key, expires_at=datetime.now(UTC) + timedelta(seconds=30))
        assert not await store.remember(key, expires_at=datetime.now(UTC) + timedelta(seconds=30))
        ttl = await store._redis.pttl(RedisReplayStore.PREFIX + key)  # noqa: SLF001 - checking the expiry set
        assert 25_000 < ttl <= 30_000
    finally:
        await store.aclose()


@pytest.fixture
async def replicas_on_redis(database_url: str, redis_url: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two app instances on one database, sharing replay entries through Redis."""
    apps = [create_app(make_settings(database_url, redis_url=redis_url)) for _ in range(2)]
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) for app in apps]
    yield clients
    for http, app in zip(clients, apps, strict=True):
        await http.aclose()
        await app.state.par.aclose()


async def test_replay_is_refused_across_replicas_through_redis(replicas_on_redis: list[httpx.AsyncClient]) -> None:
    first, second = replicas_on_redis
    factory = Factory(first, admin_token=ADMIN_TOKEN)
    service = await factory.service()
    key = ECKey.generate_key("P-256", private=True, parameters={"kid": "k"})
    par_client = await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(key))
    credentials = client_assertion(par_client, key, "ES256", aud=f"{BASE_URL}/services/{service.id}")
    assert (await first.post(service.par_path, data=par_params(par_client) | credentials)).status_code == 201
    replay = await second.post(service.par_path, data=par_params(par_client) | credentials)
    assert replay.status_code == 401 and "already used" in replay.json()["error_description"]
