"""A ``limits`` storage over the shared database, so rate limits hold across replicas without Redis.

The library provides the storage API (and the Redis store); this provides only the counter: an
atomic upsert per counter (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, SQLite >= 3.35 and
PostgreSQL alike), in a short transaction of its own so that no counter row stays locked while a
push runs.

Requests do not count here directly: :class:`SyncedCounters` counts in the process and adds its hits
here in the background, so a push costs the database no counter work of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, overload

from limits.aio.storage import Storage
from sqlalchemy import case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.background import Periodic
from app.db.engine import failure_name
from app.db.models import RateLimitCounter, UTCDateTime

logger = logging.getLogger("par_server")
# Bound parameters per statement: SQLite allows 32,766, PostgreSQL 65,535; a sync may refresh
# PAR_RATE_LIMIT_MAX_COUNTERS counters.
READ_BATCH = 10_000


class SqlRateLimitStorage(Storage):
    """Fixed-window counters in the database; besides the ``limits`` API, batch reads and adds for
    :class:`SyncedCounters`, one statement or transaction for many counters."""

    STORAGE_SCHEME = ["par+sql"]

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, dialect: str) -> None:
        super().__init__(uri=None, wrap_exceptions=False)
        self._sessions = sessions
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        count, _ = (await self.add_many({key: (amount, expiry)}))[key]
        return count

    async def get(self, key: str) -> int:
        count, _ = (await self.read_many([key]))[key]
        return count

    async def get_expiry(self, key: str) -> float:
        _, window_end = (await self.read_many([key]))[key]
        return window_end

    async def add_many(self, hits: dict[str, tuple[int, int]]) -> dict[str, tuple[int, float]]:
        """Add ``amount`` to each counter (a new window of ``expiry`` seconds where the last one ended), in
        one transaction; each counter's new count and window end (epoch seconds)."""
        now = datetime.now(UTC)
        expired = RateLimitCounter.expires_at <= now
        counts = {}
        async with self._sessions.begin() as session:
            for key, (amount, expiry) in hits.items():
                renewed = now + timedelta(seconds=expiry)
                statement = (
                    self._insert(RateLimitCounter)
                    .values(key=_digest(key), count=amount, expires_at=renewed)
                    .on_conflict_do_update(
                        index_elements=[RateLimitCounter.key],
                        set_={
                            "count": case((expired, amount), else_=RateLimitCounter.count + amount),
                            "expires_at": case(
                                (expired, literal(renewed, UTCDateTime())), else_=RateLimitCounter.expires_at
                            ),
                        },
                    )
                    .returning(RateLimitCounter.count, RateLimitCounter.expires_at)
                )
                count, expires_at = (await session.execute(statement)).one()
                counts[key] = (int(count), expires_at.timestamp())
        return counts

    async def read_many(self, keys: Iterable[str]) -> dict[str, tuple[int, float]]:
        """Each counter's live count and window end, in a SELECT per ``READ_BATCH`` counters (0 and now
        when it has none)."""
        by_digest = {_digest(key): key for key in keys}
        digests = list(by_digest)
        now = datetime.now(UTC)
        found: dict[str, tuple[int, float]] = {}
        async with self._sessions() as session:
            for start in range(0, len(digests), READ_BATCH):
                statement = select(RateLimitCounter.key, RateLimitCounter.count, RateLimitCounter.expires_at).where(
                    RateLimitCounter.key.in_(digests[start : start + READ_BATCH])
                )
                for digest, count, expires_at in (await session.execute(statement)).all():
                    if expires_at > now:
                        found[by_digest[digest]] = (count, expires_at.timestamp())
        return {key: found.get(key, (0, now.timestamp())) for key in by_digest.values()}

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        async with self._sessions.begin() as session:
            await session.execute(delete(RateLimitCounter))
        return None

    async def clear(self, key: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(RateLimitCounter).where(RateLimitCounter.key == _digest(key)))

    async def purge_expired(self, *, before: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(RateLimitCounter).where(RateLimitCounter.expires_at <= before))


