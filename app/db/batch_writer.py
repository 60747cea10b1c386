"""Concurrent callers' items written in shared batches: one transaction, or one pipeline, for many.

Why: a push's own INSERT cost it a pool checkout (with its liveness ping), the statement and the
commit, each a database round trip and, in Python, more CPU than the database spends. Under load,
callers wait here for the batch in flight to be written, then the next batch takes every item that
arrived meanwhile: batches grow with the load, and a lone caller waits for nothing but its own
write. Durability is unchanged: each caller hears back only once the write holding its item is
acknowledged, so a 201 is still only sent for a stored request.

Up to ``concurrency`` batches are written at once (each on what a writer holds, e.g. a pooled
connection), so one slow batch does not hold up every caller behind it. The waits are bounded like
those of a push with a connection of its own: an item waits at most ``queue_timeout`` (the pool
timeout) for a batch to take it, then fails as on an unavailable database (``WriteTimeout``: 503); a
batch taken is bounded by its store's timeouts. A caller that gave up is never acknowledged, so an
item written after all is never used and expires like any other. A writer may keep what it holds
for ``linger`` after its last batch, for the items that follow (``PAR_PUSH_WRITE_LINGER_SECONDS``).

Used by both stores of pushed requests: the database's (``app.db.pushed_requests``, transactions or
one statement per batch) and Redis's (``app.db.redis_pushed_requests``, pipelines).

A batch is written in a task of its own, outside the context of the requests it writes for; with
tracing on, an ``observer`` (``app.tracing``) ties the two together: each caller's wait, and each
batch's write with what its callers' waits gave.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sqlalchemy.exc import TimeoutError as PoolTimeoutError

Item = TypeVar("Item")
Held = TypeVar("Held")  # what one flusher holds while it writes batch after batch (a connection, or nothing)


@dataclass(slots=True)
class Waiting(Generic[Item]):
    """One caller's item, waiting for a batch to write it; ``stored`` answers the caller."""

    item: Item
    stored: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    taken: bool = False  # a batch holds it: from here on the pool and statement timeouts bound the wait
    observed: object = None  # what the ``BatchObserver`` gave its caller's wait

    def answer(self, result: bool) -> None:
        """Tell the caller; one that is gone (its request cancelled) is skipped, not the rest of the batch."""
        if not self.stored.done():
            self.stored.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.stored.done():
            self.stored.set_exception(error)


class BatchObserver(Protocol):
    """Observes the writes of a ``BatchWriter`` (``app.tracing``: spans)."""

    def waiting(self) -> AbstractContextManager[object]:
        """Around one caller's wait for its item's batch, in the caller's context; what it gives is handed
        to ``writing`` with the batch."""

    def writing(self, waits: Sequence[object]) -> AbstractContextManager[object]:
        """Around the write of one batch, given what ``waiting`` gave each of its callers."""


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
        self.observer: BatchObserver | None = None

    async def add(self, item: Item) -> bool:
        """Write one item; what the result means, and which errors propagate, is the subclass's to say.
        An error of a failed batch propagates to every caller whose item it held."""
        waiting = Waiting(item)
        if self.observer is None:
            return await self._wait(waiting)
        with self.observer.waiting() as observed:
            waiting.observed = observed
            return await self._wait(waiting)

    async def _wait(self, waiting: Waiting[Item]) -> bool:
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
                    await self._write_observed(batch, held)
                    while await self._next_arrival():  # what arrives meanwhile, with the same connection
                        batch = self._take()
                        await self._write_observed(batch, held)
            except Exception as error:  # the store is away or refused the batch: each caller hears it
                for waiting in batch:
                    waiting.fail(error)

    async def _write_observed(self, batch: list[Waiting[Item]], held: Held) -> None:
        if self.observer is None:
            await self._write(batch, held)
            return
        with self.observer.writing([waiting.observed for waiting in batch]):
            await self._write(batch, held)

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
