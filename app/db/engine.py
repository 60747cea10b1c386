"""Engine and session factory from settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import sqlite3
from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import psycopg
from psycopg.abc import PQGen
from sqlalchemy import ClauseElement, event
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg as PostgresPsycopgDialect
from sqlalchemy.engine import make_url
from sqlalchemy.engine.base import ExceptionContextImpl
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.settings import Settings

MIN_SQLITE_VERSION = (3, 35)  # UPDATE/DELETE ... RETURNING
# aiosqlite logs every statement with its bound values at DEBUG: those values are pushed parameters and
# secret hashes, which must never reach a log, whatever level an operator sets.
logging.getLogger("aiosqlite").setLevel(logging.INFO)
logger = logging.getLogger("par_server")
T = TypeVar("T")
DRIVER_ERROR_CODE = re.compile(r"[A-Z0-9_]{1,40}")  # SQLITE_FULL, 57014: a code, never text


def create_engine_from_settings(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise RuntimeError(f"SQLite >= {'.'.join(map(str, MIN_SQLITE_VERSION))} is required")
        prepare_sqlite_file(settings.database_url)
        engine = create_async_engine(
            url,
            pool_size=settings.sqlite_pool_size,
            max_overflow=0,
            pool_timeout=settings.db_pool_timeout_seconds,
            hide_parameters=True,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=True,
        pool_recycle=1800,
        hide_parameters=True,  # SQL logs and driver errors never carry parameter values
        connect_args=_postgres_connect_args(settings),
    )


def prepare_sqlite_file(database_url: str) -> None:
    """The SQLite file holds pushed parameters and secret hashes: readable by its owner only. A directory
    made for it is 0700 and the file is created 0600 before SQLite opens it (which would create it 0644
    under the usual umask); SQLite gives its -wal, -shm and -journal files the database file's mode. An
    existing file keeps the mode its operator gave it."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if url.database.startswith("file:"):  # an SQLite URI filename (uri=true): SQLite's to interpret
        return
    path = Path(url.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _postgres_connect_args(settings: Settings) -> dict[str, Any]:
    """Fail fast on a database that does not answer (README, "Faults"):

    - a connection attempt ends after ``PAR_DB_CONNECT_TIMEOUT_SECONDS`` (psycopg's own clock);
    - the server cancels a statement or lock wait after ``PAR_DB_STATEMENT_TIMEOUT_SECONDS`` (a
      cancelled statement raises OperationalError, answered 503; its connection stays usable);
    - a server that does not answer at all (stopped, overloaded past answering, or partitioned away)
      applies no statement timeout, so this process waits at most ``PAR_DB_CLIENT_TIMEOUT_SECONDS`` for
      any answer and then drops the connection (``BoundedConnection``);
    - TCP keepalives and ``tcp_user_timeout`` make the kernel give up on a peer that stopped
      acknowledging within about the same time, for sockets nobody is waiting on (in the pool).
    """
    client_timeout = settings.db_client_timeout_seconds
    args: dict[str, Any] = {
        "async_creator_fn": partial(BoundedConnection.bounded_connect, operation_timeout=client_timeout),
        "connect_timeout": settings.db_connect_timeout_seconds,
        "keepalives": 1,
        "keepalives_idle": math.ceil(client_timeout),
        "keepalives_interval": math.ceil(client_timeout / KEEPALIVE_PROBES),
        "keepalives_count": KEEPALIVE_PROBES,
        "tcp_user_timeout": int(client_timeout * 1000),
    }
    if settings.db_statement_timeout_seconds:
        milliseconds = int(settings.db_statement_timeout_seconds * 1000)
        args["options"] = f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"
    return args


KEEPALIVE_PROBES = 3  # unanswered probes before the kernel drops an idle connection


class BoundedConnection(psycopg.AsyncConnection[Any]):
    """A psycopg connection that waits at most ``operation_timeout`` seconds for any exchange with the
    server once connected (a statement, a commit, the pool's liveness ping), on this process's clock.

    Why not ``asyncio.timeout`` around the calls: cancelling psycopg mid-statement sends the server a
    cancel request and waits for the statement to end, up to 10 s more each, and a stopped server
    answers neither. Here the socket is shut down instead: the pending read ends at once, psycopg
    raises OperationalError and marks the connection broken, and SQLAlchemy discards it (it never
    goes back to the pool). A cancelled operation (a caller's own timeout, shutdown) is severed the
    same way rather than waiting for a cancel request the server may never answer.
    """

    operation_timeout: float = 30.0  # until ``bounded_connect`` sets PAR_DB_CLIENT_TIMEOUT_SECONDS

    @classmethod
    async def bounded_connect(cls, *args: Any, operation_timeout: float, **kwargs: Any) -> BoundedConnection:
        connection = await cls.connect(*args, **kwargs)
        connection.operation_timeout = operation_timeout
        return connection

    async def wait(self, gen: PQGen[Any], interval: float = 0.1, timeout: float | None = None) -> Any:
        watchdog = asyncio.get_running_loop().call_later(self.operation_timeout, self._give_up)
        try:
            return await super().wait(gen, interval, timeout)
        finally:
            watchdog.cancel()

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:  # noqa: ARG002 - psycopg's signature
        self.sever()

    def _give_up(self) -> None:
        logger.warning("PostgreSQL did not answer within %g s: connection dropped", self.operation_timeout)
        self.sever()

    def sever(self) -> None:
        """Shut the socket down under libpq (a duplicate descriptor: libpq still owns and closes its own)."""
        with contextlib.suppress(OSError, psycopg.Error):
            with socket.socket(fileno=os.dup(self.pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: it makes the statements after it wait for another process's write lock.
    # WAL lets readers run beside the writer, and stays set in the file: it is switched on only when it is
    # not, since asking for it takes an exclusive lock, which fails at once (no busy wait) while another
    # process writes, failing this connection's first request. NORMAL is durable across process crashes
    # in WAL mode; foreign keys make ON DELETE CASCADE work.
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def failure_name(error: BaseException) -> str:
    """An exception's type, with the driver's error code when it carries one: SQLite's name
    (``SQLITE_FULL`` for a full disk, ``SQLITE_BUSY`` for a lock held past busy_timeout) or PostgreSQL's
    SQLSTATE (``57014`` for a statement timeout). It tells an operator which fault a 503 was, where the
    type alone (``OperationalError``) does not; the message is never used: it may quote SQL or values."""
    driver_error = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(driver_error, "sqlite_errorname", None) or getattr(driver_error, "sqlstate", None)
    known = isinstance(code, str) and DRIVER_ERROR_CODE.fullmatch(code) is not None
    return f"{type(error).__name__} ({code})" if known else type(error).__name__


class UncancelledCheck(Generic[T]):
    """A database check a caller waits for within a bound, without ever cancelling it.

    Cancelling a coroutine while it holds an SQLite connection is not safe with SQLAlchemy's aiosqlite
    adapter: the connection's shielded close can wait forever for aiosqlite's worker thread, holding the
    pool's only slot (``PAR_SQLITE_POOL_SIZE`` is 1) and sometimes SQLite's write lock, so every later
    request would be answered 503 until a restart. So a caller that runs out of time stops waiting, and
    the check goes on to its end, bounded by the database's own timeouts (busy_timeout, the pool and
    statement timeouts). One run at a time: callers that come while it runs share it, so probes that
    time out never pile up connections."""

    def __init__(self, check: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._check = check
        self._running: asyncio.Task[T] | None = None

    async def within(self, seconds: float) -> T:
        """The check's result (or its exception); TimeoutError if it has not ended within ``seconds``."""
        task, loop = self._running, asyncio.get_running_loop()
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._running = loop.create_task(self._check())
            task.add_done_callback(_retrieve_exception)  # one nobody waited for any more is not an error
        async with asyncio.timeout(seconds):
            return await asyncio.shield(task)


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class RequestConnection:
    """One request's connection, checked out on first use (in autocommit mode) and given back as soon
    as the request is done with it, or when it ends (``async with``).

    A push that finds its service and client cached and authenticates with a secret never checks one
    out: its row goes through the batched writer (``app.db.pushed_requests``). A push that must read or
    record something (a cache miss, a replay entry) gives the connection back before waiting for the
    writer, so no request waits for a second pooled connection while holding one.

    ``engine`` is the autocommit engine (:func:`autocommit`): the isolation level is set as part of the
    checkout, not by a second call through SQLAlchemy's greenlet adapter.
    """

    __slots__ = ("_connection", "_driver", "_engine")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._driver: DriverStatements | None = None

    async def __aenter__(self) -> RequestConnection:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.release()

    async def get(self) -> AsyncConnection:
        if self._connection is None:
            self._connection = await self._engine.connect()
        return self._connection

    async def driver(self) -> DriverStatements | None:
        """The connection's PostgreSQL statements sent on its psycopg connection (``DriverStatements``);
        None on another database, whose statements go through SQLAlchemy."""
        if self._driver is None and self._engine.dialect.name == "postgresql":
            self._driver = await DriverStatements.of(await self.get())
        return self._driver

    async def release(self) -> None:
        if self._connection is not None:
            connection, self._connection, self._driver = self._connection, None, None
            await connection.close()


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The engine, its pool shared, checking connections out in autocommit mode (each statement commits
    by itself); the pool gives them back to other users in the default mode."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


class DriverStatements:
    """Statements of the hot paths sent on the psycopg connection under a pooled PostgreSQL connection,
    not through SQLAlchemy's ``AsyncConnection`` (whose greenlet adapter and result machinery cost a
    push more CPU than the database spent on its INSERT: bench/RESULTS.md).

    What SQLAlchemy would do around a statement is kept: a driver error is raised as SQLAlchemy's own
    (``IntegrityError``, ``OperationalError``...: the API answers them as before), without parameter
    values; a connection the error (or a cancellation) left unusable is invalidated, so it never goes
    back to the pool; and the engine's events still see each statement: cursor-execute before and after
    it, handle-error when it fails (their execution context a ``DriverExecution``: SQLAlchemy made none).
    """

    __slots__ = ("_connection", "_sync", "driver")

    def __init__(self, connection: AsyncConnection, driver: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection
        sync = connection.sync_connection
        assert sync is not None  # noqa: S101 - a connected AsyncConnection has one
        self._sync = sync
        self.driver = driver

    @classmethod
    async def of(cls, connection: AsyncConnection) -> DriverStatements:
        raw = await connection.get_raw_connection()
        return cls(connection, raw.driver_connection)  # type: ignore[arg-type]  # the psycopg dialect's

    async def first(self, statement: DriverStatement, parameters: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a built statement (``driver_statement``), or None."""
        cursor = await self.execute(statement.sql, {**statement.constants, **parameters})
        row: tuple[Any, ...] | None = await cursor.fetchone()
        return row

    async def run(self, statement: DriverStatement, parameters: dict[str, Any]) -> int:
        """Run a built statement (``driver_statement``): the rows it changed."""
        cursor = await self.execute(statement.sql, {**statement.constants, **parameters})
        return cursor.rowcount

    async def execute(self, statement: str, parameters: Sequence[Any] | Mapping[str, Any]) -> psycopg.AsyncCursor[Any]:
        """Run one statement (autocommit: committed once it returns); its cursor holds any rows."""
        sync = self._sync
        dispatch = sync.dispatch if sync._has_events or sync.engine._has_events else None  # noqa: SLF001
        cursor = self.driver.cursor()
        execution = None
        if dispatch is not None:
            execution = DriverExecution()
            for listener in dispatch.before_cursor_execute:
                listener(sync, cursor, statement, parameters, execution, False)
        try:
            await cursor.execute(statement, parameters)
        except BaseException as error:
            await self._failed(statement, parameters, error, cursor, execution)
            raise
        if dispatch is not None:
            for listener in dispatch.after_cursor_execute:
                listener(sync, cursor, statement, parameters, execution, False)
        return cursor

    async def _failed(
        self,
        statement: str,
        parameters: Sequence[Any] | Mapping[str, Any],
        error: BaseException,
        cursor: psycopg.AsyncCursor[Any],
        execution: DriverExecution | None,
    ) -> None:
        """As SQLAlchemy handles a failed statement: the connection invalidated if it is unusable (or the
        statement was interrupted), the engine's handle-error listeners told (their return values, which
        could replace the error, are not used), a driver error re-raised as SQLAlchemy's."""
        interrupted = not isinstance(error, Exception)  # a cancellation: the connection was severed
        invalidated = interrupted or self.driver.broken or self.driver.closed
        if invalidated:
            await self._connection.invalidate()
        translated = (
            DBAPIError.instance(
                statement,
                parameters,
                error,
                psycopg.Error,
                hide_parameters=True,
                connection_invalidated=invalidated,
                dialect=self._connection.dialect,
            )
            if isinstance(error, psycopg.Error)
            else None
        )
        if execution is not None:
            sync = self._sync
            context = ExceptionContextImpl(
                exception=error,
                sqlalchemy_exception=translated,
                engine=sync.engine,
                dialect=sync.dialect,
                connection=sync,
                cursor=cursor,  # type: ignore[arg-type]  # psycopg's async cursor, not a DB-API one
                statement=statement,
                parameters=parameters,
                context=execution,  # type: ignore[arg-type]  # no ExecutionContext: see DriverExecution
                is_disconnect=invalidated,
                invalidate_pool_on_disconnect=False,
                is_pre_ping=False,
            )
            for listener in sync.dialect.dispatch.handle_error:  # where SQLAlchemy keeps them
                listener(context)
        if translated is not None:
            raise translated from error


class DriverExecution:
    """The execution context the engine's events get for a ``DriverStatements`` statement: SQLAlchemy made
    none, and a listener may keep what it needs on it (a tracing span, ``app.tracing``)."""


class DriverStatement(NamedTuple):
    """A Core statement as SQLAlchemy's psycopg dialect sends it (``driver_statement``)."""

    sql: str
    constants: dict[str, Any]  # the values the statement itself binds (``.values(state="consumed")``)


def driver_statement(statement: ClauseElement) -> DriverStatement:
    """The statement's SQL for ``DriverStatements``, compiled once, exactly as SQLAlchemy would send it to
    psycopg (named parameters, the same casts)."""
    compiled = statement.compile(dialect=PostgresPsycopgDialect())  # type: ignore[no-untyped-call]
    # A parameter given at each execution has no value here (None); so a constant must not be None either.
    return DriverStatement(str(compiled), {name: value for name, value in compiled.params.items() if value is not None})
