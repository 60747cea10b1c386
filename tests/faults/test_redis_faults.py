"""Redis stopped or partitioned (``PAR_REDIS_URL``): pushes (a pipeline), resolves (a Lua script), the
rate limiter's shared counters and /readyz (a PING) all end within the stated bound with a 503, and the
service recovers once Redis answers again.

The app runs under uvicorn in this process on a SQLite database, with Redis reached through a TCP proxy
(``support.TcpProxy``) that the test freezes: connections stay open, nothing answers, as with a Redis
under SIGSTOP or behind a partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from app.main import create_app
from tests import databases
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.faults import support

pytestmark = [pytest.mark.faults]

REDIS_TIMEOUT_SECONDS = 0.5
READYZ_TIMEOUT_SECONDS = 2.0
RATE_LIMIT_SYNC_SECONDS = 0.2  # the limiter's copies of the shared counters are stale after two of these
# README, "Faults": a Redis that stopped answering costs a request at most a reconnect and a reply, each
# within the Redis timeout; plus slack for a loaded machine (a correctness bound, not a speed one: a
# client left at redis-py's defaults waits 5 s per attempt, and retries).
FROZEN_BOUND_SECONDS = 2 * REDIS_TIMEOUT_SECONDS + 2.5
HTTP_TIMEOUT_SECONDS = FROZEN_BOUND_SECONDS + 10.0
CONCURRENT_REQUESTS = 6
RECOVERY_SECONDS = 10.0


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[tuple[support.TcpProxy, str]]:
    parsed = urlparse(redis_url)
    with support.tcp_proxy((parsed.hostname or "127.0.0.1", parsed.port or 6379)) as proxy:
        yield proxy, parsed._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


@pytest.fixture
async def live(
    redis_proxy: tuple[support.TcpProxy, str], sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, support.Tenant, support.TcpProxy]]:
    proxy, proxied_url = redis_proxy
    port = support.free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        databases.fresh_sqlite(sqlite_template, tmp_path),
        public_base_url=base_url,
        redis_url=proxied_url,
        pushed_request_store="redis",
        redis_timeout_seconds=REDIS_TIMEOUT_SECONDS,
        readyz_timeout_seconds=READYZ_TIMEOUT_SECONDS,
        rate_limit_sync_seconds=RATE_LIMIT_SYNC_SECONDS,
    )
    with support.serve_in_thread(create_app(settings), port):
        with httpx.Client(base_url=base_url, trust_env=False, timeout=10.0) as http:
            tenant = support.tenant_from_api(http, ADMIN_TOKEN)
        async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=HTTP_TIMEOUT_SECONDS) as http:
            yield http, tenant, proxy
        proxy.thaw()
        proxy.stop()  # releases any connection left hanging, so the server can shut down


async def push(http: httpx.AsyncClient, tenant: support.Tenant, n: int) -> tuple[httpx.Response, float]:
    """A push at the RFC 9126 endpoint (even ``n``) or the backend API (odd), and how long it took. The
    rate limiter reads its shared counters on the way once its copies are two sync intervals old."""
    started = time.monotonic()
    if n % 2:
        response = await http.post(tenant.api_push_path, json=tenant.api_push_body(f"s{n}"), headers=tenant.bearer)
    else:
        response = await http.post(tenant.par_path, data=tenant.params(f"s{n}"), auth=tenant.basic)
    return response, time.monotonic() - started


def request_uri_of(response: httpx.Response, n: int) -> str:
    if n % 2:
        assert response.status_code == 200 and response.json()["action"] == "CREATED", response.text
        return str(response.json()["requestUri"])
    assert response.status_code == 201, response.text
    return str(response.json()["request_uri"])


async def test_frozen_redis_answers_503_within_the_bound_and_recovers(
    live: tuple[httpx.AsyncClient, support.Tenant, support.TcpProxy],
) -> None:
    http, tenant, proxy = live
    before = request_uri_of((await push(http, tenant, 0))[0], 0)
    proxy.freeze()
    try:
        await asyncio.sleep(3 * RATE_LIMIT_SYNC_SECONDS)  # the pushes below read the shared counters
        started = time.monotonic()
        readiness = await http.get("/readyz")
        took = time.monotonic() - started
        assert readiness.status_code == 503 and readiness.json()["redis"] != "ok", readiness.text
        assert took < READYZ_TIMEOUT_SECONDS + 2.0, f"/readyz took {took:.1f} s"

        results = await asyncio.gather(*(push(http, tenant, n) for n in range(CONCURRENT_REQUESTS)))
        for n, (response, took) in enumerate(results):
            if n % 2:
                support.assert_result_error(response, statuses=(503,))
            else:
                support.assert_rfc6749_server_error(response, statuses=(503,))
            assert response.headers.get("retry-after", "").isdigit(), response.headers
            assert took < FROZEN_BOUND_SECONDS, f"push {n} took {took:.1f} s"

        started = time.monotonic()
        resolved = await http.post(tenant.resolve_path, json=tenant.resolve_body(before), headers=tenant.bearer)
        support.assert_result_error(resolved, statuses=(503,))
        assert time.monotonic() - started < FROZEN_BOUND_SECONDS
    finally:
        proxy.thaw()

    deadline = time.monotonic() + RECOVERY_SECONDS
    while (await http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "not ready again after Redis returned"
        await asyncio.sleep(0.1)
    for n in range(CONCURRENT_REQUESTS):
        request_uri = request_uri_of((await push(http, tenant, n))[0], n)
        resolved = await http.post(tenant.resolve_path, json=tenant.resolve_body(request_uri), headers=tenant.bearer)
        assert resolved.status_code == 200 and resolved.json()["action"] == "OK", resolved.text
