"""A process killed with SIGKILL under load loses nothing it acknowledged: every request_uri it answered
with 201 still resolves afterwards.

A real ``par-server serve`` process on a fresh PostgreSQL database (migrated and seeded with the CLI, as
an operator would) takes pushes from 16 concurrent clients at both front doors; it is SIGKILLed in the
middle of the load, a fresh process is started on the same database, and every request_uri that was
acknowledged (RFC 9126 ``201``, backend ``action: CREATED``) must resolve.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.faults import support

pytestmark = [pytest.mark.faults, pytest.mark.postgresql]

WORKERS = 16
LOAD_BEFORE_KILL_SECONDS = 2.5  # the whole load phase stays under ~5 s
AFTER_KILL_LIMIT_SECONDS = 2.5
REQUEST_TIMEOUT_SECONDS = 5.0
RESOLVE_LIMIT_SECONDS = 30.0


@dataclass
class Load:
    acknowledged: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # non-success answers while the server was up
    transport_errors_before_kill: int = 0
    transport_errors_after_kill: int = 0
    in_flight: int = 0
    in_flight_at_kill: int = 0
    killed: asyncio.Event = field(default_factory=asyncio.Event)


def acknowledged_request_uri(response: httpx.Response, *, backend: bool) -> str | None:
    """The request_uri the server acknowledged with this answer, or None when it acknowledged nothing."""
    if backend:
        if response.status_code != 200 or response.json().get("action") != "CREATED":
            return None
        request_uri = response.json()["requestUri"]
    else:
        if response.status_code != 201:
            return None
        request_uri = response.json()["request_uri"]
    assert isinstance(request_uri, str) and request_uri.startswith(support.REQUEST_URI_PREFIX), response.text
    return request_uri


async def push_until_killed(server: support.ServerProcess, tenant: support.Tenant) -> Load:
    load = Load()

    async def worker(http: httpx.AsyncClient, number: int) -> None:
        backend = number % 2 == 1  # half the workers use each front door
        sequence = 0
        while not load.killed.is_set():
            sequence += 1
            state = f"w{number}-{sequence}"
            load.in_flight += 1
            try:
                if backend:
                    response = await http.post(
                        tenant.api_push_path, json=tenant.api_push_body(state), headers=tenant.bearer
                    )
                else:
                    response = await http.post(tenant.par_path, data=tenant.params(state), auth=tenant.basic)
            except httpx.TransportError:
                if load.killed.is_set():
                    load.transport_errors_after_kill += 1
                else:
                    load.transport_errors_before_kill += 1
                continue
            finally:
                load.in_flight -= 1
            request_uri = acknowledged_request_uri(response, backend=backend)
            if request_uri is None:
                load.unexpected.append(f"{response.status_code} {response.text[:200]}")
            else:
                load.acknowledged.append(request_uri)

    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    async with httpx.AsyncClient(
        base_url=server.base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS, trust_env=False
    ) as http:
        workers = [asyncio.create_task(worker(http, number)) for number in range(WORKERS)]
        try:
            await asyncio.sleep(LOAD_BEFORE_KILL_SECONDS)
            load.in_flight_at_kill = load.in_flight
            os.killpg(server.process.pid, signal.SIGKILL)
            load.killed.set()
            await asyncio.wait_for(asyncio.gather(*workers), timeout=AFTER_KILL_LIMIT_SECONDS)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    return load


async def unresolvable(server: support.ServerProcess, tenant: support.Tenant, request_uris: list[str]) -> list[str]:
    """The request_uris that do not resolve with action OK (with what the server said instead)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for request_uri in request_uris:
        queue.put_nowait(request_uri)
    failures: list[str] = []

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            request_uri = queue.get_nowait()
            response = await http.post(
                tenant.resolve_path, json=tenant.resolve_body(request_uri), headers=tenant.bearer
            )
            if response.status_code != 200 or response.json().get("action") != "OK":
                failures.append(f"{request_uri}: {response.status_code} {response.text[:300]}")

    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    async with httpx.AsyncClient(
        base_url=server.base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS, trust_env=False
    ) as http:
        await asyncio.wait_for(asyncio.gather(*(worker(http) for _ in range(WORKERS))), timeout=RESOLVE_LIMIT_SECONDS)
    return failures


def test_sigkill_under_load_loses_no_acknowledged_request(tmp_path: Path) -> None:
    with support.fresh_postgres_database() as database_url:
        deployment = support.Deployment(database_url, tmp_path)
        deployment.cli("migrate")
        tenant = support.tenant_from_cli(deployment)

        with deployment.server("killed") as first:
            started = time.monotonic()
            load = asyncio.run(push_until_killed(first, tenant))
            first.process.wait(timeout=10)
            assert first.process.returncode == -signal.SIGKILL, first.log()
            assert time.monotonic() - started < LOAD_BEFORE_KILL_SECONDS + AFTER_KILL_LIMIT_SECONDS + 1
        assert load.in_flight_at_kill > 0, "the process was not killed under load"
        assert not load.unexpected, f"non-success answers under load: {load.unexpected[:5]}"
        assert load.transport_errors_before_kill == 0
        assert len(load.acknowledged) >= WORKERS, f"too little load to mean anything: {len(load.acknowledged)}"
        assert len(set(load.acknowledged)) == len(load.acknowledged), "a request_uri was handed out twice"

        stored = support.count_pushed_requests(database_url)
        # Requests in flight at the kill may or may not have committed; acknowledged ones must have.
        assert len(load.acknowledged) <= stored <= len(load.acknowledged) + load.in_flight_at_kill

        with deployment.server("restarted") as second:
            failures = asyncio.run(unresolvable(second, tenant, load.acknowledged))
        assert not failures, f"{len(failures)} of {len(load.acknowledged)} acknowledged requests lost: {failures[:5]}"
