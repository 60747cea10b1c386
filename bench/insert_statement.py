"""The PostgreSQL batch INSERT of pushed requests alone: CPU per row of each way to write a batch.

    .venv/bin/python bench/insert_statement.py --database-url postgresql+psycopg://.../bench_x [--batches N]

Each form writes the same rows as the batch writer does (``app/db/pushed_requests.py``: one statement per
batch on a held autocommit connection, on its psycopg connection), for batches of 1, 16
and 64 rows. It prints, per row, the CPU of this process (building the parameter, SQLAlchemy, psycopg)
and of the PostgreSQL backend serving the connection (read from ``/proc``, so the database must run on
this machine). The forms are run in rotation, several rounds, and the median per form is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.cli import run_migrations
from app.db.models import UTCDateTime
from app.db.pushed_requests import INSERT_PUSHED_REQUEST, POSTGRESQL_INSERT_PUSHED_REQUESTS, json_rows
from app.settings import Settings

Row = dict[str, Any]
_UTC_DATETIME = UTCDateTime()
SERVICE_ID, CLIENT_ID = 9_000_000_001, 9_000_000_002

RECORDSET = POSTGRESQL_INSERT_PUSHED_REQUESTS  # the writer's statement

ARRAY_EPOCH = """
INSERT INTO pushed_request
    (reference_hash, service_id, client_id, parameters, request, state, created_at, expires_at)
SELECT row->>0, (row->>1)::bigint, (row->>2)::bigint, row->>3, row->4, row->>5,
    to_timestamp((row->>6)::float8), to_timestamp((row->>7)::float8)
FROM json_array_elements(%s::json) AS batch(row)
"""

ARRAY_ISO = """
INSERT INTO pushed_request
    (reference_hash, service_id, client_id, parameters, request, state, created_at, expires_at)
SELECT row->>0, (row->>1)::bigint, (row->>2)::bigint, row->>3, row->4, row->>5,
    (row->>6)::timestamptz, (row->>7)::timestamptz
FROM json_array_elements(%s::json) AS batch(row)
"""

ARRAY_MICROSECONDS = """
INSERT INTO pushed_request
    (reference_hash, service_id, client_id, parameters, request, state, created_at, expires_at)
SELECT row->>0, (row->>1)::bigint, (row->>2)::bigint, row->>3, row->4, row->>5,
    timestamptz 'epoch' + (row->>6)::bigint * interval '1 microsecond',
    timestamptz 'epoch' + (row->>7)::bigint * interval '1 microsecond'
FROM json_array_elements(%s::json) AS batch(row)
"""

ARRAY_EPOCH_REQUEST_TEXT = """
INSERT INTO pushed_request
    (reference_hash, service_id, client_id, parameters, request, state, created_at, expires_at)
SELECT row->>0, (row->>1)::bigint, (row->>2)::bigint, row->>3, (row->>4)::json, row->>5,
    to_timestamp((row->>6)::float8), to_timestamp((row->>7)::float8)
FROM json_array_elements(%s::json) AS batch(row)
"""

RECORDSET_EPOCH = """
INSERT INTO pushed_request
    (reference_hash, service_id, client_id, parameters, request, state, created_at, expires_at)
SELECT reference_hash, service_id, client_id, parameters, request, state, to_timestamp(created_at),
    to_timestamp(expires_at)
FROM json_to_recordset(%s::json) AS batch(
    reference_hash varchar(64), service_id bigint, client_id bigint, parameters text, request json,
    state varchar(20), created_at float8, expires_at float8
)
"""

# For comparison only: jsonb parses the document once, but re-serialises the request (key order,
# spacing, duplicate keys) and so does not store it as written.
ARRAY_EPOCH_JSONB = """
INSERT INTO pushed_request
    (reference_hash, service_id, client_id, parameters, request, state, created_at, expires_at)
SELECT row->>0, (row->>1)::bigint, (row->>2)::bigint, row->>3, (row->4)::json, row->>5,
    to_timestamp((row->>6)::float8), to_timestamp((row->>7)::float8)
FROM jsonb_array_elements(%s::jsonb) AS batch(row)
"""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def iso(moment: datetime) -> str:
    return _UTC_DATETIME.process_bind_param(moment, DIALECT).isoformat()  # type: ignore[union-attr]


def epoch(moment: datetime) -> float:
    return _UTC_DATETIME.process_bind_param(moment, DIALECT).timestamp()  # type: ignore[union-attr]


def microseconds(moment: datetime) -> int:
    return (_UTC_DATETIME.process_bind_param(moment, DIALECT) - EPOCH) // MICROSECOND  # type: ignore[operator]


def objects(rows: list[Row]) -> str:
    """The writer's own parameter."""
    return json_rows(rows)


def objects_epoch(rows: list[Row]) -> str:
    return json.dumps([{**r, "created_at": epoch(r["created_at"]), "expires_at": epoch(r["expires_at"])} for r in rows])


def arrays(time_of: Callable[[datetime], object]) -> Callable[[list[Row]], str]:
    def encode(rows: list[Row]) -> str:
        return json.dumps(
            [
                [
                    r["reference_hash"],
                    r["service_id"],
                    r["client_id"],
                    r["parameters"],
                    r["request"],
                    r["state"],
                    time_of(r["created_at"]),
                    time_of(r["expires_at"]),
                ]
                for r in rows
            ]
        )

    return encode


Write = Callable[[AsyncConnection, list[Row]], Awaitable[object]]


def one_statement(statement: str, encode: Callable[[list[Row]], str]) -> Write:
    """A batch as one statement with one JSON parameter (the writer's way on PostgreSQL)."""

    async def write(connection: AsyncConnection, rows: list[Row]) -> None:
        await connection.exec_driver_sql(statement, (encode(rows),))

    return write


