"""Pushed requests in the database (app/db/pushed_requests.py): the batched writer of their rows."""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.exc import StatementError

from app.core.errors import InvalidRequest
from app.db.models import PushedRequest
from app.db.pushed_requests import INSERT_PUSHED_REQUEST, READ_PUSHED_REQUEST, json_rows, pushed_request_record
from app.db.repositories import READ_CLIENT_BY_ID, client_record
from app.settings import Settings
from tests.conftest import make_settings
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
    statements = 0

    def statement(*_: Any) -> None:
        nonlocal statements
        statements += 1

    engine = app.state.par.engine.sync_engine
    event.listen(engine, "after_cursor_execute", statement)
    try:
        results = await asyncio.gather(*(app.state.par.writer.add(row(service.id, basic_client.id)) for _ in range(40)))
    finally:
        event.remove(engine, "after_cursor_execute", statement)
    assert results == [True] * 40
    assert await stored(app) == 40
    # all 40 queued before the writer ran: one INSERT (PostgreSQL: committed by itself; SQLite: one
    # executemany in one transaction)
    assert statements == 1


async def test_a_refused_row_fails_alone(app: FastAPI, service: ServiceHandle, basic_client: ClientHandle) -> None:
    """A row whose client no longer exists (a foreign key refuses it) fails its own push only."""
    rows = [row(service.id, basic_client.id) for _ in range(5)]
    rows[2]["client_id"] = 1  # no such client
    results = await asyncio.gather(*(app.state.par.writer.add(r) for r in rows))
    assert results == [True, True, False, True, True]
    assert await stored(app) == 4


# Values validation keeps out (app.core.json_input), injected straight into the row.
# The last item: whether SQLite refuses it too (the driver cannot encode a surrogate in text; JSON it
# stores as json.dumps writes it, with NaN and escaped surrogates).
UNSTORABLE = {
    "NUL in text": ("parameters", "state=a\x00b", False),
    "unpaired surrogate in text": ("parameters", "state=\ud800", True),
    "NaN in JSON": ("request", {"response_type": "code", "n": float("nan")}, False),
    "Infinity in JSON": ("request", {"response_type": "code", "n": [float("inf"), float("-inf")]}, False),
    "unpaired surrogate in JSON": ("request", {"state": "\ud800"}, False),
    "NUL in JSON": ("request", {"state": "a\x00b"}, False),
}


@pytest.mark.parametrize(("column", "value", "sqlite_refuses"), UNSTORABLE.values(), ids=UNSTORABLE)
async def test_a_row_the_database_cannot_hold_fails_alone(
    app: FastAPI, service: ServiceHandle, basic_client: ClientHandle, column: str, value: Any, sqlite_refuses: bool
) -> None:
    """PostgreSQL refuses the whole batch statement (DataError) for one row's value: that push alone gets
    a 400-type error, the batch's other pushes (which may be other services') are stored."""
    rows = [row(service.id, basic_client.id) for _ in range(5)]
    rows[2][column] = value
    results = await asyncio.gather(*(app.state.par.writer.add(r) for r in rows), return_exceptions=True)
    assert results[:2] + results[3:] == [True] * 4
    refused = sqlite_refuses or app.state.par.engine.dialect.name == "postgresql"
    assert isinstance(results[2], InvalidRequest) if refused else results[2] is True, results[2]
    assert await stored(app) == (4 if refused else 5)


async def test_rows_are_stored_exactly(app: FastAPI, service: ServiceHandle, basic_client: ClientHandle) -> None:
    """Whatever the dialect's way in (on PostgreSQL the batch travels as JSON): text, JSON values and
    times to the microsecond read back as they were written."""
    written = row(service.id, basic_client.id)
    written["parameters"] = "state=%C3%A9t%C3%A9+%F0%9F%98%80&x=\"\\'<>"
    written["request"] = {"state": 'été 😀 "quoted" \\ \u2028', "scopes": ["openid"], "n": 1, "none": None}
    written["created_at"] = datetime(2026, 11, 21, 18, 0, 0, 123456, tzinfo=UTC)
    written["expires_at"] = datetime(2026, 11, 21, 18, 1, 0, 0, tzinfo=UTC)
    assert await app.state.par.writer.add(written) is True
    async with app.state.par.sessions() as session:
        stored_row = await session.get(PushedRequest, written["reference_hash"])
    assert stored_row is not None
    assert {name: getattr(stored_row, name) for name in written} == written


