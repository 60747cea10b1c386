"""A ``limits`` storage over the shared database, so rate limits hold across replicas without Redis.

The library provides the strategy (fixed windows) and the API; this provides only the counter: one
atomic upsert per hit (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, SQLite >= 3.35 and
PostgreSQL alike), in a transaction of its own.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from limits.aio.storage import Storage
from sqlalchemy import case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import RateLimitCounter, UTCDateTime


class SqlRateLimitStorage(Storage):
    STORAGE_SCHEME = ["par+sql"]

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, dialect: str) -> None:
        super().__init__(uri=None, wrap_exceptions=False)
        self._sessions = sessions
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    async def incr(self, key: str, expiry: int | float, amount: int = 1) -> int:
        now = datetime.now(UTC)
        renewed = now + timedelta(seconds=expiry)
        expired = RateLimitCounter.expires_at <= now
        renewal = literal(renewed, UTCDateTime())
        statement = (
            self._insert(RateLimitCounter)
            .values(key=_digest(key), count=amount, expires_at=renewed)
            .on_conflict_do_update(
                index_elements=[RateLimitCounter.key],
                set_={
                    "count": case((expired, amount), else_=RateLimitCounter.count + amount),
                    "expires_at": case((expired, renewal), else_=RateLimitCounter.expires_at),
                },
            )
            .returning(RateLimitCounter.count)
        )
        async with self._sessions.begin() as session:
            return int((await session.execute(statement)).scalar_one())

    async def get(self, key: str) -> int:
        row = await self._row(key)
        return row.count if row is not None and row.expires_at > datetime.now(UTC) else 0

    async def get_expiry(self, key: str) -> float:
        row = await self._row(key)
        now = datetime.now(UTC)
        return (row.expires_at if row is not None and row.expires_at > now else now).timestamp()

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

    async def _row(self, key: str) -> RateLimitCounter | None:
        async with self._sessions() as session:
            return await session.scalar(select(RateLimitCounter).where(RateLimitCounter.key == _digest(key)))


def _digest(key: str) -> str:
    """Keys contain client ids and addresses; only a digest is stored."""
    return hashlib.sha256(key.encode()).hexdigest()
