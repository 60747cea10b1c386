"""Where the Alembic migrations are, and whether a database is at their head."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

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


def head_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())