# Rows whose values the PostgreSQL writer writes through orjson, and rows it sends the stdlib's way
# (app.db.pushed_requests.json_rows): each must be stored as SQLAlchemy's INSERT stores it.
INDIA = timezone(timedelta(hours=5, minutes=30))
EDGE_ROWS: dict[str, dict[str, Any]] = {
    "unicode, escapes and numbers (orjson)": {
        "request": {
            "state": 'été 😀 "q" \\ / \u2028\u2029 \x01\x1f\x7f \ufeff',
            "n": [0, -1, 2**63 - 1, -(2**63), 2.5, -0.0, 1e16, 1e-7, 0.1, 1.7976931348623157e308],
            "t": True,
            "f": False,
            "nested": {"": [], "a": {"b": [[{}]]}},
        },
        "parameters": "state=%C3%A9t%C3%A9&x=\"\\'<>&u=été😀",
    },
    "null (the stdlib)": {"request": {"state": "s", "n": [1, 2.5, None]}},
    "null inside a string (the stdlib)": {"request": {"nullable": "null"}},
    "an integer beyond 64 bits (the stdlib)": {"request": {"n": 2**70, "m": -(2**64)}},
    "no microseconds (orjson)": {"created_at": datetime(2026, 11, 21, 18, 0, 0, tzinfo=UTC)},
    "far future to the microsecond (orjson)": {
        "created_at": datetime(2300, 1, 1, 0, 0, 0, 999999, tzinfo=UTC),
        "expires_at": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    },
    "a time not in UTC (the stdlib)": {"created_at": datetime(2026, 11, 21, 23, 30, 0, 1, tzinfo=INDIA)},
}


@pytest.mark.parametrize("changes", EDGE_ROWS.values(), ids=EDGE_ROWS)
async def test_the_writer_stores_what_sqlalchemy_stores(
    app: FastAPI, service: ServiceHandle, basic_client: ClientHandle, changes: dict[str, Any]
) -> None:
    """Whatever way in the dialect's writer takes (one JSON document on PostgreSQL), the stored values are
    those of an INSERT through SQLAlchemy, as the driver reads them back."""
    through_writer = {**row(service.id, basic_client.id), **changes}
    through_sqlalchemy = {**through_writer, "reference_hash": os.urandom(32).hex()}
    assert await app.state.par.writer.add(through_writer) is True
    async with app.state.par.engine.begin() as connection:
        await connection.execute(INSERT_PUSHED_REQUEST, [through_sqlalchemy])
    columns = "parameters, request, state, created_at, expires_at, service_id, client_id"
    raw = {}
    async with app.state.par.engine.connect() as connection:
        for written in (through_writer, through_sqlalchemy):
            result = await connection.exec_driver_sql(
                f"SELECT {columns} FROM pushed_request WHERE reference_hash = '{written['reference_hash']}'"  # noqa: S608
            )
            raw[written["reference_hash"]] = result.one()
    assert raw[through_writer["reference_hash"]] == raw[through_sqlalchemy["reference_hash"]]


@pytest.mark.parametrize("changes", EDGE_ROWS.values(), ids=EDGE_ROWS)
def test_json_rows_holds_the_rows_values(changes: dict[str, Any]) -> None:
    """Whichever encoder writes the batch, its JSON holds each row's values, and its times as the UTC
    ``isoformat`` text the stdlib's way wrote (which PostgreSQL reads to the microsecond)."""
    rows = [{**row(1, 2), **changes}, row(3, 4)]
    expected = [
        {
            **written,
            "created_at": written["created_at"].astimezone(UTC).isoformat(),
            "expires_at": written["expires_at"].astimezone(UTC).isoformat(),
        }
        for written in rows
    ]
    assert json.loads(json_rows(rows)) == expected


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_json_rows_keeps_nan_for_postgresql_to_refuse(number: float) -> None:
    """orjson would write NaN and Infinity as null, which PostgreSQL stores: such a batch is written by
    json.dumps, whose NaN PostgreSQL refuses (test_a_row_the_database_cannot_hold_fails_alone)."""
    rows = [row(1, 2), {**row(1, 2), "request": {"n": [number]}}]
    text = json_rows(rows)
    assert "null" not in text
    assert json.loads(text)[1]["request"]["n"][0] == pytest.approx(number, nan_ok=True)


