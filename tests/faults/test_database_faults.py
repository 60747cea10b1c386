"""Database down or slow: requests fail fast (bounded pool wait) with 503/INTERNAL_SERVER_ERROR in the
right format, readiness reports it, and the service recovers by itself when the database returns,
without a restart.

The app runs under uvicorn in this process, on a PostgreSQL database reached through a TCP proxy
(``support.TcpProxy``) that the tests stop (down: refused and reset), black-hole (unreachable: nothing
answers) or slow down (latency on every answer). A small pool (2 connections, 1 s wait) makes the
bounds short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli import run_migrations
from app.db.engine import create_engine_from_settings
from app.main import create_app
from app.settings import Settings
from tests import databases
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.faults import support

pytestmark = [pytest.mark.faults, pytest.mark.postgresql]

POOL_SIZE = 2
POOL_TIMEOUT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 2
DB_CLIENT_TIMEOUT_SECONDS = 3.0
READYZ_TIMEOUT_SECONDS = 2.0
# Short bounds on an unreachable (connect), stuck (statement) or silent (client) database (app.db.engine).
TIMEOUTS: dict[str, object] = {
    "db_connect_timeout_seconds": CONNECT_TIMEOUT_SECONDS,
    "db_statement_timeout_seconds": 2,
    "db_client_timeout_seconds": DB_CLIENT_TIMEOUT_SECONDS,
    "readyz_timeout_seconds": READYZ_TIMEOUT_SECONDS,
}
FAIL_FAST_SECONDS = 6.0  # a request against a broken database is answered within this
# README, "Faults": the worst case of a request against a stopped or partitioned database, plus slack
# for a loaded test machine (a correctness bound: without one such requests hung until the link returned).
FROZEN_BOUND_SECONDS = POOL_TIMEOUT_SECONDS + DB_CLIENT_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SECONDS + 4.0
HTTP_TIMEOUT_SECONDS = FROZEN_BOUND_SECONDS + 3.0  # past this the server is hanging
RECOVERY_SECONDS = 5.0
LATENCY_SECONDS = 0.3
CONCURRENT_REQUESTS = 8


class TooSlow(Exception):
    """A request on a slow database took longer than its bound."""


class AnsweredWith500(Exception):
    """The database failure was answered like any unexpected error (500, no Retry-After)."""


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A migrated database of this module's own (the lock test must not disturb anyone else's)."""
    with support.fresh_postgres_database() as url:
        run_migrations(Settings(database_url=url))
        yield url


@pytest.fixture
def proxy(database_url: str) -> Iterator[support.TcpProxy]:
    with support.tcp_proxy(support.postgres_address(database_url)) as running:
        yield running


@dataclass
class Live:
    http: httpx.AsyncClient
    tenant: support.Tenant
    proxy: support.TcpProxy

    async def push(self, *, backend: bool = False, state: str = "s") -> tuple[httpx.Response, float]:
        """One push (RFC 9126 endpoint, or the backend API) and how long it took."""
        started = time.monotonic()
        if backend:
            response = await self.http.post(
                self.tenant.api_push_path, json=self.tenant.api_push_body(state), headers=self.tenant.bearer
            )
        else:
            response = await self.http.post(
                self.tenant.par_path, data=self.tenant.params(state), auth=self.tenant.basic
            )
        return response, time.monotonic() - started

    async def readyz(self) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = await self.http.get("/readyz")
        return response, time.monotonic() - started

    async def resolve(self, request_uri: str) -> httpx.Response:
        return await self.http.post(
            self.tenant.resolve_path, json=self.tenant.resolve_body(request_uri), headers=self.tenant.bearer
        )


@pytest.fixture
def setting_overrides() -> dict[str, object]:
    """Settings a test changes (parametrize ``setting_overrides`` to override this fixture)."""
    return {}


@pytest.fixture
async def live(database_url: str, proxy: support.TcpProxy, setting_overrides: dict[str, object]) -> AsyncIterator[Live]:
    """The app on a real socket, its database behind ``proxy``; a service and a client seeded."""
    port = support.free_port()
    base_url = f"http://127.0.0.1:{port}"
    values: dict[str, object] = {
        "public_base_url": base_url,
        "db_pool_size": POOL_SIZE,
        "db_pool_timeout_seconds": POOL_TIMEOUT_SECONDS,
        **TIMEOUTS,
        **support.NO_RATE_LIMITS,
        **setting_overrides,
    }
    settings = make_settings(support.with_port(database_url, proxy.port), **values)
    with support.serve_in_thread(create_app(settings), port):
        with httpx.Client(base_url=base_url, trust_env=False, timeout=10.0) as http:
            tenant = support.tenant_from_api(http, ADMIN_TOKEN)
        async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=HTTP_TIMEOUT_SECONDS) as http:
            yield Live(http, tenant, proxy)
        proxy.stop()  # releases any connection a test left hanging, so the server can shut down