async def core_insert(connection: AsyncConnection, rows: list[Row]) -> None:
    """A batch through SQLAlchemy Core's insert (the writer's way on SQLite): executemany, which the
    psycopg dialect sends as insertmanyvalues."""
    await connection.execute(INSERT_PUSHED_REQUEST, rows)


FORMS: dict[str, Write] = {
    "json_to_recordset, objects, ISO times (now)": one_statement(RECORDSET, objects),
    "json_to_recordset, objects, epoch float": one_statement(RECORDSET_EPOCH, objects_epoch),
    "json_array_elements, arrays, epoch float": one_statement(ARRAY_EPOCH, arrays(epoch)),
    "jsonb_array_elements, arrays, epoch float (inexact)": one_statement(ARRAY_EPOCH_JSONB, arrays(epoch)),
    "json_array_elements, arrays, epoch float, (->>)::json": one_statement(ARRAY_EPOCH_REQUEST_TEXT, arrays(epoch)),
    "json_array_elements, arrays, ISO times": one_statement(ARRAY_ISO, arrays(iso)),
    "json_array_elements, arrays, integer microseconds": one_statement(ARRAY_MICROSECONDS, arrays(microseconds)),
    "SQLAlchemy Core insert, executemany": core_insert,
}
DIALECT: Any = None


def new_rows(count: int) -> list[Row]:
    now = datetime.now(UTC)
    return [
        {
            "reference_hash": os.urandom(32).hex(),
            "service_id": SERVICE_ID,
            "client_id": CLIENT_ID,
            "parameters": "response_type=code&redirect_uri=https%3A%2F%2Fclient.example.org%2Fcb&scope=openid"
            "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=bench-1",
            "request": {
                "response_type": "code",
                "redirect_uri": "https://client.example.org/cb",
                "scope": "openid",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "code_challenge_method": "S256",
                "state": "bench-1",
                "client_id": str(CLIENT_ID),
            },
            "state": "pushed",
            "created_at": now,
            "expires_at": now + timedelta(seconds=60),
        }
        for _ in range(count)
    ]


def backend_cpu(pid: int) -> float:
    """The backend's CPU time in seconds (``/proc/PID/schedstat``: nanoseconds on a CPU)."""
    with open(f"/proc/{pid}/schedstat") as schedstat:
        return int(schedstat.read().split()[0]) / 1e9


async def measure(
    connection: AsyncConnection, backend: int, write: Write, size: int, batches: int
) -> tuple[float, float]:
    prepared = [new_rows(size) for _ in range(batches)]
    started_cpu, started_backend = time.process_time(), backend_cpu(backend)
    for rows in prepared:
        await write(connection, rows)
    rows_written = size * batches
    return (
        (time.process_time() - started_cpu) / rows_written * 1e6,
        (backend_cpu(backend) - started_backend) / rows_written * 1e6,
    )


async def main(url: str, batches: int, rounds: int) -> None:
    global DIALECT
    engine = create_async_engine(url)
    DIALECT = engine.dialect
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        now = datetime.now(UTC)
        await connection.exec_driver_sql("DELETE FROM service WHERE id = %s", (SERVICE_ID,))
        await connection.exec_driver_sql(
            "INSERT INTO service (id, name, client_assertion_audience_policy, supported_authorization_details_types,"
            " request_object_required, dpop_nonce_required, fapi_modes, allow_unregistered_pushed_redirect_uris,"
            " consume_request_uri_on_resolve, par_required, supported_scopes, supported_response_types,"
            " supported_grant_types, supported_token_auth_methods, pkce_required, pkce_s256_required, created_at,"
            " modified_at) VALUES (%s, 'b', 'RFC9126', '[]', false, false, '[]', false, false, false, '[]', '[]',"
            " '[]', '[]', false, false, %s, %s)",
            (SERVICE_ID, now, now),
        )
        await connection.exec_driver_sql(
            "INSERT INTO client (id, service_id, client_type, token_auth_method, redirect_uris, response_types,"
            " grant_types, par_required, request_object_required, pkce_required, pkce_s256_required, dpop_required,"
            " authorization_details_types, created_at, modified_at) VALUES (%s, %s, 'confidential',"
            " 'client_secret_basic', '[]', '[]', '[]', false, false, false, false, false, '[]', %s, %s)",
            (CLIENT_ID, SERVICE_ID, now, now),
        )
        backend = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
        for size in (1, 16, 64):
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in FORMS}
            for _ in range(rounds):
                for name, write in FORMS.items():
                    await measure(connection, backend, write, size, 20)  # warm-up
                    results[name].append(await measure(connection, backend, write, size, batches))
            print(f"batch of {size}, {rounds} rounds of {batches} batches: us of CPU per row, median [min-max]")
            for name, measured in results.items():
                ours, theirs = [m[0] for m in measured], [m[1] for m in measured]
                print(
                    f"  {name:62s} client {statistics.median(ours):6.1f} [{min(ours):.1f}-{max(ours):.1f}]"
                    f"  server {statistics.median(theirs):6.1f} [{min(theirs):.1f}-{max(theirs):.1f}]"
                    f"  sum {statistics.median(o + t for o, t in measured):6.1f}"
                )
        await connection.exec_driver_sql("DELETE FROM service WHERE id = %s", (SERVICE_ID,))
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parsed = parser.parse_args()
    run_migrations(Settings(database_url=parsed.database_url, admin_token="x" * 40, pepper="y" * 40))
    asyncio.run(main(parsed.database_url, parsed.batches, parsed.rounds))
