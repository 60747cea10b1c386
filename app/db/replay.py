"""Replay stores: remember single-use values across every replica (the database, or Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import RequestConnection
from app.db.models import ReplayEntry


class SqlReplayStore:
    """Replay entries in the database shared by all replicas. Requests use :meth:`bound` to record on
    their own connection; this object purges."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    def bound(self, connection: RequestConnection) -> ConnectionReplayStore:
        return ConnectionReplayStore(connection)

    @staticmethod
    async def count(session: AsyncSession) -> int:
        return await session.scalar(select(func.count()).select_from(ReplayEntry)) or 0

    async def purge_expired(self, *, before: datetime) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(ReplayEntry).where(ReplayEntry.expires_at <= before))
        return int(getattr(result, "rowcount", 0) or 0)


class ConnectionReplayStore:
    """``app.core.ports.ReplayStore`` on the request's own connection (autocommit).

    The entry commits at once, whatever becomes of the request: a value is used once even when the
    request that used it fails later (OIDC Core §9: the JWT "MUST only be used once"). Using the
    request's connection rather than a second one matters: a request waiting for a second pooled
    connection while holding one deadlocks a saturated pool.
    """

    def __init__(self, connection: RequestConnection) -> None:
        self._connection = connection

    async def remember(self, key: str, *, expires_at: datetime) -> bool:
        connection = await self._connection.get()
        try:
            await connection.execute(INSERT_REPLAY_ENTRY, {"key": key, "expires_at": expires_at})
        except IntegrityError:
            return False
        return True


INSERT_REPLAY_ENTRY = insert(ReplayEntry)


class RedisReplayStore:
    """``app.core.ports.ReplayStore`` in Redis (``PAR_REDIS_URL``): SET NX with an absolute expiry, one round trip."""

    PREFIX = "par:replay:"

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def bound(self, _connection: RequestConnection) -> RedisReplayStore:
        return self

    async def remember(self, key: str, *, expires_at: datetime) -> bool:
        expires_ms = max(int(expires_at.timestamp() * 1000), int(datetime.now(UTC).timestamp() * 1000) + 1000)
        return bool(await self._redis.set(self.PREFIX + key, b"1", nx=True, pxat=expires_ms))

    async def purge_expired(self, *, before: datetime) -> int:  # noqa: ARG002 - Redis expires keys itself
        return 0

    async def aclose(self) -> None:
        await self._redis.aclose()
