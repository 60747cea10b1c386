"""``app.db.engine``: what a PostgreSQL connection is bounded by (README, "Faults"), and how a database
failure is named in the logs. The behaviour on a stopped or partitioned server is in
tests/faults/test_database_faults.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError, OperationalError

from app.db.engine import (
    BoundedConnection,
    DriverExecution,
    DriverStatements,
    UncancelledCheck,
    autocommit,
    create_engine_from_settings,
    failure_name,
)
from tests.conftest import make_settings


async def test_a_failure_is_named_with_the_driver_s_error_code(database_url: str) -> None:
    """A write that waits for another transaction's lock past its bound (SQLite's busy_timeout,
    PostgreSQL's lock_timeout) is named by its type and the driver's code, which tells it from a full
    disk (SQLITE_FULL) or a statement timeout (57014); no message text, which may quote SQL."""
    engine = create_engine_from_settings(make_settings(database_url, sqlite_pool_size=2))
    sqlite = engine.dialect.name == "sqlite"
    take_lock = "UPDATE service SET modified_at = modified_at" if sqlite else "LOCK TABLE service"
    short_wait = "PRAGMA busy_timeout = 50" if sqlite else "SET lock_timeout = '50ms'"
    try:
        async with engine.connect() as holder, engine.connect() as waiter:
            await holder.begin()
            await holder.exec_driver_sql(take_lock)
            await waiter.exec_driver_sql(short_wait)
            with pytest.raises(OperationalError) as raised:
                await waiter.exec_driver_sql("DELETE FROM service")
            await holder.rollback()
        expected = "OperationalError (SQLITE_BUSY)" if sqlite else "OperationalError (55P03)"
        assert failure_name(raised.value) == expected
        assert failure_name(TimeoutError()) == "TimeoutError"
    finally:
        await engine.dispose()


async def test_an_uncancelled_check_outlives_its_callers_and_is_shared() -> None:
    """Callers that run out of time stop waiting; the check goes on, once for all who came meanwhile,
    and the next caller after it ended starts a new one."""
    release = asyncio.Event()
    runs: list[str] = []

    async def check() -> int:
        runs.append("started")
        try:
            await release.wait()
        except asyncio.CancelledError:
            runs.append("cancelled")
            raise
        runs.append("ended")
        return len(runs)

    shared = UncancelledCheck(check)
    outcomes = await asyncio.gather(*(shared.within(0.05) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, TimeoutError) for outcome in outcomes)
    waiting = asyncio.create_task(shared.within(5))
    await asyncio.sleep(0.01)
    release.set()
    assert await waiting == 2  # the first run, which nobody cancelled: started, ended
    assert runs == ["started", "ended"]
    assert await shared.within(5) == 4  # a new run


async def test_an_uncancelled_check_s_failure_reaches_its_caller() -> None:
    async def check() -> None:
        raise OperationalError("SELECT 1", {}, Exception("gone"))

    with pytest.raises(OperationalError):
        await UncancelledCheck(check).within(1)


@pytest.mark.postgresql
async def test_postgres_connections_carry_the_client_side_bounds(postgres_url: str) -> None:
    """Each connection is a BoundedConnection with PAR_DB_CLIENT_TIMEOUT_SECONDS, and libpq has TCP
    keepalives and a TCP user timeout from it (a partition ends in the kernel too), besides the
    connect timeout and the server-side statement and lock timeouts."""
    settings = make_settings(postgres_url, db_client_timeout_seconds=9, db_statement_timeout_seconds=4)
    engine = create_engine_from_settings(settings)
    try:
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert isinstance(raw, BoundedConnection)
            assert raw.operation_timeout == 9
            parameters = raw.info.get_parameters()
            assert parameters["tcp_user_timeout"] == "9000"
            assert parameters["keepalives"] == "1"
            assert (parameters["keepalives_idle"], parameters["keepalives_interval"]) == ("9", "3")
            assert parameters["connect_timeout"] == str(settings.db_connect_timeout_seconds)
            timeouts = await connection.exec_driver_sql(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
            )
            assert timeouts.one() == ("4s", "4s")
    finally:
        await engine.dispose()


@pytest.mark.postgresql
async def test_driver_statements_fail_as_sqlalchemy_statements_do(postgres_url: str) -> None:
    """A statement sent on the driver connection (DriverStatements) fails with SQLAlchemy's error, its
    parameters hidden; an interrupted one leaves its connection invalidated, never back in the pool."""
    engine = create_engine_from_settings(make_settings(postgres_url))
    try:
        async with autocommit(engine).connect() as connection:
            statements = await DriverStatements.of(connection)
            with pytest.raises(IntegrityError) as refused:
                await statements.execute("INSERT INTO replay_entry (key, expires_at) VALUES (%s, NULL)", ("secret",))
            assert "[SQL parameters hidden due to hide_parameters=True]" in str(refused.value)
            assert not connection.invalidated
            assert (await (await statements.execute("SELECT 1", ())).fetchone()) == (1,)
            sleeping = asyncio.create_task(statements.execute("SELECT pg_sleep(5)", ()))
            await asyncio.sleep(0.2)
            sleeping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sleeping
            assert connection.invalidated
        async with autocommit(engine).connect() as connection:
            statements = await DriverStatements.of(connection)
            with pytest.raises(OperationalError):  # the server ends the connection
                await statements.execute("SELECT pg_terminate_backend(pg_backend_pid())", ())
            assert connection.invalidated
    finally:
        await engine.dispose()


@pytest.mark.postgresql
async def test_driver_statements_reach_the_engine_s_events_with_an_execution_of_their_own(postgres_url: str) -> None:
    """Listeners (such as tracing's) see a driver statement before and after it runs, or when it fails, with
    one ``DriverExecution`` per statement to keep what they need on."""
    engine = create_engine_from_settings(make_settings(postgres_url))
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        context.mark = statement
        seen.append(("before", context))

    def after(_conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
        seen.append(("after", context))

    def failed(context: ExceptionContext) -> None:
        seen.append(("error", context.execution_context))
        assert isinstance(context.sqlalchemy_exception, IntegrityError)
        assert context.statement is not None and context.statement.startswith("INSERT")

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    event.listen(engine.sync_engine, "handle_error", failed)
    try:
        async with autocommit(engine).connect() as connection:
            statements = await DriverStatements.of(connection)
            await statements.execute("SELECT 1", ())
            with pytest.raises(IntegrityError):
                await statements.execute("INSERT INTO replay_entry (key, expires_at) VALUES (%s, NULL)", ("k",))
    finally:
        await engine.dispose()
    assert [kind for kind, _ in seen] == ["before", "after", "before", "error"]
    assert all(isinstance(context, DriverExecution) for _, context in seen)
    assert seen[0][1] is seen[1][1] and seen[2][1] is seen[3][1] and seen[0][1] is not seen[2][1]
    assert seen[0][1].mark == "SELECT 1"
