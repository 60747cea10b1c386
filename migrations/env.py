"""Alembic environment: async engines, batch mode on SQLite, URL from settings."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.engine import prepare_sqlite_file
from app.db.models import Base
from app.settings import Settings

config = context.config
if config.config_file_name is not None:  # alembic.ini (developers); par-server builds its config in code
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def database_url() -> str:
    """An explicit ``sqlalchemy.url`` (set by ``par-server migrate`` and tests) wins over settings."""
    return config.get_main_option("sqlalchemy.url") or Settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=database_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    prepare_sqlite_file(database_url())  # as the server's engine does: owner-only
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # The file is in WAL mode from the start (it stays set in the file): switching to it takes an
            # exclusive lock, which the server's first connection would otherwise need while others write.
            await connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            await connection.commit()  # ends the statement's implicit transaction: alembic begins its own
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
