"""The two databases every storage-touching test runs on.

SQLite: a migrated template file, copied per test. PostgreSQL: a dedicated database, migrated once per
session and truncated per test. ``PAR_TEST_POSTGRES_URL`` points at the server (default: the local
one); with ``PAR_TEST_REQUIRE_POSTGRES=1`` (as in CI) an unreachable server fails the run instead of
skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from app.cli import run_migrations
from app.settings import Settings

POSTGRES_URL = os.environ.get("PAR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/par_server_test")
REQUIRE_POSTGRES = os.environ.get("PAR_TEST_REQUIRE_POSTGRES") == "1"
TABLES = ("pushed_request", "client", "service_access_token", "service", "replay_entry", "rate_limit_counter")


def libpq_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def ensure_postgres_database(url: str) -> None:
    """Create the test database if missing; skip (or fail, in CI) when the server is unreachable."""
    name = make_url(url).database
    try:
        with psycopg.connect(libpq_dsn(url, "postgres"), autocommit=True, connect_timeout=3) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        message = f"PostgreSQL is not reachable at {make_url(url).render_as_string()}: {error}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)


def session_database_url(url: str) -> str:
    """A database of this test session's own, so concurrent runs never truncate each other's data."""
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{os.getpid()}").render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    with psycopg.connect(libpq_dsn(url, "postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def truncate_postgres(url: str) -> None:
    with psycopg.connect(libpq_dsn(url), autocommit=True) as connection:
        connection.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")


def migrated_sqlite_template(directory: Path) -> Path:
    template = directory / "template.db"
    run_migrations(Settings(database_url=f"sqlite+aiosqlite:///{template}"))
    return template


def fresh_sqlite(template: Path, directory: Path) -> str:
    target = directory / "par.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"
