"""The application lifespan: the expired-request purger runs in the background, and a stop lets a round in
progress finish."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import func, select

from app.core.model import PushedRequestRecord
from app.db.models import PushedRequest
from app.main import create_app, tracing_requested
from app.settings import Settings
from tests import databases
from tests.conftest import make_settings
from tests.factories import ClientHandle, ServiceHandle


async def test_lifespan_purges_expired_requests(
    settings: Settings, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Expired rows are purged periodically without a request having to trigger it."""
    app = create_app(make_settings(settings.database_url, purge_interval_seconds=0.05))
    state = app.state.par
    async with state.request_connection() as connection:
        await state.pushed_request_store(connection).add(
            PushedRequestRecord(
                reference_hash="e" * 64,
                service_id=service.id,
                client_id=basic_client.id,
                parameters="",
                request={},
                created_at=datetime.now(UTC) - timedelta(minutes=2),
                expires_at=datetime.now(UTC) - timedelta(minutes=1),
            )
        )
    async with app.router.lifespan_context(app):
        for _ in range(100):
            async with state.sessions() as session:
                remaining = await session.scalar(select(func.count()).select_from(PushedRequest))
            if remaining == 0:
                break
            await asyncio.sleep(0.05)
    assert remaining == 0


@contextlib.contextmanager
def pushed_requests_locked(database_url: str) -> Iterator[None]:
    """Another connection keeps every statement on the pushed requests waiting (SQLite: the whole file)."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # in WAL mode: readers are kept out too
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM pushed_request WHERE 0")
        try:
            yield
        finally:
            holder.close()
    else:
        with psycopg.connect(databases.libpq_dsn(database_url)) as connection:
            connection.execute("LOCK TABLE pushed_request IN ACCESS EXCLUSIVE MODE")
            yield
            connection.rollback()


async def test_a_stop_lets_a_purge_in_progress_finish(database_url: str) -> None:
    """A purge round holds a database connection; cancelling it there can hang SQLite's connection (and
    with it the shutdown) for good. The stop waits for the round instead, and the database's own
    timeouts bound that wait."""
    app = create_app(make_settings(database_url, purge_interval_seconds=0.05))
    state = app.state.par
    lifespan = app.router.lifespan_context(app)
    with pushed_requests_locked(database_url):
        await lifespan.__aenter__()
        for _ in range(100):  # until a round waits on the lock
            if state.engine.pool.checkedout():
                break
            await asyncio.sleep(0.02)
        assert state.engine.pool.checkedout() == 1
        stopping = asyncio.create_task(lifespan.__aexit__(None, None, None))
        await asyncio.sleep(0.3)
        assert not stopping.done()  # the round is not cancelled
        released = time.monotonic()
    await asyncio.wait_for(stopping, 10)
    assert time.monotonic() - released < 2.0
    assert state.engine.pool.checkedout() == 0


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),  # the specification's default exporter (otlp) alone does not turn it on
        ({"OTEL_SERVICE_NAME": "par", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": " None "}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_tracing_is_on_only_when_the_otel_variables_ask_for_it(environ: dict[str, str], on: bool) -> None:
    assert tracing_requested(environ) is on
