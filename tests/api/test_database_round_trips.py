"""What one push costs the database: connections checked out, transactions and statements (each
round trip costs the worker CPU as well as time; bench/RESULTS.md).

On a slow database every round trip multiplies its latency, and every pool checkout may
wait the pool timeout again (tests/faults/test_database_faults.py measures the bound with a real
slow link). These counts are the budget behind that bound; they change only on purpose.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from app.settings import Settings
from tests.conftest import make_settings
from tests.factories import ClientHandle, ServiceHandle, par_params


@pytest.fixture
def settings(database_url: str) -> Settings:
    """No linger: a writer gives its connection back as soon as its batch is written, so each push's
    budget is counted whole (tests/db/test_pushed_requests.py tests the linger)."""
    return make_settings(database_url, push_write_linger_seconds=0)


@contextmanager
def database_work(app: FastAPI) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    engine = app.state.par.engine.sync_engine

    def checkout(*_: Any) -> None:
        counts["checkouts"] += 1

    def begin(*_: Any) -> None:
        # SQLAlchemy reports a begin on an autocommit connection too; the driver then sends no BEGIN.
        counts["transactions"] += 1

    def commit(*_: Any) -> None:
        counts["commits"] += 1

    def statement(*_: Any, **__: Any) -> None:
        counts["statements"] += 1

    listeners = [
        (engine.pool, "checkout", checkout),
        (engine, "begin", begin),
        (engine, "commit", commit),
        (engine, "after_cursor_execute", statement),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counts
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def batch_transaction(app: FastAPI) -> dict[str, int]:
    """A batch's transaction: none on PostgreSQL, where the batch is one statement in autocommit that
    commits by itself, sent on the driver's connection (app.db.pushed_requests); one, and its COMMIT,
    elsewhere."""
    return {} if app.state.par.engine.dialect.name == "postgresql" else {"transactions": 1, "commits": 1}


def batch_insert(app: FastAPI) -> dict[str, int]:
    """What writing one batch costs."""
    return {"checkouts": 1, "statements": 1, **batch_transaction(app)}


async def counted_push(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> Counter[str]:
    """One push at the RFC 9126 endpoint, which must succeed, and what it cost the database."""
    with database_work(app) as counts:
        response = await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    assert response.status_code == 201, response.text
    return counts


async def test_a_push_is_one_insert(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Once the service and client are cached (app.db.cache, PAR_RECORD_CACHE_SECONDS), a push is its
    row in a batched INSERT (app.db.pushed_requests; alone here, so a batch of one) and checks out no
    connection of its own. Rate-limit counters cost it nothing: they are counted in the process and
    synchronised in the background (app.db.rate_limit_counters.SyncedCounters)."""
    await counted_push(app, client, service, basic_client)
    counts = await counted_push(app, client, service, basic_client)
    assert counts == batch_insert(app)


async def test_a_new_caller_costs_one_counter_read_first(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Counters this replica has not seen are read together (one SELECT) before the push takes its
    connection, so a request never waits for a second connection while holding one; then the service
    and the client on the request's connection, given back before the writer's INSERT."""
    counts = await counted_push(app, client, service, basic_client)
    assert counts == Counter({"checkouts": 2, "transactions": 2, "statements": 3}) + Counter(batch_insert(app))


async def test_a_backend_push_is_one_insert_too(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    parameters = httpx.QueryParams(par_params(basic_client))
    body = {"parameters": str(parameters), "clientId": str(basic_client.id), "clientSecret": basic_client.secret}
    url = f"/api/{service.id}/pushed_auth_req"
    assert (await client.post(url, json=body, headers=service.bearer)).json()["action"] == "CREATED"
    with database_work(app) as counts:
        response = await client.post(url, json=body, headers=service.bearer)
    assert response.status_code == 200 and response.json()["action"] == "CREATED", response.text
    # the caller's token and its service are cached too (app.api.backend_call, AppState.find_token_service)
    assert counts == batch_insert(app)


async def test_resolve_and_consume_read_and_write_the_request_only(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Token and service cached; the client read fresh (PAR-33); each write one conditional statement."""
    pushed = await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    request_uri = pushed.json()["request_uri"]
    resolve_body = {"parameters": str(httpx.QueryParams(client_id=basic_client.id, request_uri=request_uri))}
    base = f"/api/{service.id}/pushed_auth_req"
    app.state.par.tokens.clear()  # as on a replica that has not seen the token (registering the client cached it)
    with database_work(app) as resolving:
        resolved = await client.post(f"{base}/resolve", json=resolve_body, headers=service.bearer)
    assert resolved.json()["action"] == "OK", resolved.text
    # the token's service, the request, the client, the first-resolve UPDATE; autocommit: no COMMIT
    assert resolving == {"checkouts": 1, "transactions": 1, "statements": 4}
    consume_body = {"clientId": str(basic_client.id), "requestUri": request_uri}
    with database_work(app) as consuming:
        consumed = await client.post(f"{base}/consume", json=consume_body, headers=service.bearer)
    assert consumed.json()["action"] == "OK", consumed.text
    # the client, then UPDATE ... RETURNING (one winner among concurrent consumes); on PostgreSQL both on
    # the driver connection (app.db.engine.DriverStatements), with no transaction through SQLAlchemy
    through_sqlalchemy = {} if app.state.par.engine.dialect.name == "postgresql" else {"transactions": 1}
    assert consuming == {"checkouts": 1, "statements": 2, **through_sqlalchemy}