def _digest(key: str) -> str:
    """Keys contain client ids and addresses; only a digest is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(slots=True)
class _View:
    count: int  # the shared store's count at the last sync, hits of every replica included
    window_end: float  # epoch seconds; the count is void after it
    synced_at: float  # monotonic
    used_at: float  # monotonic; a view unused for two intervals is dropped


@dataclass(slots=True)
class _Pending:
    amount: int
    expiry: int  # the window length in seconds, for the shared store's first hit


class SyncedCounters(Storage):
    """Counters kept in the process and synchronised with a shared store every ``interval`` seconds.

    Why not count in the shared store on every request: that is a database transaction (or a Redis
    round trip) per budget per request, on the hot path of every push, and a database that slows down
    slows every push with it. Here a request counts in memory; a background task adds this replica's
    hits to the shared store and reads back the totals, which include every other replica's hits.
    It is a ``limits`` ``Storage`` like any other; a request counts through ``counts`` and ``hit``, plain
    calls without I/O for the counters this replica read lately (the storage API awaits per counter).

    Accuracy: a replica's own hits count at once; the other replicas' hits reach it within about two
    intervals (they add theirs, it reads the totals back; a counter it has not refreshed for two
    intervals is read from the shared store before it is used). So beyond a budget, the replicas
    together admit at most what the others admit in those two intervals.
    While the shared store is unreachable, counts go on locally and are added when it returns.

    Memory: at most ``max_counters`` counters are kept (their keys are bounded by their builders). Beyond
    that the longest-kept view is dropped (it is read again if used), and a hit on a new counter first
    hands the pending hits to the shared store; when that fails (the shared store is unreachable, or
    the counters fill again while a sync runs) the hit is not counted rather than kept.
    """

    STORAGE_SCHEME = ["par+synced"]

    def __init__(self, shared: Storage, *, interval: float, max_counters: int = 100_000) -> None:
        super().__init__(uri=None, wrap_exceptions=False)
        self.shared = shared
        self._interval = interval
        self._stale_after = 2 * interval  # a view not refreshed for this long is read again before use
        self._max_counters = max_counters
        self._sync_lock = asyncio.Lock()  # one sync at a time: each owns _in_flight while it runs
        self._views: dict[str, _View] = {}
        self._pending: dict[str, _Pending] = {}
        self._in_flight: dict[str, int] = {}  # hits being added to the shared store by a running sync
        self._schedule = Periodic(interval=interval, name="sync-rate-limit-counters")

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return self.shared.base_exceptions

    async def incr(self, key: str, expiry: int | float, amount: int = 1) -> int:
        view = await self._view(key)
        pending = self._pending.get(key)
        if pending is None:
            if not await self._make_room():
                return self._live_count(view) + self._in_flight.get(key, 0) + amount
            self._pending[key] = pending = _Pending(0, int(expiry))
        pending.amount += amount
        return self._live_count(view) + self._in_flight.get(key, 0) + pending.amount

    async def get(self, key: str) -> int:
        view = await self._view(key)
        pending = self._pending.get(key)
        return self._live_count(view) + self._in_flight.get(key, 0) + (pending.amount if pending else 0)

    # What a request calls: no I/O, and no coroutine, for a counter this replica has read lately.

    @overload
    def counts(self, keys: Iterable[str], *, read: Literal[True]) -> list[int]: ...
    @overload
    def counts(self, keys: Iterable[str], *, read: Literal[False] = False) -> list[int] | None: ...
    def counts(self, keys: Iterable[str], *, read: bool = False) -> list[int] | None:
        """The live counts of ``keys``, of every replica as of the last sync and of this one now; ``None``
        when one must first be read from the shared store (``prefetch``): this replica does not know it, or
        has not refreshed it for two intervals. ``read``: they were just read; one the shared store did
        not answer for (or that made room for another) counts what this replica has."""
        self.start()
        views, pending, in_flight = self._views, self._pending, self._in_flight
        now, wall = time.monotonic(), time.time()
        stale_before = now - self._stale_after
        counts = []
        for key in keys:
            view = views.get(key)
            if view is None or view.synced_at < stale_before:
                if not read:
                    return None
                count = 0
            else:
                view.used_at = now
                count = view.count if view.window_end > wall else 0
            hits = pending.get(key)
            if hits is not None:
                count += hits.amount
            if in_flight:
                count += in_flight.get(key, 0)
            counts.append(count)
        return counts

    def hit(self, key: str, expiry: int) -> bool:
        """Count one hit on a counter read lately, which has (or may take) a pending slot; ``False``, and
        nothing counted, when ``incr`` must do it (a read of the shared store, or room to make)."""
        view = self._views.get(key)
        now = time.monotonic()
        if view is None or view.synced_at < now - self._stale_after:
            return False
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._max_counters:
                return False
            self._pending[key] = pending = _Pending(0, expiry)
        pending.amount += 1
        view.used_at = now
        return True

    async def get_expiry(self, key: str) -> float:
        view = await self._view(key)
        now = time.time()
        if view.window_end > now:
            return view.window_end
        pending = self._pending.get(key)
        return now + (pending.expiry if pending else 0.0)

    async def check(self) -> bool:
        return await self.shared.check()

    async def reset(self) -> int | None:
        self._views.clear()
        self._pending.clear()
        return await self.shared.reset()

    async def clear(self, key: str) -> None:
        self._views.pop(key, None)
        self._pending.pop(key, None)
        await self.shared.clear(key)

    async def sync(self) -> None:
        """Add this replica's hits to the shared store and refresh every counter in use."""
        async with self._sync_lock:
            await self._sync()

    async def _sync(self) -> None:
        self._forget_idle()
        pending, self._pending = self._pending, {}
        # Until the shared store has them (and its answer is in the view), hits being added still count.
        self._in_flight = {key: hits.amount for key, hits in pending.items()}
        try:
            added = await self._add_shared({key: (hits.amount, hits.expiry) for key, hits in pending.items()})
            self._in_flight = {}
            self._store(added)
            await self.prefetch(self._views.keys() - pending.keys(), refresh=True)
        except Exception:
            for key, amount in self._in_flight.items():  # not added: keep them for the next sync
                self._merge_pending(key, _Pending(amount, pending[key].expiry))
            raise
        finally:
            self._in_flight = {}

    async def _sync_logged(self) -> None:
        """A sync whose failure is logged and retried next time."""
        try:
            await self.sync()
        except Exception as exc:
            logger.warning("rate-limit counters could not be synchronised: %s", failure_name(exc))

    def start(self) -> None:
        """Start syncing every ``interval`` seconds (on first use, in the event loop that serves requests)."""
        self._schedule.start(self._sync_logged)

    async def aclose(self) -> None:
        await self._schedule.stop()  # a sync in progress ends first (app.db.background)
        with contextlib.suppress(Exception):
            await self.sync()  # hand this replica's last hits to the others

    async def prefetch(self, keys: Iterable[str], *, refresh: bool = False) -> None:
        """Read the counters this replica does not know (or has not refreshed lately), all at once."""
        stale_before = time.monotonic() - self._stale_after
        wanted = [key for key in keys if refresh or key not in self._views or self._views[key].synced_at < stale_before]
        if wanted:
            self._store(await self._read_shared(wanted))

    def _store(self, counters: dict[str, tuple[int, float]]) -> None:
        now = time.monotonic()
        for key, (count, window_end) in counters.items():
            previous = self._views.pop(key, None)  # re-inserted last: the views are kept oldest first
            while len(self._views) >= self._max_counters:
                del self._views[next(iter(self._views))]
            self._views[key] = _View(count, window_end, now, previous.used_at if previous else now)

    async def _view(self, key: str) -> _View:
        self.start()
        view = self._views.get(key)
        if view is None or view.synced_at < time.monotonic() - self._stale_after:
            await self.prefetch([key])
            view = self._views.get(key) or _View(0, 0.0, time.monotonic(), time.monotonic())
        view.used_at = time.monotonic()
        return view

    async def _read_shared(self, keys: list[str]) -> dict[str, tuple[int, float]]:
        if isinstance(self.shared, SqlRateLimitStorage):
            return await self.shared.read_many(keys)
        return {key: (await self.shared.get(key), await self.shared.get_expiry(key)) for key in keys}

    async def _add_shared(self, hits: dict[str, tuple[int, int]]) -> dict[str, tuple[int, float]]:
        if isinstance(self.shared, SqlRateLimitStorage):
            return await self.shared.add_many(hits) if hits else {}
        added = {}
        for key, (amount, expiry) in hits.items():
            count = await self.shared.incr(key, expiry, amount)
            del self._in_flight[key]
            added[key] = (count, await self.shared.get_expiry(key))
        return added

    async def _make_room(self) -> bool:
        """Whether a new counter may take a pending slot: when all are taken, the pending hits are handed
        to the shared store first (a round trip only for a flood of distinct counters)."""
        if len(self._pending) < self._max_counters:
            return True
        if not self._sync_lock.locked():  # a running sync has already taken the pending hits over
            with contextlib.suppress(Exception):  # unreachable: the sync keeps them for later
                await self.sync()
        return len(self._pending) < self._max_counters

    @staticmethod
    def _live_count(view: _View) -> int:
        return view.count if view.window_end > time.time() else 0

    def _merge_pending(self, key: str, hits: _Pending) -> None:
        current = self._pending.get(key)
        if current is None:
            self._pending[key] = hits
        else:
            current.amount += hits.amount

    def _forget_idle(self) -> None:
        """Counters nobody used for two intervals are no longer refreshed (they are read again when needed)."""
        idle_before = time.monotonic() - self._stale_after
        for key in [key for key, view in self._views.items() if view.used_at < idle_before]:
            del self._views[key]
