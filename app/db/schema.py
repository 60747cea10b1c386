"""Where the Alembic migrations are, and whether a database is at their head."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection


def alembic_config_path() -> Path:
    """alembic.ini in the working directory (the container image) or next to the source (a checkout)."""
    for candidate in (Path.cwd() / "alembic.ini", Path(__file__).resolve().parents[2] / "alembic.ini"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("alembic.ini not found; run from the directory that holds it")


def head_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(Config(str(alembic_config_path()))).get_heads())


def current_revisions(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())
