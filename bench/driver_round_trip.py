"""CPU of one PostgreSQL round trip in this process, by driver: psycopg (par-server's) and asyncpg.

    .venv/bin/python bench/driver_round_trip.py [--dsn postgresql://postgres@127.0.0.1:5432/test] [--calls N]

Each driver, on one connection under uvloop (as par-server is served), sends N times a prepared
``SELECT $1::text, now()`` and reads its row; psycopg also sends an empty statement, as SQLAlchemy's pool
does to check a connection before lending it. It prints the process CPU (user and system) per call,
three rounds in rotation. asyncpg is not a dependency of par-server: install it beside the venv to
compare (``pip install --target /tmp/asyncpg asyncpg`` and ``PYTHONPATH=/tmp/asyncpg``); without it only
psycopg is measured. The figures are in bench/RESULTS.md ("What a database round trip costs").
"""

from __future__ import annotations

import argparse
import importlib
import resource
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import uvloop


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_call_us(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    for _ in range(min(calls, 200)):  # warm: statements prepared, caches filled
        await call()
    start = cpu_seconds()
    for _ in range(calls):
        await call()
    return 1e6 * (cpu_seconds() - start) / calls


async def main(dsn: str, calls: int) -> None:
    measured: dict[str, Callable[[], Awaitable[Any]]] = {}
    connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    async def psycopg_select() -> Any:
        cursor = await connection.execute("SELECT %s::text, now()", ("abc",), prepare=True)
        return await cursor.fetchone()

    async def psycopg_ping() -> Any:
        return await connection.execute(";")

    measured["psycopg select"] = psycopg_select
    measured["psycopg empty statement (the pool's ping)"] = psycopg_ping
    try:
        asyncpg: Any = importlib.import_module("asyncpg")
    except ImportError:
        print("asyncpg is not installed: psycopg only")
    else:
        other = await asyncpg.connect(dsn)

        async def asyncpg_select() -> Any:
            return await other.fetchrow("SELECT $1::text, now()", "abc")

        measured["asyncpg select"] = asyncpg_select
    for round_number in range(1, 4):
        figures = [f"{name}: {await per_call_us(call, calls):.1f} us" for name, call in measured.items()]
        print(f"round {round_number}: " + "; ".join(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--calls", type=int, default=5000)
    arguments = parser.parse_args()
    uvloop.run(main(arguments.dsn, arguments.calls))
