"""The batched writer of pushed requests (app/db/writer.py, issue 7)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event, func, select

from app.db.models import PushedRequest
from tests.factories import ClientHandle, ServiceHandle


def row(service_id: int, client_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "reference_hash": os.urandom(32).hex(),
        "service_id": service_id,
        "client_id": client_id,
        "parameters": "response_type=code",
        "request": {"response_type": "code"},
        "state": "pushed",
        "created_at": now,
        "expires_at": now + timedelta(minutes=1),
    }


async def stored(app: FastAPI) -> int:
    async with app.state.par.sessions() as session:
        return await session.scalar(select(func.count()).select_from(PushedRequest)) or 0


async def test_concurrent_pushes_share_transactions(
    app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    transactions = 0

    def begin(*_: Any) -> None:
        nonlocal transactions
        transactions += 1

    engine = app.state.par.engine.sync_engine
    event.listen(engine, "begin", begin)
    try:
        results = await asyncio.gather(*(app.state.par.writer.add(row(service.id, basic_client.id)) for _ in range(40)))
    finally:
        event.remove(engine, "begin", begin)
    assert results == [True] * 40
    assert await stored(app) == 40
    assert transactions == 1  # all 40 queued before the writer ran: one INSERT transaction, one commit


async def test_a_refused_row_fails_alone(app: FastAPI, service: ServiceHandle, basic_client: ClientHandle) -> None:
    """A row whose client no longer exists (a foreign key refuses it) fails its own push only."""
    rows = [row(service.id, basic_client.id) for _ in range(5)]
    rows[2]["client_id"] = 1  # no such client
    results = await asyncio.gather(*(app.state.par.writer.add(r) for r in rows))
    assert results == [True, True, False, True, True]
    assert await stored(app) == 4
