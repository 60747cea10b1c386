"""What one push costs the database: connections checked out, transactions and statements.

Issue 6: on a slow database every round trip multiplies its latency, and every pool checkout may
wait the pool timeout again (tests/faults/test_database_faults.py measures the bound with a real
slow link). These counts are the budget behind that bound; they change only on purpose.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event

from tests.factories import ClientHandle, ServiceHandle, par_params


@contextmanager
def database_work(app: FastAPI) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    engine = app.state.par.engine.sync_engine

    def checkout(*_: Any) -> None:
        counts["checkouts"] += 1

    def begin(*_: Any) -> None:
        counts["transactions"] += 1

    def statement(*_: Any, **__: Any) -> None:
        counts["statements"] += 1

    listeners = [
        (engine.pool, "checkout", checkout),
        (engine, "begin", begin),
        (engine, "after_cursor_execute", statement),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counts
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


async def test_a_push_uses_one_connection_and_three_transactions(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Rate-limit counters, the stored request and the client's budget, on the request's one connection:
    the counters read together (one SELECT), each counter write in a short transaction of its own."""
    with database_work(app) as counts:
        response = await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    assert response.status_code == 201, response.text
    # admission: counters SELECT + address upsert; push: service, client, INSERT; then the client upsert
    assert counts == {"checkouts": 1, "transactions": 3, "statements": 6}


async def test_a_backend_push_uses_one_connection(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    parameters = httpx.QueryParams(par_params(basic_client))
    body = {"parameters": str(parameters), "clientId": str(basic_client.id), "clientSecret": basic_client.secret}
    with database_work(app) as counts:
        response = await client.post(f"/api/{service.id}/pushed_auth_req", json=body, headers=service.bearer)
    assert response.status_code == 200 and response.json()["action"] == "CREATED", response.text
    # the caller's token and service, the counters; the client and INSERT; the client upsert
    assert counts == {"checkouts": 1, "transactions": 3, "statements": 7}
