"""Fill the store with live pushed requests before a benchmark run (the target: throughput with
1,000,000 live requests within 10% of an empty store; bench/RESULTS.md).

    python bench/fill.py COUNT SERVICE_ID CLIENT_ID      (PAR_DATABASE_URL as for the server)

Rows go in through the app's own INSERT statement, in batches, each a realistic request that expires
in a day (so the purge leaves them alone).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from app.db.engine import create_engine_from_settings
from app.db.pushed_requests import INSERT_PUSHED_REQUEST
from app.settings import Settings

BATCH = 5_000
PARAMETERS = (
    "response_type=code&client_id={client}&redirect_uri=https%3A%2F%2Fclient.example.org%2Fcb&scope=openid"
    "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=fill-{n}"
)


async def fill(count: int, service_id: int, client_id: int) -> None:
    engine = create_engine_from_settings(Settings())
    now = datetime.now(UTC)
    started = time.monotonic()
    try:
        for first in range(0, count, BATCH):
            rows = [
                {
                    "reference_hash": os.urandom(32).hex(),
                    "service_id": service_id,
                    "client_id": client_id,
                    "parameters": PARAMETERS.format(client=client_id, n=n),
                    "request": {"response_type": "code", "scope": "openid", "state": f"fill-{n}"},
                    "state": "pushed",
                    "created_at": now,
                    "expires_at": now + timedelta(days=1),
                }
                for n in range(first, min(first + BATCH, count))
            ]
            async with engine.begin() as connection:
                await connection.execute(INSERT_PUSHED_REQUEST, rows)
    finally:
        await engine.dispose()
    print(f"fill: {count} live pushed requests in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(fill(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
