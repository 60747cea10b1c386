"""``app.db.engine``: what a PostgreSQL connection is bounded by (README, "Faults"). The behaviour on a
stopped or partitioned server is in tests/faults/test_database_faults.py."""

from __future__ import annotations

import pytest

from app.db.engine import BoundedConnection, create_engine_from_settings
from tests.conftest import make_settings

pytestmark = pytest.mark.postgresql


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