def created_request_uri(response: httpx.Response, *, backend: bool = False) -> str:
    if backend:
        assert response.status_code == 200, response.text
        assert response.json()["action"] == "CREATED", response.text
        return str(response.json()["requestUri"])
    assert response.status_code == 201, response.text
    return str(response.json()["request_uri"])


def assert_push_failed(response: httpx.Response, *, backend: bool, statuses: tuple[int, ...] = (500, 503)) -> None:
    """A database failure at a push: RFC 6749 JSON at the RFC endpoint, a ResultError at the backend API."""
    if backend:
        support.assert_result_error(response, statuses)
    else:
        support.assert_rfc6749_server_error(response, statuses)


async def test_database_down_fails_fast_is_not_ready_and_recovers_without_restart(live: Live) -> None:
    before = created_request_uri((await live.push())[0])
    live.proxy.stop()  # PostgreSQL is gone: connections reset, new ones refused

    for backend in (False, True):
        response, took = await live.push(backend=backend)
        assert took < FAIL_FAST_SECONDS, f"push (backend={backend}) took {took:.1f} s"
        assert_push_failed(response, backend=backend)
    response = await live.resolve(before)
    support.assert_result_error(response)
    response, took = await live.readyz()
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable", response.text
    assert took < FAIL_FAST_SECONDS

    # Many at once: every one fails fast, none waits on a pool slot held by a broken connection.
    results = await asyncio.gather(*(live.push(backend=n % 2 == 1) for n in range(CONCURRENT_REQUESTS)))
    for n, (response, took) in enumerate(results):
        assert took < FAIL_FAST_SECONDS, f"push {n} took {took:.1f} s"
        assert_push_failed(response, backend=n % 2 == 1)

    live.proxy.start()  # PostgreSQL is back; the app is not restarted
    deadline = time.monotonic() + RECOVERY_SECONDS
    while (await live.readyz())[0].status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the database returned"
        await asyncio.sleep(0.1)
    results = await asyncio.gather(*(live.push(backend=n % 2 == 1) for n in range(CONCURRENT_REQUESTS)))
    request_uris = [created_request_uri(response, backend=n % 2 == 1) for n, (response, _) in enumerate(results)]
    for request_uri in [before, *request_uris]:
        response = await live.resolve(request_uri)
        assert response.status_code == 200 and response.json()["action"] == "OK", response.text


@pytest.mark.parametrize("backend", [False, True], ids=["rfc9126", "backend"])
async def test_database_down_answers_503_with_retry_after(live: Live, backend: bool) -> None:
    live.proxy.stop()
    response, _ = await live.push(backend=backend)
    if response.status_code == 500 and "retry-after" not in response.headers:
        raise AnsweredWith500(response.text)
    assert_push_failed(response, backend=backend, statuses=(503,))
    assert response.headers.get("retry-after", "").isdigit(), response.headers


async def test_unreachable_database_fails_fast(live: Live) -> None:
    created_request_uri((await live.push())[0])
    live.proxy.stop()  # the open connections die ...
    live.proxy.blackhole = True  # ... and new ones are accepted but never answered
    live.proxy.start()

    push, readiness = await asyncio.gather(live.push(), live.readyz())
    response, took = push
    assert took < FAIL_FAST_SECONDS, f"push took {took:.1f} s"
    assert_push_failed(response, backend=False)
    response, took = readiness
    assert response.status_code == 503 and took < FAIL_FAST_SECONDS, (response.text, took)


