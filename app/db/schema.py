"""Where the Alembic migrations are, and whether a database is at their head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

_PACKAGE = Path(__file__).resolve().parents[1]


def migrations_directory() -> Path:
    """The Alembic scripts: ``app/migrations`` in an installed wheel, ``migrations/`` in a source checkout.

    The wheel's copy is built from the checkout's ``migrations/`` (pyproject.toml maps the package
    ``app.migrations`` onto that folder), so both run the same scripts.
    """
    for candidate in (_PACKAGE / "migrations", _PACKAGE.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"the migration scripts are missing: neither {_PACKAGE}/migrations nor a checkout's")


def alembic_config(database_url: str | None = None) -> Config:
    """Alembic's configuration for upgrades and checks, built in code: no alembic.ini is needed at run time.

    The top-level alembic.ini is for developers writing revisions; it points at the same scripts.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.set_main_option("path_separator", "os")
    if database_url is not None:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@dataclass(frozen=True)
class SchemaRevisions:
    """The revisions of the migrations this code ships: their heads, and every one of them."""

    heads: frozenset[str]
    known: frozenset[str]

    def compare(self, database: frozenset[str]) -> str:
        """Where a database's schema (its current revisions) stands for this code:

        - ``current``: at this code's heads;
        - ``ahead``: at revisions this code does not know, so a newer release has migrated it. Migrations
          add before they remove, so the running release still works on it, and a rolling upgrade keeps
          the old replicas serving while the new ones start;
        - ``pending``: behind this code's heads (or not migrated at all): ``par-server migrate`` is due.
        """
        if database == self.heads:
            return "current"
        if database and self.heads and not database & self.known:
            return "ahead"
        return "pending"


def schema_revisions() -> SchemaRevisions:
    scripts = ScriptDirectory.from_config(alembic_config())
    return SchemaRevisions(
        heads=frozenset(scripts.get_heads()),
        known=frozenset(script.revision for script in scripts.walk_revisions()),
    )


def current_revisions(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


async def database_revisions(engine: AsyncEngine) -> frozenset[str]:
    """``current_revisions``, read on a connection of ``engine``."""
    async with engine.connect() as connection:
        return await connection.run_sync(current_revisions)
