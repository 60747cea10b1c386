"""Memory of a flood of distinct claimed client ids: ``python bench/rate_limit_memory.py [PORT]``.

Starts ``par-server demo`` (default settings, embedded SQLite) in a temporary directory, pushes 3,000 and
then 6,000 more requests to its RFC 9126 endpoint, each naming a distinct 16 KB ``client_id`` with no
credential, from one address, and prints the answers and the server's resident memory (VmRSS) before,
between and after. Figures: RESULTS.md, "Rate-limit memory".
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CONCURRENCY = 16
CLIENT_ID_BYTES = 16_000  # under PAR_MAX_PARAMETER_BYTES (16 KiB), so each is read and counted


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def flood(endpoint: str, first: int, count: int) -> collections.Counter[int]:
    statuses: collections.Counter[int] = collections.Counter()
    numbers = iter(range(first, first + count))
    async with httpx.AsyncClient(timeout=60) as http:

        async def worker() -> None:
            for number in numbers:
                client_id = f"{number:08d}".ljust(CLIENT_ID_BYTES, "x")
                body = {"response_type": "code", "client_id": client_id, "redirect_uri": "https://x.example/cb"}
                statuses[(await http.post(endpoint, data=body)).status_code] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18500
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PAR_DATA_DIR": data, "PAR_DATABASE_URL": f"sqlite:///{data}/par.db"}
        server = subprocess.Popen(
            [sys.executable, "-c", "from app.cli import main; main()", "demo", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            service_id = next(
                line.split("=", 1)[1].strip("'")
                for line in (Path(data) / "demo.env").read_text().splitlines()
                if line.startswith("export PAR_DEMO_SERVICE_ID=")
            )
            endpoint = f"http://127.0.0.1:{port}/services/{service_id}/par"
            print(f"start: {rss_mb(server.pid):.0f} MB")
            first = asyncio.run(flood(endpoint, 0, 3000))
            print(f"after 3,000: {rss_mb(server.pid):.0f} MB, answers {dict(first)}")
            more = asyncio.run(flood(endpoint, 3000, 6000))
            print(f"after 6,000 more: {rss_mb(server.pid):.0f} MB, answers {dict(more)}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
