"""Shared fixtures: a migrated database of each kind, the app, and an HTTP client for it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import select

from app.cli import run_migrations
from app.db.models import Service
from app.db.redis_pushed_requests import KEY_PREFIX
from app.main import create_app
from app.settings import Settings
from app.state import AppState
from tests import databases
from tests.factories import ClientHandle, Factory, ServiceHandle

ADMIN_TOKEN = "test-admin-token-0123456789abcdefghijklmnop"
PEPPER = "test-pepper-0123456789abcdefghijklmnopqrstuv"
BASE_URL = "http://par.test"
# Redis tests use their own database (15) and touch only the keys of their own services or references:
# other test runs may share it.
REDIS_URL = os.environ.get("PAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_REDIS = os.environ.get("PAR_TEST_REQUIRE_REDIS") == "1"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return databases.migrated_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = databases.session_database_url(databases.POSTGRES_URL)
    databases.ensure_postgres_database(url)
    run_migrations(Settings(database_url=url))
    yield url
    databases.drop_postgres_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database; every test that stores anything runs once per kind."""
    if request.param == "sqlite":
        yield databases.fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
        databases.truncate_postgres(url)
        yield url


@pytest.fixture
def redis_url() -> str:
    """The test Redis; its tests are skipped when it is not reachable, or fail with PAR_TEST_REQUIRE_REDIS=1."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, OSError) as error:
        message = f"Redis is not reachable at {REDIS_URL}: {error}"
        if REQUIRE_REDIS:
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


async def forget_pushed_requests(state: AppState) -> None:
    """Delete the Redis keys of the pushed requests of this app's services (their keys may be set to
    expire years ahead by a test clock)."""
    assert state.redis is not None
    async with state.sessions() as session:
        service_ids = (await session.scalars(select(Service.id))).all()
    for service_id in service_ids:
        keys = [key async for key in state.redis.scan_iter(match=f"{KEY_PREFIX}{service_id}:*", count=1000)]
        if keys:
            await state.redis.delete(*keys)


@pytest.fixture(params=["database", "redis"])
def settings_per_store(request: pytest.FixtureRequest, database_url: str) -> Settings:
    """The app's settings, once per store of pushed requests: a module whose tests hold for both sets
    its ``settings`` to this and uses ``forget_redis_keys``."""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        return make_settings(database_url, redis_url=redis_url, pushed_request_store="redis")
    return make_settings(database_url)


@pytest.fixture
async def forget_redis_keys(app: FastAPI) -> AsyncIterator[None]:
    """After the test, delete the Redis keys of the app's pushed requests (with the Redis store)."""
    yield
    if app.state.par.pushed_requests is not None:
        await forget_pushed_requests(app.state.par)


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "pepper": PEPPER,
        "public_base_url": BASE_URL,
        # Tests push far faster than any client should; tests/api/test_rate_limits.py sets real budgets.
        "rate_limit_per_address": "100000/minute",
        "rate_limit_per_client": "100000/minute",
        "rate_limit_failed_authentication": "100000/minute",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    yield application
    await application.state.par.aclose()


@pytest.fixture
async def second_replica_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """Another app instance on the same database, as a second replica behind a load balancer would be."""
    replica = create_app(settings)
    yield replica
    await replica.state.par.aclose()


@pytest.fixture
async def second_replica(second_replica_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second_replica_app), base_url=BASE_URL) as http:
        yield http


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        yield http


@pytest.fixture
def factory(client: httpx.AsyncClient) -> Factory:
    return Factory(client, admin_token=ADMIN_TOKEN)


@pytest.fixture
async def service(factory: Factory) -> ServiceHandle:
    """A service with the default settings and scopes openid, profile, email and payments."""
    return await factory.service()


@pytest.fixture
async def basic_client(factory: Factory, service: ServiceHandle) -> ClientHandle:
    """A confidential client_secret_basic client of ``service``."""
    return await factory.client(service)
