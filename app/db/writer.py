"""Pushed requests written in batches: concurrent pushes share one INSERT transaction and one commit.

Why: a push's own INSERT cost it a pool checkout (with its liveness ping), the statement and the
commit, each a database round trip and, in Python, more CPU than the database spends. Under load,
requests wait here for the batch in flight to commit, then the next batch takes every request that
arrived meanwhile: batches grow with the load, and a lone request waits for nothing but its own
commit. Durability is unchanged: each caller hears back only after the transaction holding its row
has committed, so a 201 is still only sent for a stored request.

A row the database refuses (its client or service deleted meanwhile: a foreign key; or a value it cannot
hold) fails the batch's transaction; the batch is then written row by row, so only that row's push
fails (``ROW_REFUSED``), and a push of one service never fails another's.

Up to ``concurrency`` batches are written at once (each on a pooled connection), so one slow batch
does not hold up every push behind it. The waits are bounded like those of a push with a connection
of its own: a row waits at most ``queue_timeout`` (the pool timeout) for a batch to take it, then
fails as on an unavailable database (503); a batch waits for a connection at most the pool timeout,
and its statements are bounded by the statement timeout. A push that gave up is never acknowledged,
so a row written after all is never used and expires like any other.

On PostgreSQL a batch is one statement: its rows travel as one JSON parameter (``json_to_recordset``)
on a connection in autocommit, so writing it is a single round trip, committed by itself, durable as
any commit (``synchronous_commit``). A writer holds its connection while batches keep coming, and
returns it to the pool once no push has arrived for ``linger`` (``PAR_PUSH_WRITE_LINGER_SECONDS``),
so the pool's liveness ping is paid once per burst, not per batch. BEGIN, the pipelined per-row INSERT
and COMMIT on a freshly checked-out connection cost the server over three times the CPU of the single
statement on a held connection (bench/RESULTS.md, "What bounds it").
SQLite keeps a transaction per batch on a connection checked out for it: its pool is one
connection, which a held writer would keep from every reader.

The batching itself (``app.db.batch_writer``) is shared with the Redis store of pushed requests
(``app.db.redis_pushed_requests``), whose batches are pipelines instead of transactions.
"""

from __future__ import annotations

import contextlib
import json
from abc import abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.errors import InvalidRequest
from app.core.model import PushedRequestRecord
from app.db.batch_writer import BatchWriter, Held, Waiting
from app.db.models import PushedRequest, UTCDateTime

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

    async def add_record(self, record: PushedRequestRecord) -> bool:
        """Store the request (``app.db.repositories.PushedRequestSink``); False when its client or service
        no longer exists: the foreign keys refuse it, so a client deleted through another replica cannot
        push even while that replica's cache (``app.db.cache``) still holds it."""
        return await self.add(
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


class PostgresPushedRequestWriter(PushedRequestWriter[AsyncConnection]):
    """PostgreSQL: each batch one statement on a held autocommit connection (this module's docstring)."""

    @asynccontextmanager
    async def _holding(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    async def _insert(self, rows: list[Row], held: AsyncConnection) -> None:
        await held.exec_driver_sql(POSTGRESQL_INSERT_PUSHED_REQUESTS, (self._json_rows(rows),))

    def _json_rows(self, rows: list[Row]) -> str:
        """The rows as the JSON array ``json_to_recordset`` reads, times in ISO 8601 with their offset."""
        return json.dumps(
            [
                {**row, "created_at": self._time(row["created_at"]), "expires_at": self._time(row["expires_at"])}
                for row in rows
            ]
        )

    def _time(self, moment: datetime) -> str:
        """As the column's type binds it (``UTCDateTime``: aware, in UTC; a naive time refused)."""
        return cast(datetime, _UTC_DATETIME.process_bind_param(moment, self._engine.dialect)).isoformat()


_UTC_DATETIME = UTCDateTime()


def pushed_request_writer(
    engine: AsyncEngine, *, max_batch: int, concurrency: int, queue_timeout: float, linger: float
) -> PushedRequestWriter[Any]:
    """The batched writer for the engine's dialect."""
    kind: type[PushedRequestWriter[Any]] = (
        PostgresPushedRequestWriter if engine.dialect.name == "postgresql" else TransactionPushedRequestWriter
    )
    return kind(engine, max_batch=max_batch, concurrency=concurrency, queue_timeout=queue_timeout, linger=linger)
