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

The batching itself (``BatchWriter``) is shared with the Redis store of pushed requests
(``app.db.redis_pushed_requests``), whose batches are pipelines instead of transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.errors import InvalidRequest
from app.core.model import PushedRequestRecord
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

Item = TypeVar("Item")
Held = TypeVar("Held")  # what one flusher holds while it writes batch after batch (a connection, or nothing)


@dataclass(slots=True)
class Waiting(Generic[Item]):
    """One caller's item, waiting for a batch to write it; ``stored`` answers the caller."""

    item: Item
    stored: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    taken: bool = False  # a batch holds it: from here on the pool and statement timeouts bound the wait

    def answer(self, result: bool) -> None:
        """Tell the caller; one that is gone (its request cancelled) is skipped, not the rest of the batch."""
        if not self.stored.done():
            self.stored.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.stored.done():
            self.stored.set_exception(error)


class WriteTimeout(PoolTimeoutError):
    """A pushed request was not written in time (answered like an unavailable database: 503)."""


class BatchWriter(ABC, Generic[Item, Held]):
    """Concurrent callers' items written in shared batches; each caller is answered only once the write
    holding its item is acknowledged (or failed). Subclasses write one batch (:meth:`_write`) with what
    :meth:`_holding` gives them for as long as batches keep coming."""

    def __init__(self, *, max_batch: int, concurrency: int, queue_timeout: float, linger: float = 0.0) -> None:
        self._max_batch = max_batch
        self._linger = linger
        self._arrived = asyncio.Event()
        self._lingering = 0  # writers waiting for the next item with what they hold
        self._closing = False
        self._concurrency = concurrency
        self._queue_timeout = queue_timeout
        self._queue: list[Waiting[Item]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def add(self, item: Item) -> bool:
        """Write one item; what the result means, and which errors propagate, is the subclass's to say.
        An error of a failed batch propagates to every caller whose item it held."""
        waiting = Waiting(item)
        self._queue.append(waiting)
        self._arrived.set()
        if not self._lingering and len(self._flushers) < self._concurrency:  # a lingering writer takes it
            flusher = asyncio.get_running_loop().create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        # A timer, not asyncio.wait(timeout=...): the wait cost a push more CPU than its row's share of
        # the INSERT (bench/RESULTS.md).
        timer = asyncio.get_running_loop().call_later(self._queue_timeout, self._expire, waiting)
        try:
            return await waiting.stored
        except asyncio.CancelledError:
            if not waiting.taken:  # the caller is gone: its item is not written
                self._queue.remove(waiting)
            raise
        finally:
            timer.cancel()

    def _expire(self, waiting: Waiting[Item]) -> None:
        """The queue timeout: an item no batch has taken yet fails; a taken one is bounded by the pool and
        statement timeouts of its batch instead."""
        if not waiting.taken and not waiting.stored.done():
            self._queue.remove(waiting)
            waiting.fail(WriteTimeout(f"no connection to write the pushed request within {self._queue_timeout:g} s"))

    async def _flush(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                async with self._holding() as held:
                    await self._write(batch, held)
                    while await self._next_arrival():  # what arrives meanwhile, with the same connection
                        batch = self._take()
                        await self._write(batch, held)
            except Exception as error:  # the store is away or refused the batch: each caller hears it
                for waiting in batch:
                    waiting.fail(error)

    async def _next_arrival(self) -> bool:
        """Whether items wait, or arrive within ``linger``: under load the next pushes come while the last
        batch's callers are being answered, and a writer that gave its connection back at once checked
        one out again (with the liveness ping) for nearly every batch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        self._lingering += 1
        try:
            while not self._queue:
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closing:
                    return False
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            return True
        finally:
            self._lingering -= 1

    async def aclose(self) -> None:
        """Let the writers finish what is queued and give back what they hold (at shutdown)."""
        self._closing = True
        self._arrived.set()
        await asyncio.gather(*self._flushers, return_exceptions=True)

    def _take(self) -> list[Waiting[Item]]:
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        for waiting in batch:
            waiting.taken = True
        return batch

    @abstractmethod
    def _holding(self) -> AbstractAsyncContextManager[Held]:
        """What a flusher holds from its first batch until the queue is empty."""

    @abstractmethod
    async def _write(self, batch: Sequence[Waiting[Item]], held: Held) -> None:
        """Write the batch and answer each of its callers (``stored``); raising answers the rest."""


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
