"""``SyncedCounters``: per-replica counting synchronised with a shared store.

The shared store here is ``limits``' own in-memory storage, with a switch that makes it fail or hold
its answers, standing for a database that goes away or is slow. The database store is exercised
through the app in tests/api/test_rate_limits.py.
"""

from __future__ import annotations

import asyncio

import pytest
from limits.aio.storage import MemoryStorage

from app.db.rate_limit_counters import SyncedCounters

WINDOW = 60


class SharedStore(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.gate: asyncio.Event | None = None  # when set, incr waits for it

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        if self.down:
            raise ConnectionError("shared store unreachable")
        if self.gate is not None:
            await self.gate.wait()
        return await super().incr(key, expiry, amount)

    async def get(self, key: str) -> int:
        if self.down:
            raise ConnectionError("shared store unreachable")
        return await super().get(key)


@pytest.fixture
async def shared() -> SharedStore:
    return SharedStore()


def replica(shared: SharedStore, interval: float = 60.0) -> SyncedCounters:
    counters = SyncedCounters(shared, interval=interval)
    counters.start = lambda: None  # type: ignore[method-assign]  # tests call sync() themselves
    return counters


async def test_own_hits_count_at_once_and_reach_the_shared_store_at_sync(shared: SharedStore) -> None:
    counters = replica(shared)
    assert [await counters.incr("k", WINDOW) for _ in range(3)] == [1, 2, 3]
    assert await shared.get("k") == 0
    await counters.sync()
    assert await shared.get("k") == 3
    assert await counters.get("k") == 3  # not counted twice


async def test_other_replicas_hits_arrive_with_the_sync(shared: SharedStore) -> None:
    first, second = replica(shared), replica(shared)
    await first.incr("k", WINDOW)
    assert await second.get("k") == 0
    await second.incr("k", WINDOW, 2)
    for counters in (first, second, first):
        await counters.sync()
    assert await first.get("k") == await second.get("k") == 3


async def test_an_unknown_counter_is_read_from_the_shared_store(shared: SharedStore) -> None:
    await shared.incr("k", WINDOW, 7)
    assert await replica(shared).get("k") == 7


async def test_hits_survive_an_unreachable_shared_store(shared: SharedStore) -> None:
    counters = replica(shared)
    await counters.incr("k", WINDOW, 2)
    shared.down = True
    with pytest.raises(ConnectionError):
        await counters.sync()
    assert await counters.get("k") == 2  # still counted here
    await counters.incr("k", WINDOW)
    shared.down = False
    await counters.sync()
    assert await shared.get("k") == 3


async def test_hits_count_while_a_sync_is_adding_them(shared: SharedStore) -> None:
    counters = replica(shared)
    await counters.incr("k", WINDOW, 4)
    shared.gate = asyncio.Event()
    sync = asyncio.create_task(counters.sync())
    await asyncio.sleep(0)  # the sync is now waiting on the shared store with the 4 hits
    assert await counters.incr("k", WINDOW) == 5
    shared.gate.set()
    await sync
    assert await counters.get("k") == 5 and await shared.get("k") == 4


async def test_idle_counters_are_forgotten(shared: SharedStore) -> None:
    """Memory stays bounded by the counters in use; a forgotten one is read again when needed."""
    counters = replica(shared, interval=1.0)
    await counters.incr("k", WINDOW)
    await counters.sync()
    views = counters._views  # noqa: SLF001 - the memory bound is the point of this test
    views["k"].used_at -= 3.0  # unused for three intervals
    await counters.sync()
    assert "k" not in views
    assert await counters.get("k") == 1


async def test_closing_hands_the_last_hits_over(shared: SharedStore) -> None:
    counters = replica(shared)
    await counters.incr("k", WINDOW, 2)
    await counters.aclose()
    assert await shared.get("k") == 2


async def test_counters_kept_in_memory_are_bounded(shared: SharedStore) -> None:
    """A flood of distinct counters keeps at most ``max_counters`` in the process: the pending hits are
    handed to the shared store when they fill up, so none is lost."""
    counters = SyncedCounters(shared, interval=60, max_counters=10)
    counters.start = lambda: None  # type: ignore[method-assign]  # only the bound syncs here
    for number in range(100):
        assert await counters.incr(f"k{number}", WINDOW) == 1
    assert len(counters._pending) <= 10 and len(counters._views) <= 10
    await counters.sync()
    assert [await shared.get(f"k{number}") for number in range(100)] == [1] * 100


async def test_a_full_counter_map_drops_new_hits_while_the_shared_store_is_away(shared: SharedStore) -> None:
    """Rather than grow without bound, a replica that cannot hand its hits over stops counting new
    counters; the ones it has go on counting and reach the shared store when it returns."""
    counters = SyncedCounters(shared, interval=60, max_counters=10)
    counters.start = lambda: None  # type: ignore[method-assign]
    for number in range(10):
        await counters.incr(f"k{number}", WINDOW)
    await counters.prefetch(["new"])
    shared.down = True
    assert await counters.incr("new", WINDOW) == 1  # answered, not kept
    assert await counters.incr("k9", WINDOW) == 2  # (k0's view made room for new's: it would be read again)
    assert len(counters._pending) <= 10
    shared.down = False
    await counters.sync()
    assert (await shared.get("k9"), await shared.get("new")) == (2, 0)


async def test_a_counter_read_lately_counts_without_the_shared_store(shared: SharedStore) -> None:
    """What a request calls: counts and hits in memory; a counter unknown here, or not refreshed for two
    intervals, is to be read from the shared store first."""
    counters = replica(shared, interval=1.0)
    await shared.incr("k", WINDOW, 2)
    assert counters.counts(["k"]) is None and not counters.hit("k", WINDOW)
    await counters.prefetch(["k"])
    shared.down = True
    assert counters.hit("k", WINDOW)
    assert counters.counts(["k"]) == [3]
    assert counters.counts(["k", "other"]) is None
    assert counters.counts(["k", "other"], read=True) == [3, 0]
    counters._views["k"].synced_at -= 3.0  # noqa: SLF001 - staleness is the point of this test
    assert counters.counts(["k"]) is None and not counters.hit("k", WINDOW)
    shared.down = False
    await counters.sync()
    assert await shared.get("k") == 3
