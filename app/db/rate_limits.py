"""A ``limits`` storage over the shared database, so rate limits hold across replicas without Redis.

The library provides the strategy (fixed windows) and the API; this provides only the counter: one
atomic upsert per hit (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, SQLite >= 3.35 and
PostgreSQL alike), in a short transaction of its own so that no counter row stays locked while a
push runs.

A request uses :meth:`SqlRateLimitStorage.bound` to count on its own connection (a second pooled
connection per request would double the pool waits, and on a slow database every checkout, BEGIN and
COMMIT costs a round trip), and :meth:`SessionRateLimitStorage.preload` to read every counter it will
test in one SELECT instead of one transaction each.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta

from limits.aio.storage import Storage
from sqlalchemy import case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import RateLimitCounter, UTCDateTime


class _SqlCounters(Storage):
    STORAGE_SCHEME = ["par+sql"]

    def __init__(self, *, dialect: str) -> None:
        super().__init__(uri=None, wrap_exceptions=False)
        self._dialect = dialect
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session whose work commits when the block ends."""
        raise NotImplementedError

    def _reading(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session to read from."""
        raise NotImplementedError

    async def incr(self, key: str, expiry: int | float, amount: int = 1) -> int:
        count, _ = await self._increment(key, expiry, amount)
        return count

    async def _increment(self, key: str, expiry: int | float, amount: int) -> tuple[int, datetime]:
        now = datetime.now(UTC)
        renewed = now + timedelta(seconds=expiry)
        expired = RateLimitCounter.expires_at <= now
        statement = (
            self._insert(RateLimitCounter)
            .values(key=_digest(key), count=amount, expires_at=renewed)
            .on_conflict_do_update(
                index_elements=[RateLimitCounter.key],
                set_={
                    "count": case((expired, amount), else_=RateLimitCounter.count + amount),
                    "expires_at": case((expired, literal(renewed, UTCDateTime())), else_=RateLimitCounter.expires_at),
                },
            )
            .returning(RateLimitCounter.count, RateLimitCounter.expires_at)
        )
        async with self._transaction() as session:
            count, expires_at = (await session.execute(statement)).one()
        return int(count), expires_at

    async def get(self, key: str) -> int:
        count, _ = (await self._read([key]))[key]
        return count

    async def get_expiry(self, key: str) -> float:
        _, expires_at = (await self._read([key]))[key]
        return expires_at.timestamp()

    async def _read(self, keys: Iterable[str]) -> dict[str, tuple[int, datetime]]:
        """Each key's live count and window end (0 and now for a missing or expired counter)."""
        by_digest = {_digest(key): key for key in keys}
        statement = select(RateLimitCounter.key, RateLimitCounter.count, RateLimitCounter.expires_at).where(
            RateLimitCounter.key.in_(by_digest)
        )
        async with self._reading() as session:
            rows = (await session.execute(statement)).all()
        now = datetime.now(UTC)
        found = {by_digest[digest]: (count, expires_at) for digest, count, expires_at in rows if expires_at > now}
        return {key: found.get(key, (0, now)) for key in by_digest.values()}

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        async with self._transaction() as session:
            await session.execute(delete(RateLimitCounter))
        return None

    async def clear(self, key: str) -> None:
        async with self._transaction() as session:
            await session.execute(delete(RateLimitCounter).where(RateLimitCounter.key == _digest(key)))


class SqlRateLimitStorage(_SqlCounters):
    """The counters on connections of their own (purging, resetting); requests use :meth:`bound`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, dialect: str) -> None:
        super().__init__(dialect=dialect)
        self._sessions = sessions

    def bound(self, session: AsyncSession) -> SessionRateLimitStorage:
        return SessionRateLimitStorage(session, dialect=self._dialect)

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self._sessions.begin()

    def _reading(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self._sessions()

    async def purge_expired(self, *, before: datetime) -> None:
        async with self._transaction() as session:
            await session.execute(delete(RateLimitCounter).where(RateLimitCounter.expires_at <= before))


class SessionRateLimitStorage(_SqlCounters):
    """The counters on one request's session, each operation committed at once.

    The request must have nothing of its own pending when it counts (it counts before its push starts
    and after the push has committed).
    """

    def __init__(self, session: AsyncSession, *, dialect: str) -> None:
        super().__init__(dialect=dialect)
        self._session = session
        self._snapshot: dict[str, tuple[int, datetime]] = {}

    async def preload(self, keys: Iterable[str]) -> None:
        """Read these counters in one SELECT; ``get`` and ``get_expiry`` then answer from it."""
        self._snapshot.update(await super()._read(keys))

    async def _read(self, keys: Iterable[str]) -> dict[str, tuple[int, datetime]]:
        wanted = list(keys)
        missing = [key for key in wanted if key not in self._snapshot]
        if missing:
            await self.preload(missing)
        return {key: self._snapshot[key] for key in wanted}

    async def _increment(self, key: str, expiry: int | float, amount: int) -> tuple[int, datetime]:
        self._snapshot[key] = counter = await super()._increment(key, expiry, amount)
        return counter

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        try:
            yield self._session
            await self._session.commit()
        except BaseException:
            await self._session.rollback()
            raise

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        yield self._session  # in the transaction the next counter write (or the push) commits


def _digest(key: str) -> str:
    """Keys contain client ids and addresses; only a digest is stored."""
    return hashlib.sha256(key.encode()).hexdigest()
