"""The batching shared by the writers of pushed requests (app/db/batch_writer.py), on items of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager

import pytest

from app.db.batch_writer import BatchWriter, Waiting, WriteTimeout


class GatedWriter(BatchWriter[str, None]):
    """A batch writer whose write waits for ``gate``, then stores every item."""

    def __init__(self) -> None:
        super().__init__(max_batch=10, concurrency=1, queue_timeout=0.01)
        self.gate = asyncio.Event()

    def _holding(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def _write(self, batch: Sequence[Waiting[str]], held: None) -> None:  # noqa: ARG002
        await self.gate.wait()
        for waiting in batch:
            waiting.answer(True)


async def test_a_caller_that_left_does_not_fail_the_rest_of_its_batch() -> None:
    """A request cancelled (its client gone) while its row was being written: the others of the batch
    are still answered, not failed by the answer nobody waits for any more."""
    writer = GatedWriter()
    gone = asyncio.create_task(writer.add("gone"))
    staying = asyncio.create_task(writer.add("staying"))
    await asyncio.sleep(0.05)  # both taken by the batch, past the queue timeout
    gone.cancel()
    await asyncio.sleep(0)
    writer.gate.set()
    assert await staying is True
    assert gone.cancelled()


class RecordingWriter(GatedWriter):
    """One item per batch; remembers what it wrote."""

    def __init__(self) -> None:
        super().__init__()
        self._max_batch = 1
        self.written: list[str] = []

    async def _write(self, batch: Sequence[Waiting[str]], held: None) -> None:  # noqa: ARG002
        await self.gate.wait()
        self.written.extend(waiting.item for waiting in batch)
        for waiting in batch:
            waiting.answer(True)


async def test_an_item_no_batch_takes_in_time_fails_and_is_never_written() -> None:
    """The queue timeout (the pool timeout): a push waits no longer for a batch than it would have for a
    connection of its own, and a push answered 503 is not stored afterwards."""
    writer = RecordingWriter()
    first = asyncio.create_task(writer.add("first"))  # taken by the only batch, which waits on the gate
    await asyncio.sleep(0)
    with pytest.raises(WriteTimeout):
        await writer.add("late")
    writer.gate.set()
    assert await first is True
    await asyncio.sleep(0.02)
    assert writer.written == ["first"]


async def test_a_caller_that_left_before_its_item_was_taken_is_not_written() -> None:
    writer = RecordingWriter()
    first = asyncio.create_task(writer.add("first"))
    gone = asyncio.create_task(writer.add("gone"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    writer.gate.set()
    assert await first is True
    assert gone.cancelled()
    await asyncio.sleep(0.02)
    assert writer.written == ["first"]


class RecordingObserver:
    """A ``BatchObserver`` that numbers each wait and records what each batch's write was given."""

    def __init__(self) -> None:
        self.waits = 0
        self.writes: list[list[object]] = []

    @contextmanager
    def waiting(self) -> Iterator[object]:
        self.waits += 1
        yield self.waits

    @contextmanager
    def writing(self, waits: Sequence[object]) -> Iterator[object]:
        self.writes.append(list(waits))
        yield None


async def test_an_observer_sees_each_wait_and_each_batch_with_its_callers_waits() -> None:
    writer = GatedWriter()
    observer = RecordingObserver()
    writer.observer = observer
    first = asyncio.create_task(writer.add("a"))
    await asyncio.sleep(0)  # "a" is taken: the next ones wait for the next batch
    rest = [asyncio.create_task(writer.add(item)) for item in ("b", "c")]
    await asyncio.sleep(0)
    writer.gate.set()
    assert await asyncio.gather(first, *rest) == [True, True, True]
    assert observer.waits == 3
    assert observer.writes == [[1], [2, 3]]
