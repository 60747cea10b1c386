"""CPU per push, in process: the app driven through ASGI with no HTTP server, network or load generator.

    .venv/bin/python bench/profile_push.py [--database-url URL] [--pushes N] [--concurrency C] [--profile OUT]
        [--operation push|resolve|consume]

It seeds a service and a client_secret_basic client through the management API, then sends N pushes
(the body of bench/par.lua: PKCE S256 and a unique state), C at a time, and prints the process CPU per
push. With ``--operation resolve`` or ``consume`` it pushes the N requests first, unmeasured, then
measures the backend API's first resolve, or consume, of each (as bench/flow.lua drives them); the
figure is then per call (``cpu_us_per_push`` still names it). With --profile it writes a cProfile of
the measured calls to OUT (read it with ``python -m pstats OUT`` or snakeviz). The figure leaves out
uvicorn's HTTP parsing, which `bash bench/run.sh` measures with the rest; it is the repeatable number to
compare changes with. The app is traced when the OTEL_* variables turn tracing on (README, "Traces").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import os
import tempfile
import time
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import uvloop

from app.cli import run_migrations
from app.main import create_app, tracing_requested
from app.settings import Settings

ADMIN_TOKEN = "bench-admin-token-0123456789abcdefghijklmnop"
PEPPER = "bench-pepper-0123456789abcdefghijklmnopqrstuv"


def bench_settings(arguments: argparse.Namespace) -> Settings:
    return Settings(
        database_url=arguments.database_url,
        admin_token=ADMIN_TOKEN,
        pepper=PEPPER,
        rate_limit_per_address="100000000/minute",
        rate_limit_per_client="100000000/minute",
        log_level=arguments.log_level,
    )


async def main(settings: Settings, arguments: argparse.Namespace) -> None:
    # Traced when the OTEL_* variables ask for it, as the server is (app.main.app_from_environment).
    if tracing_requested(os.environ):
        from app.tracing import tracer_provider_from_environment

        app = create_app(settings, tracer_provider=tracer_provider_from_environment())
    else:
        app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://b") as http:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        service_body = {"serviceName": "b", "supportedScopes": [{"name": "openid"}]}
        service = (await http.post("/api/service/create", json=service_body, headers=admin)).json()
        bearer = {"Authorization": f"Bearer {service['serviceAccessToken']}"}
        client = (
            await http.post(
                f"/api/{service['apiKey']}/client/create",
                json={"clientName": "b", "redirectUris": ["https://client.example.org/cb"]},
                headers=bearer,
            )
        ).json()
        raw = f"{quote_plus(str(client['clientId']))}:{quote_plus(client['clientSecret'])}"
        headers = {
            "Authorization": "Basic " + base64.b64encode(raw.encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        scope_template: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": f"/services/{service['apiKey']}/par",
            "raw_path": f"/services/{service['apiKey']}/par".encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        statuses: dict[int, int] = {}
        request_uris: list[str] = []
        backend_headers = {**bearer, "Content-Type": "application/json"}

        def push_body(number: int) -> bytes:
            return urlencode(
                {
                    "response_type": "code",
                    "redirect_uri": "https://client.example.org/cb",
                    "scope": "openid",
                    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    "code_challenge_method": "S256",
                    "state": f"bench-{os.getpid()}-{number}",
                }
            ).encode()

        async def one_push(body: bytes, path: str | None = None, call_headers: dict[str, str] = headers) -> None:
            scope = dict(scope_template)
            if path is not None:
                scope["path"], scope["raw_path"] = path, path.encode()
            scope["headers"] = [
                (b"host", b"127.0.0.1:8000"),
                (b"content-length", str(len(body)).encode()),
                *((name.lower().encode(), value.encode()) for name, value in call_headers.items()),
            ]
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    await asyncio.Event().wait()  # like a client that keeps the connection open
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1
                    if message["status"] >= 500 and arguments.log_level == "DEBUG":
                        print(message)
                elif message["type"] == "http.response.body" and path is None and message.get("body"):
                    request_uris.append(json.loads(message["body"])["request_uri"])

            await app(scope, receive, send)

        async def worker(bodies: list[bytes]) -> None:
            for body in bodies:
                await one_push(body)

        def bodies(first: int, count: int) -> list[bytes]:
            return [push_body(number) for number in range(first, first + count)]

        backend = f"/api/{service['apiKey']}/pushed_auth_req/{arguments.operation}"

        def backend_body(request_uri: str) -> bytes:
            if arguments.operation == "resolve":
                query = urlencode({"client_id": str(client["clientId"]), "request_uri": request_uri})
                return json.dumps({"parameters": query}).encode()
            return json.dumps({"clientId": str(client["clientId"]), "requestUri": request_uri}).encode()

        async def backend_worker(request_uris: list[str]) -> None:
            for request_uri in request_uris:
                await one_push(backend_body(request_uri), backend, backend_headers)

        per_worker = arguments.pushes // arguments.concurrency
        await asyncio.gather(*(worker(bodies(i * per_worker, 50)) for i in range(arguments.concurrency)))  # warm-up
        measured = [bodies(10**9 + i * per_worker, per_worker) for i in range(arguments.concurrency)]
        if arguments.operation != "push":
            await asyncio.gather(
                *(backend_worker(request_uris[i :: arguments.concurrency]) for i in range(32))
            )  # warm-up
            request_uris.clear()
            await asyncio.gather(*(worker(worker_bodies) for worker_bodies in measured))
            measured_uris = [request_uris[i :: arguments.concurrency] for i in range(arguments.concurrency)]
        statuses.clear()
        profiler = cProfile.Profile() if arguments.profile else None
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        if arguments.operation == "push":
            await asyncio.gather(*(worker(worker_bodies) for worker_bodies in measured))
        else:
            await asyncio.gather(*(backend_worker(uris) for uris in measured_uris))
        if profiler:
            profiler.disable()
            profiler.dump_stats(arguments.profile)
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started_wall
        pushes = per_worker * arguments.concurrency
        print(
            f"pushes={pushes} statuses={statuses} cpu_us_per_push={cpu / pushes * 1e6:.0f} "
            f"wall_pushes_per_s={pushes / wall:.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--pushes", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--log-level", default="INFO", help="INFO (the default) writes the access log to stderr")
    parser.add_argument("--operation", choices=("push", "resolve", "consume"), default="push")
    parser.add_argument("--profile", default=None, help="write a cProfile of the measured pushes here")
    parsed = parser.parse_args()
    if parsed.database_url is None:
        parsed.database_url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/profile.db"
    migrated = bench_settings(parsed)
    run_migrations(migrated)
    uvloop.run(main(migrated, parsed))  # the event loop `par-server serve` runs
