"""Pushed requests in the database: ``SqlPushedRequestStore``, the ``app.core.ports.PushedRequestStore``
of one request, and the batched writer its pushes share.

Resolve and consume run one Core statement each on the request's own connection (autocommit): each
write is one conditional statement, atomic on its own. On PostgreSQL these statements, and the writer's
INSERT, are sent on the psycopg connection under the pooled one (``app.db.engine.DriverStatements``):
through SQLAlchemy's adapter each cost this process about three times the CPU (bench/RESULTS.md).
A push's row goes through the writer (``app.db.batch_writer``): concurrent pushes share one INSERT and
its commit, and each push is answered only once the batch holding its row has committed.

A row the database refuses (its client or service deleted meanwhile: a foreign key; or a value it cannot
hold) fails the batch's transaction; the batch is then written row by row, so only that row's push
fails (``ROW_REFUSED``), and a push of one service never fails another's. A batch waits for a
connection at most the pool timeout, and its statements are bounded by the statement timeout.

On PostgreSQL a batch is one statement: its rows travel as one JSON parameter (``json_to_recordset``)
on a connection in autocommit, so writing it is a single round trip, committed by itself, durable as
any commit (``synchronous_commit``). A writer holds its connection while batches keep coming, and
returns it to the pool once no push has arrived for ``linger`` (``PAR_PUSH_WRITE_LINGER_SECONDS``),
so the pool's liveness ping is paid once per burst, not per batch. BEGIN, the pipelined per-row INSERT
and COMMIT on a freshly checked-out connection cost the server over three times the CPU of the single
statement on a held connection (bench/RESULTS.md, "What bounds it").
SQLite keeps a transaction per batch on a connection checked out for it: its pool is one
connection, which a held writer would keep from every reader.
"""

from __future__ import annotations

import contextlib
import json
from abc import abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import orjson
from sqlalchemy import CursorResult, Executable, Table, bindparam, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import json_input
from app.core.errors import InvalidRequest
from app.core.model import PushedRequestRecord
from app.db.batch_writer import BatchWriter, Held, Waiting
from app.db.engine import DriverStatements, RequestConnection, autocommit, driver_statement
from app.db.models import PushedRequest

Row = dict[str, Any]
# What the database refuses for one row's sake, never the batch's: a foreign key (IntegrityError), or a
# value it cannot hold (DataError: NUL in text, malformed JSON; UnicodeEncodeError: an unpaired
# surrogate the driver cannot encode). Validation keeps such values out; this keeps any that slip
# through from failing the other pushes of the batch, which may be other services'.
ROW_REFUSED = (IntegrityError, DataError, UnicodeEncodeError)
# One statement object: its compiled form is reused for every batch.
INSERT_PUSHED_REQUEST = insert(PushedRequest)


# PostgreSQL: a whole batch in one statement, its rows one JSON array (this module's docstring).
POSTGRESQL_INSERT_PUSHED_REQUESTS = """
INSERT INTO pushed_request
    (reference_hash, service_id, client_id, parameters, request, state, created_at, expires_at)
SELECT reference_hash, service_id, client_id, parameters, request, state, created_at, expires_at
FROM json_to_recordset(%s::json) AS batch(
    reference_hash varchar(64), service_id bigint, client_id bigint, parameters text, request json,
    state varchar(20), created_at timestamptz, expires_at timestamptz
)
"""

# The statements of resolve and consume, built once: building a statement and computing its cache key
# cost a resolve more CPU than running it (bench/RESULTS.md). In an UPDATE a parameter may not be named
# like a column (SQLAlchemy would take it for a SET value): match_*.
_pushed = cast(Table, PushedRequest.__table__)
READ_PUSHED_REQUEST = select(*_pushed.c).where(
    _pushed.c.reference_hash == bindparam("reference_hash"), _pushed.c.service_id == bindparam("service_id")
)
MARK_RESOLVED = (
    update(_pushed)
    .where(
        _pushed.c.reference_hash == bindparam("match_reference_hash"),
        _pushed.c.service_id == bindparam("match_service_id"),
        _pushed.c.resolved_at.is_(None),
        _pushed.c.consumed_at.is_(None),
        _pushed.c.expires_at > bindparam("now"),
    )
    .values(state="resolved", resolved_at=bindparam("now"), expires_at=bindparam("new_expires_at"))
)
CONSUME = (
    update(_pushed)
    .where(
        _pushed.c.reference_hash == bindparam("match_reference_hash"),
        _pushed.c.service_id == bindparam("match_service_id"),
        _pushed.c.client_id == bindparam("match_client_id"),
        _pushed.c.consumed_at.is_(None),
        _pushed.c.expires_at > bindparam("now"),
    )
    .values(state="consumed", consumed_at=bindparam("now"), expires_at=bindparam("now"))
    .returning(*_pushed.c)
)
# The same statements for PostgreSQL's driver connection (``app.db.engine.DriverStatements``): each cost
# a resolve or consume three times the CPU through SQLAlchemy's AsyncConnection (bench/RESULTS.md).
DRIVER_READ_PUSHED_REQUEST = driver_statement(READ_PUSHED_REQUEST)
DRIVER_MARK_RESOLVED = driver_statement(MARK_RESOLVED)
DRIVER_CONSUME = driver_statement(CONSUME)