@asynccontextmanager
async def table_locked(database_url: str, table: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Another session holds an ACCESS EXCLUSIVE lock on ``table`` (as a long migration or a stuck
    transaction would): statements on it wait. Released on exit."""
    async with await psycopg.AsyncConnection.connect(databases.libpq_dsn(database_url), connect_timeout=5) as locker:
        await locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield locker
        finally:
            await locker.rollback()


async def wait_for_lock_waiters(locker: psycopg.AsyncConnection[Any], count: int) -> None:
    """Until ``count`` other sessions of this database wait on a lock (bounded)."""
    deadline = time.monotonic() + FAIL_FAST_SECONDS
    while True:
        async with locker.cursor() as cursor:  # the locker's transaction stays open: no commit here
            await cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the transaction sees one snapshot
            await cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            row = await cursor.fetchone()
        if row is not None and row[0] >= count:
            return
        assert time.monotonic() < deadline, f"{count} pushes never blocked on the lock"
        await asyncio.sleep(0.05)


# The statement timeout must not end the blocked pushes during this test (nor the client's bound).
@pytest.mark.parametrize("setting_overrides", [{"db_statement_timeout_seconds": 30, "db_client_timeout_seconds": 35}])
async def test_exhausted_pool_fails_fast(live: Live, database_url: str) -> None:
    """Both pool connections are held by pushes stuck in the database (each in a batch of the writer):
    further requests wait at most the pool timeout for a connection or a batch, then fail in the
    endpoint's error format."""
    created_request_uri((await live.push())[0])
    async with table_locked(database_url, "pushed_request") as locker:
        holders = []
        try:
            for n in range(POOL_SIZE):  # one at a time: each in a batch of its own (app.db.pushed_requests)
                holders.append(asyncio.ensure_future(live.push(backend=n % 2 == 1)))
                await wait_for_lock_waiters(locker, n + 1)
            results = await asyncio.gather(*(live.push(backend=n % 2 == 1) for n in range(CONCURRENT_REQUESTS)))
            for n, (response, took) in enumerate(results):
                assert_push_failed(response, backend=n % 2 == 1)
                assert took < POOL_TIMEOUT_SECONDS + 2.0, f"push {n} waited {took:.1f} s for a connection"
            response, took = await live.readyz()  # answers in bounded time, whichever way it judges
            assert response.status_code in (200, 503) and took < POOL_TIMEOUT_SECONDS + 2.0, (response.text, took)
        finally:
            released = time.monotonic()
            await locker.rollback()
            finished = await asyncio.gather(*holders, return_exceptions=True)
    assert time.monotonic() - released < FAIL_FAST_SECONDS
    for n, result in enumerate(finished):  # they ran on once the lock went
        assert not isinstance(result, BaseException), repr(result)
        created_request_uri(result[0], backend=n % 2 == 1)
    results = await asyncio.gather(*(live.push(backend=n % 2 == 1) for n in range(CONCURRENT_REQUESTS)))
    for n, (response, _) in enumerate(results):
        created_request_uri(response, backend=n % 2 == 1)


async def test_slow_database_answers_in_bounded_time(live: Live) -> None:
    """Every answer from PostgreSQL arrives ``LATENCY_SECONDS`` late (a distant or overloaded server).
    Pushes that get one of the 2 connections complete; the others give up after the pool wait; each
    answer comes within ``FAIL_FAST_SECONDS`` (20 database round trips) in the endpoint's format."""
    created_request_uri((await live.push())[0])
    live.proxy.latency = LATENCY_SECONDS
    results = await asyncio.gather(*(live.push(backend=n % 2 == 1) for n in range(CONCURRENT_REQUESTS)))
    created = []
    for n, (response, took) in enumerate(results):
        backend = n % 2 == 1
        if took >= FAIL_FAST_SECONDS:
            raise TooSlow(f"push {n} took {took:.1f} s on a database {LATENCY_SECONDS} s away")
        if response.status_code in (200, 201) and (not backend or response.json().get("action") == "CREATED"):
            created.append(created_request_uri(response, backend=backend))
        else:
            assert_push_failed(response, backend=backend)
    assert created, "no push completed on the slow database"
    response, took = await live.readyz()  # slow, but the database does answer
    assert response.status_code == 200 and took < FAIL_FAST_SECONDS, (response.text, took)

    live.proxy.latency = 0.0
    results = await asyncio.gather(*(live.push(backend=n % 2 == 1) for n in range(CONCURRENT_REQUESTS)))
    for n, (response, took) in enumerate(results):
        created_request_uri(response, backend=n % 2 == 1)
        assert took < 2.0  # the latency is gone: no request is slow any more
    for request_uri in created:
        response = await live.resolve(request_uri)
        assert response.status_code == 200 and response.json()["action"] == "OK", response.text


async def test_push_blocked_in_the_database_fails_fast(live: Live, database_url: str) -> None:
    """A database that accepts connections but does not finish the work: the push's INSERT waits on a
    lock held by another session."""
    created_request_uri((await live.push())[0])
    async with table_locked(database_url, "pushed_request"):
        response, took = await live.push()
    assert took < FAIL_FAST_SECONDS, f"push took {took:.1f} s"
    assert_push_failed(response, backend=False)


async def ready_again(live: Live) -> None:
    deadline = time.monotonic() + RECOVERY_SECONDS + FROZEN_BOUND_SECONDS
    while (await live.readyz())[0].status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the database returned"
        await asyncio.sleep(0.1)


async def test_frozen_database_answers_503_within_the_bound_and_recovers(live: Live) -> None:
    """A stopped (SIGSTOP) or partitioned PostgreSQL: connections stay open, nothing answers, and the
    server applies no statement timeout. Pushes at both front doors, resolves and /readyz end with a
    503 within the stated bound (README, "Faults"), and the service recovers once the link thaws."""
    before = created_request_uri((await live.push())[0])
    created_request_uri((await live.push(backend=True))[0], backend=True)  # pooled connections to freeze
    live.proxy.freeze()
    try:
        results = await asyncio.gather(
            *(live.push(backend=n % 2 == 1) for n in range(CONCURRENT_REQUESTS)), live.readyz()
        )
        readiness, took = results[-1]
        assert readiness.status_code == 503, readiness.text
        assert took < READYZ_TIMEOUT_SECONDS + 2.0, f"/readyz took {took:.1f} s"
        for n, (response, took) in enumerate(results[:-1]):
            assert_push_failed(response, backend=n % 2 == 1, statuses=(503,))
            assert response.headers.get("retry-after", "").isdigit(), response.headers
            assert took < FROZEN_BOUND_SECONDS, f"push {n} took {took:.1f} s"
        started = time.monotonic()
        support.assert_result_error(await live.resolve(before), statuses=(503,))
        assert time.monotonic() - started < FROZEN_BOUND_SECONDS
    finally:
        live.proxy.thaw()
    await ready_again(live)
    results = await asyncio.gather(*(live.push(backend=n % 2 == 1) for n in range(CONCURRENT_REQUESTS)))
    for n, (response, _) in enumerate(results):
        request_uri = created_request_uri(response, backend=n % 2 == 1)
        resolved = await live.resolve(request_uri)
        assert resolved.status_code == 200 and resolved.json()["action"] == "OK", resolved.text


async def test_database_frozen_under_a_push_in_flight(live: Live, database_url: str) -> None:
    """The database stops answering while a push's INSERT is in the server (waiting on a lock): its
    lock timeout fires there, but the answer never arrives. The push gets its 503 within the client's
    bound instead of hanging until the link returns, and its connection is not used again."""
    created_request_uri((await live.push())[0])
    async with table_locked(database_url, "pushed_request") as locker:
        in_flight = asyncio.ensure_future(live.push())
        await wait_for_lock_waiters(locker, 1)
        live.proxy.freeze()
        try:
            response, took = await in_flight
        finally:
            live.proxy.thaw()
    assert_push_failed(response, backend=False, statuses=(503,))
    assert took < FROZEN_BOUND_SECONDS, f"push took {took:.1f} s"
    await ready_again(live)
    for backend in (False, True):
        created_request_uri((await live.push(backend=backend))[0], backend=backend)


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.parametrize("cancelled", [False, True], ids=["client-timeout", "cancelled"])
async def test_frozen_connection_is_dropped_not_pooled(
    database_url: str, proxy: support.TcpProxy, cancelled: bool
) -> None:
    """At the engine: an exchange that gets no answer ends after the client timeout with a disconnect
    (OperationalError, answered 503); one cancelled by its caller (``asyncio.timeout``) ends at once
    rather than after psycopg's cancel request, which a stopped server never answers. Either way the
    connection is dropped: the next checkout is a new server session."""
    client_timeout = 30.0 if cancelled else 2.0  # the cancelled exchange must not end by the client timeout
    settings = make_settings(
        support.with_port(database_url, proxy.port),
        **{**TIMEOUTS, "db_statement_timeout_seconds": 1, "db_client_timeout_seconds": client_timeout},
        db_pool_size=1,
    )
    engine = create_engine_from_settings(settings)
    try:
        async with asyncio.timeout(FROZEN_BOUND_SECONDS + 20):  # the test fails rather than hangs
            frozen_pid = await backend_pid(engine)
            async with engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
                proxy.freeze()
                started = time.monotonic()
                try:
                    if cancelled:
                        with pytest.raises(TimeoutError):
                            async with asyncio.timeout(0.5):
                                await connection.exec_driver_sql("SELECT 1")
                    else:
                        with pytest.raises(OperationalError) as raised:
                            await connection.exec_driver_sql("SELECT 1")
                        assert raised.value.connection_invalidated
                    took = time.monotonic() - started
                finally:
                    proxy.thaw()
            assert took < (5.0 if cancelled else client_timeout + 3.0), f"the exchange took {took:.1f} s"
            assert await backend_pid(engine) != frozen_pid
    finally:
        await engine.dispose()