async def test_a_naive_time_is_refused(app: FastAPI, service: ServiceHandle, basic_client: ClientHandle) -> None:
    naive = row(service.id, basic_client.id)
    naive["created_at"] = naive["created_at"].replace(tzinfo=None)
    with pytest.raises((ValueError, StatementError), match="naive"):  # SQLAlchemy wraps it on SQLite
        await app.state.par.writer.add(naive)
    assert await stored(app) == 0


@contextmanager
def counted_checkouts(app: FastAPI) -> Iterator[dict[str, int]]:
    """The pool checkouts made inside the block, in ``["count"]``."""
    checkouts = {"count": 0}

    def checkout(*_: Any) -> None:
        checkouts["count"] += 1

    pool = app.state.par.engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    try:
        yield checkouts
    finally:
        event.remove(pool, "checkout", checkout)


class TestBursts:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, push_write_batch_max=2, push_write_concurrency=2)

    async def test_a_burst_holds_a_connection_per_writer_on_postgresql(
        self, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
    ) -> None:
        """20 batches of 2: on PostgreSQL each of the 2 writers checks out one connection for the whole
        burst (one liveness ping each); SQLite checks one out per batch, as its one connection is shared."""
        with counted_checkouts(app) as checkouts:
            rows = [row(service.id, basic_client.id) for _ in range(40)]
            results = await asyncio.gather(*(app.state.par.writer.add(r) for r in rows))
        assert results == [True] * 40
        assert await stored(app) == 40
        assert checkouts["count"] == (2 if app.state.par.engine.dialect.name == "postgresql" else 20)


class TestLinger:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, push_write_linger_seconds=0.5)

    async def test_a_writer_keeps_its_connection_for_pushes_that_follow(
        self, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
    ) -> None:
        """Pushes one after the other, each answered before the next arrives (as a client's next request
        follows its last answer): on PostgreSQL the writer waits ``linger`` for the next one with its
        connection, so five batches cost one checkout; SQLite checks one out per batch."""
        with counted_checkouts(app) as checkouts:
            for _ in range(5):
                assert await app.state.par.writer.add(row(service.id, basic_client.id)) is True
        assert checkouts["count"] == (1 if app.state.par.engine.dialect.name == "postgresql" else 5)
        assert await stored(app) == 5

    async def test_closing_does_not_wait_out_the_linger(
        self, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
    ) -> None:
        writer = app.state.par.writer
        writer._linger = 30.0  # a writer lingering far longer than any test: closing must cut it short
        assert await writer.add(row(service.id, basic_client.id)) is True
        await asyncio.wait_for(writer.aclose(), timeout=5)


@pytest.mark.postgresql
async def test_the_driver_reads_what_sqlalchemy_reads(
    app: FastAPI, service: ServiceHandle, basic_client: ClientHandle, database_url: str
) -> None:
    """On PostgreSQL resolve and consume read on the driver connection (app.db.engine.DriverStatements):
    the same records, times in UTC, as through SQLAlchemy."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the driver connection is PostgreSQL's")
    state = app.state.par
    pushed = row(service.id, basic_client.id)
    assert await state.writer.add(pushed)
    async with state.request_connection() as connection:
        store = state.pushed_request_store(connection)
        clients = state.client_directory(connection, cached=False)
        through_driver = await store.get(service.id, pushed["reference_hash"])
        client_through_driver = await clients.get_client(service.id, str(basic_client.id))
        sqlalchemy_connection = await connection.get()
        stored = (
            await sqlalchemy_connection.execute(
                READ_PUSHED_REQUEST, {"reference_hash": pushed["reference_hash"], "service_id": service.id}
            )
        ).one()
        named = {"service_id": service.id, "client": basic_client.id}
        client_row = (await sqlalchemy_connection.execute(READ_CLIENT_BY_ID, named)).one()
    assert through_driver == pushed_request_record(stored)
    assert through_driver is not None and through_driver.expires_at.tzinfo is UTC
    assert client_through_driver == client_record(client_row)
    async with state.request_connection() as connection:
        store = state.pushed_request_store(connection)
        now = datetime.now(UTC)
        consumed = await store.consume(service.id, pushed["reference_hash"], client_id=basic_client.id, now=now)
        assert consumed is not None and consumed.consumed_at == now and consumed.consumed_at.tzinfo is UTC
        assert await store.consume(service.id, pushed["reference_hash"], client_id=basic_client.id, now=now) is None
