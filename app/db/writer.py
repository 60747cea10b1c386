"""Pushed requests written in batches: concurrent pushes share one INSERT transaction and one commit.

Why: a push's own INSERT cost it a pool checkout (with its liveness ping), the statement and the
commit, each a database round trip and, in Python, more CPU than the database spends. Under load,
requests wait here for the batch in flight to commit, then the next batch takes every request that
arrived meanwhile: batches grow with the load, and a lone request waits for nothing but its own
commit. Durability is unchanged: each caller hears back only after the transaction holding its row
has committed, so a 201 is still only sent for a stored request.

A row the database refuses (its client or service deleted meanwhile: a foreign key) fails the batch's
transaction; the batch is then written row by row, so only that row's push fails.

Up to ``concurrency`` batches are written at once (each on a pooled connection), so one slow batch
does not hold up every push behind it. The waits are bounded like those of a push with a connection
of its own: a row waits at most ``queue_timeout`` (the pool timeout) for a batch to take it, then
fails as on an unavailable database (503); a batch waits for a connection at most the pool timeout,
and its statements are bounded by the statement timeout. A push that gave up is never acknowledged,
so a row written after all is never used and expires like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import PushedRequest

Row = dict[str, Any]
# One statement object: its compiled form is reused for every batch.
INSERT_PUSHED_REQUEST = insert(PushedRequest)


@dataclass(slots=True)
class _Waiting:
    row: Row
    stored: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    taken: bool = False  # a batch holds it: from here on the pool and statement timeouts bound the wait


class WriteTimeout(PoolTimeoutError):
    """A pushed request was not written in time (answered like an unavailable database: 503)."""


class PushedRequestWriter:
    def __init__(self, engine: AsyncEngine, *, max_batch: int, concurrency: int, queue_timeout: float) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._queue_timeout = queue_timeout
        self._queue: list[_Waiting] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def add(self, row: Row) -> bool:
        """Store one pushed request; False when the database refuses it (its client or service is gone).
        Database errors propagate to every request of the failed batch."""
        waiting = _Waiting(row)
        self._queue.append(waiting)
        if len(self._flushers) < self._concurrency:
            flusher = asyncio.get_running_loop().create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        done, _ = await asyncio.wait({waiting.stored}, timeout=self._queue_timeout)
        if not done and not waiting.taken:
            self._queue.remove(waiting)
            raise WriteTimeout(f"no connection to write the pushed request within {self._queue_timeout:g} s")
        return await waiting.stored

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            for waiting in batch:
                waiting.taken = True
            try:
                await self._write(batch)
            except Exception as error:  # the database is away or refused the batch: each caller hears it
                for waiting in batch:
                    if not waiting.stored.done():
                        waiting.stored.set_exception(error)

    async def _write(self, batch: Sequence[_Waiting]) -> None:
        try:
            async with self._engine.begin() as connection:
                await connection.execute(INSERT_PUSHED_REQUEST, [waiting.row for waiting in batch])
        except IntegrityError:
            if len(batch) == 1:
                batch[0].stored.set_result(False)
                return
            for waiting in batch:  # find the refused row(s): each on its own
                await self._write([waiting])
            return
        for waiting in batch:
            waiting.stored.set_result(True)
