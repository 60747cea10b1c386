"""Repositories on both databases: UTC round trips, expiry purge in batches, cascades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.model import PushedRequestRecord
from app.db.models import Client, PushedRequest
from app.main import purge_expired
from tests.factories import ClientHandle, ServiceHandle


async def add_requests(
    app: FastAPI, service: ServiceHandle, client: ClientHandle, *, count: int, expires_at: datetime
) -> None:
    async with app.state.par.request_connection() as connection:
        store = app.state.par.push_store(connection)
        for index in range(count):
            await store.add_pushed_request(
                PushedRequestRecord(
                    reference_hash=f"{expires_at.timestamp()}-{index}".ljust(64, "0")[:64],
                    service_id=service.id,
                    client_id=client.id,
                    parameters="",
                    request={},
                    created_at=expires_at - timedelta(seconds=60),
                    expires_at=expires_at,
                )
            )


async def count(app: FastAPI, model: type[PushedRequest] | type[Client]) -> int:
    async with app.state.par.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_datetimes_come_back_aware_utc(app: FastAPI, service: ServiceHandle, basic_client: ClientHandle) -> None:
    """Timestamps are UTC on both databases (SQLite drops the zone unless converted)."""
    moment = datetime(2030, 1, 2, 12, 0, 0, tzinfo=timezone(timedelta(hours=5)))
    await add_requests(app, service, basic_client, count=1, expires_at=moment)
    async with app.state.par.sessions() as session:
        row = (await session.scalars(select(PushedRequest))).one()
    assert row.expires_at == moment and row.expires_at.tzinfo is not None
    assert row.expires_at.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_refused(app: FastAPI, service: ServiceHandle, basic_client: ClientHandle) -> None:
    with pytest.raises(Exception, match="naive"):
        await add_requests(app, service, basic_client, count=1, expires_at=datetime(2030, 1, 1))  # noqa: DTZ001


async def test_purge_removes_only_expired_rows_in_batches(
    app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Expired rows are purged; live ones stay."""
    now = datetime.now(UTC)
    await add_requests(app, service, basic_client, count=7, expires_at=now - timedelta(seconds=1))
    await add_requests(app, service, basic_client, count=3, expires_at=now + timedelta(minutes=5))
    state = app.state.par
    state.settings.purge_batch_size = 3
    assert await purge_expired(state) == 7
    assert await count(app, PushedRequest) == 3
    assert await purge_expired(state) == 0


async def test_deleting_a_client_removes_its_pushed_requests(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    await add_requests(app, service, basic_client, count=2, expires_at=datetime.now(UTC) + timedelta(minutes=1))
    response = await client.delete(f"/api/{service.id}/client/delete/{basic_client.id}", headers=service.bearer)
    assert response.status_code == 204
    assert await count(app, PushedRequest) == 0