class PushedRow(NamedTuple):
    """A row of ``pushed_request`` as the driver reads it, its columns in the table's order."""

    reference_hash: str
    service_id: int
    client_id: int
    parameters: str
    request: dict[str, Any]
    state: str
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    consumed_at: datetime | None


class SqlPushedRequestStore:
    """``app.core.ports.PushedRequestStore`` of one request: added through the process's batched writer,
    read and changed on the request's connection (this module's docstring)."""

    __slots__ = ("_connection", "_writer")

    def __init__(self, connection: RequestConnection, writer: PushedRequestWriter[Any]) -> None:
        self._connection = connection
        self._writer = writer

    async def add(self, record: PushedRequestRecord) -> bool:
        """False when its client or service no longer exists: the foreign keys refuse it, so a client
        deleted through another replica cannot push even while this replica's cache (``app.db.cache``)
        still holds it. The request's connection is given back first: it is not held while the row
        waits for its batch."""
        await self._connection.release()
        return await self._writer.add(
            {
                "reference_hash": record.reference_hash,
                "service_id": record.service_id,
                "client_id": record.client_id,
                "parameters": record.parameters,
                "request": record.request,
                "state": "pushed",
                "created_at": record.created_at,
                "expires_at": record.expires_at,
            }
        )

    async def get(self, service_id: int, reference_hash: str) -> PushedRequestRecord | None:
        parameters = {"reference_hash": reference_hash, "service_id": service_id}
        driver = await self._connection.driver()
        if driver is not None:
            return driver_record(await driver.first(DRIVER_READ_PUSHED_REQUEST, parameters))
        row = (await self._execute(READ_PUSHED_REQUEST, parameters)).first()
        return pushed_request_record(cast(PushedRequest, row)) if row is not None else None

    async def mark_resolved(self, service_id: int, reference_hash: str, *, now: datetime, expires_at: datetime) -> None:
        parameters = {
            "match_reference_hash": reference_hash,
            "match_service_id": service_id,
            "now": now,
            "new_expires_at": expires_at,
        }
        driver = await self._connection.driver()
        if driver is not None:
            await driver.run(DRIVER_MARK_RESOLVED, parameters)
        else:
            await self._execute(MARK_RESOLVED, parameters)

    async def consume(
        self, service_id: int, reference_hash: str, *, client_id: int, now: datetime
    ) -> PushedRequestRecord | None:
        """One statement: among any number of concurrent callers, on any number of replicas, exactly one
        gets the row back. The client binding is part of the condition, so a wrong client changes
        nothing. Setting ``expires_at`` to now hands the row to the purger."""
        parameters = {
            "match_reference_hash": reference_hash,
            "match_service_id": service_id,
            "match_client_id": client_id,
            "now": now,
        }
        driver = await self._connection.driver()
        if driver is not None:
            return driver_record(await driver.first(DRIVER_CONSUME, parameters))
        row = (await self._execute(CONSUME, parameters)).first()
        return pushed_request_record(cast(PushedRequest, row)) if row is not None else None

    async def _execute(self, statement: Executable, parameters: dict[str, Any]) -> CursorResult[Any]:
        return await (await self._connection.get()).execute(statement, parameters)


def driver_record(row: tuple[Any, ...] | None) -> PushedRequestRecord | None:
    """``pushed_request_record`` of a row read on the driver connection, its times in UTC as the column's
    type gives them (``UTCDateTime``)."""
    if row is None:
        return None
    values = PushedRow._make(row)
    utc = values._replace(
        created_at=values.created_at.astimezone(UTC),
        expires_at=values.expires_at.astimezone(UTC),
        resolved_at=values.resolved_at.astimezone(UTC) if values.resolved_at is not None else None,
        consumed_at=values.consumed_at.astimezone(UTC) if values.consumed_at is not None else None,
    )
    return pushed_request_record(cast(PushedRequest, utc))


def pushed_request_record(row: PushedRequest) -> PushedRequestRecord | None:
    """The stored request, or None when it holds what could not be answered with (``NaN``, an unpaired
    surrogate: stored on SQLite before pushes were checked with ``app.core.json_input``). Such a request
    is as unusable as an unknown one, and answered the same way, never with a 500."""
    try:
        json_input.check(row.request)
    except json_input.JsonInputError:
        return None
    return PushedRequestRecord(
        reference_hash=row.reference_hash,
        service_id=row.service_id,
        client_id=row.client_id,
        parameters=row.parameters,
        request=row.request,
        created_at=row.created_at,
        expires_at=row.expires_at,
        resolved_at=row.resolved_at,
        consumed_at=row.consumed_at,
    )


