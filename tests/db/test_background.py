"""``app.db.background.Periodic``: rounds on a schedule, and a stop that never cuts one short."""

from __future__ import annotations

import asyncio
import time

from app.db.background import Periodic


async def test_a_job_runs_every_interval_until_stopped() -> None:
    rounds: list[float] = []

    async def job() -> None:
        rounds.append(time.monotonic())

    schedule = Periodic(interval=0.02, name="test")
    schedule.start(job)
    schedule.start(job)  # a second start does nothing
    await asyncio.sleep(0.3)
    await schedule.stop()
    done = len(rounds)
    await asyncio.sleep(0.1)
    assert 3 <= done == len(rounds)  # no round after the stop, and no second schedule before it
    assert rounds == sorted(rounds) and min(b - a for a, b in zip(rounds, rounds[1:], strict=False)) >= 0.015


async def test_a_stop_between_rounds_is_immediate() -> None:
    async def job() -> None:
        raise AssertionError("not due for an hour")

    schedule = Periodic(interval=3600, name="test")
    schedule.start(job)
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await schedule.stop()
    assert time.monotonic() - started < 0.5


async def test_a_stop_waits_for_the_round_in_progress_and_never_cancels_it() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    steps: list[str] = []
    schedule = Periodic(interval=0.01, name="test")

    async def job() -> None:
        entered.set()
        try:
            await release.wait()
            steps.append("first step")
            if not schedule.stopping():
                steps.append("second step")
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise

    schedule.start(job)
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(schedule.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()
    assert schedule.stopping()
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert steps == ["first step"]
