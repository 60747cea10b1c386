"""Work the server does on its own schedule (purging, syncing counters), stopped between rounds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Periodic:
    """Runs a job every ``interval`` seconds until ``stop``.

    A stop never cancels a round halfway: a round holds a database connection, and cancelling a
    coroutine on an SQLite connection can hang SQLAlchemy's close of it for good
    (``app.db.engine.UncancelledCheck``), and with it the server's shutdown. ``stop`` ends the wait
    between rounds at once and waits for a running round to end, which the database's own timeouts
    bound; a job of several steps asks ``stopping`` between them. The job handles its own failures: one
    that raises ends the schedule, and ``stop`` raises it.
    """

    def __init__(self, *, interval: float, name: str) -> None:
        self._interval = interval
        self._name = name
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``job`` on this schedule, in the running event loop; a second call does nothing."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(job), name=self._name)

    def stopping(self) -> bool:
        """Whether ``stop`` was called: a job with several steps starts no further one."""
        return self._stopping.is_set()

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def _run(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while not await self._stopped_within(self._interval):
            await job()

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()  # cancelling this wait holds nothing
        except TimeoutError:
            return False
        return True