class PushedRequestWriter(BatchWriter[Row, Held]):
    """Pushed-request rows in shared INSERT transactions (this module's docstring). ``add`` answers
    False when the database refuses the row (its client or service is gone), and fails with
    ``InvalidRequest`` when it refuses a value of the row; other database errors propagate to every
    request of the failed batch. :func:`pushed_request_writer` picks the dialect's."""

    def __init__(
        self, engine: AsyncEngine, *, max_batch: int, concurrency: int, queue_timeout: float, linger: float = 0.0
    ) -> None:
        super().__init__(max_batch=max_batch, concurrency=concurrency, queue_timeout=queue_timeout, linger=linger)
        self._engine = engine

    async def _write(self, batch: Sequence[Waiting[Row]], held: Held) -> None:
        try:
            await self._insert([waiting.item for waiting in batch], held)
        except ROW_REFUSED as error:
            if len(batch) == 1:
                if isinstance(error, IntegrityError):
                    batch[0].answer(False)
                else:
                    batch[0].fail(InvalidRequest("the pushed request holds a value that cannot be stored"))
                return
            for waiting in batch:  # find the refused row(s): each on its own
                await self._write([waiting], held)
            return
        for waiting in batch:
            waiting.answer(True)

    @abstractmethod
    async def _insert(self, rows: list[Row], held: Held) -> None:
        """Insert the rows atomically: all of them are committed, or none and the error propagates."""


class TransactionPushedRequestWriter(PushedRequestWriter[None]):
    """Any dialect (SQLite): each batch one transaction on a connection checked out for it."""

    def _holding(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def _insert(self, rows: list[Row], held: None) -> None:  # noqa: ARG002 - holds nothing
        async with self._engine.begin() as connection:
            await connection.execute(INSERT_PUSHED_REQUEST, rows)


class PostgresPushedRequestWriter(PushedRequestWriter[DriverStatements]):
    """PostgreSQL: each batch one statement on a held autocommit connection (this module's docstring),
    sent on its psycopg connection (``app.db.engine.DriverStatements``)."""

    def __init__(self, engine: AsyncEngine, **options: Any) -> None:
        super().__init__(engine, **options)
        self._autocommit_engine = autocommit(engine)

    @asynccontextmanager
    async def _holding(self) -> AsyncIterator[DriverStatements]:
        async with self._autocommit_engine.connect() as connection:
            yield await DriverStatements.of(connection)

    async def _insert(self, rows: list[Row], held: DriverStatements) -> None:
        await held.execute(POSTGRESQL_INSERT_PUSHED_REQUESTS, (json_rows(rows),))


def json_rows(rows: list[Row]) -> str:
    """The rows as the JSON array ``json_to_recordset`` reads, times in ISO 8601 with their offset, in UTC
    as the column's type binds them (``UTCDateTime``: aware; a naive time refused).

    Written by orjson, in a tenth of json.dumps's time (bench/RESULTS.md), where it writes what json.dumps
    would have stored: the same JSON values (the ``request``
    column's text compact and in UTF-8 where json.dumps put spaces and ``\\u`` escapes) and a UTC time as
    ``isoformat`` writes it. Anything else goes through json.dumps, as before: a time not in UTC (or
    naive: refused there), what orjson refuses (an integer beyond 64 bits, an unpaired surrogate), and
    NaN or Infinity, which orjson writes as null where json.dumps writes what PostgreSQL refuses: any
    null in orjson's text sends the batch the stdlib's way.
    """
    if all(row["created_at"].tzinfo is UTC and row["expires_at"].tzinfo is UTC for row in rows):
        try:
            text = orjson.dumps(rows)
        except orjson.JSONEncodeError:
            pass
        else:
            if b"null" not in text:
                return text.decode()
    return json.dumps(
        [{**row, "created_at": _utc_iso(row["created_at"]), "expires_at": _utc_iso(row["expires_at"])} for row in rows]
    )


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
    return moment.astimezone(UTC).isoformat()


def pushed_request_writer(
    engine: AsyncEngine, *, max_batch: int, concurrency: int, queue_timeout: float, linger: float
) -> PushedRequestWriter[Any]:
    """The batched writer for the engine's dialect."""
    kind: type[PushedRequestWriter[Any]] = (
        PostgresPushedRequestWriter if engine.dialect.name == "postgresql" else TransactionPushedRequestWriter
    )
    return kind(engine, max_batch=max_batch, concurrency=concurrency, queue_timeout=queue_timeout, linger=linger)
