"""Fault-test machinery: throw-away PostgreSQL databases, real ``par-server`` processes, and a TCP proxy
in front of PostgreSQL that can be stopped, black-holed or slowed down.

Everything here is bounded in time and cleans up after itself: child processes are killed (by their
own process group) and databases dropped even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tests import databases

REPO_ROOT = Path(__file__).resolve().parents[2]
PAR_SERVER = Path(sys.executable).with_name("par-server")  # the venv's console script
REDIRECT_URI = "https://c.example/cb"
# RFC 7636 Appendix B.
CODE_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
STARTUP_TIMEOUT_SECONDS = 60.0  # a loaded CI machine starts a multi-worker server slowly
CLI_TIMEOUT_SECONDS = 30.0
# These tests push far faster than a real client may: lift the rate limits (ignored where there are none).
NO_RATE_LIMITS = {
    "rate_limit_per_address": "1000000/minute",
    "rate_limit_per_client": "1000000/minute",
    "rate_limit_failed_authentication": "1000000/minute",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 43 characters


# --- databases ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database of this test alone (not migrated); dropped afterwards.

    Skips (or fails under ``PAR_TEST_REQUIRE_POSTGRES=1``) when the server is unreachable.
    """
    base = make_url(databases.POSTGRES_URL)
    name = f"par_faults_{os.getpid()}_{secrets.token_hex(4)}"
    url = base.set(database=name).render_as_string(hide_password=False)
    databases.ensure_postgres_database(url)
    try:
        yield url
    finally:
        databases.drop_postgres_database(url)


def with_port(url: str, port: int) -> str:
    """``url`` with its host:port replaced by 127.0.0.1:``port`` (the proxy)."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def count_pushed_requests(url: str) -> int:
    with psycopg.connect(databases.libpq_dsn(url), autocommit=True, connect_timeout=5) as connection:
        row = connection.execute("SELECT count(*) FROM pushed_request").fetchone()
    assert row is not None
    return int(row[0])


# --- real server processes ----------------------------------------------------------------------------


@dataclass
class Deployment:
    """The environment of a ``par-server`` deployment on one database: secrets, CLI, server processes."""

    database_url: str
    log_dir: Path
    admin_token: str = field(default_factory=new_secret)
    pepper: str = field(default_factory=new_secret)
    # The checkout's par-server by default; an installed wheel's runs from a directory of its own.
    executable: Path = PAR_SERVER
    cwd: Path = REPO_ROOT

    def env(self, **extra: str) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("PAR_")}
        env.update(
            PAR_DATABASE_URL=self.database_url,
            PAR_ADMIN_TOKEN=self.admin_token,
            PAR_PEPPER=self.pepper,
            PAR_DATA_DIR=str(self.log_dir / "data"),
        )
        env.update({f"PAR_{name.upper()}": value for name, value in NO_RATE_LIMITS.items()})
        env.update(extra)
        return env

    def cli(self, *args: str) -> Any:
        """Run ``par-server ARGS`` to completion; returns its JSON output (None when it prints none)."""
        completed = subprocess.run(
            [str(self.executable), *args],
            cwd=self.cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
        )
        assert completed.returncode == 0, f"par-server {' '.join(args)}: {completed.returncode}\n{completed.stderr}"
        return json.loads(completed.stdout) if completed.stdout.strip() else None

    @contextlib.contextmanager
    def server(self, name: str, *options: str) -> Iterator[ServerProcess]:
        """``par-server serve OPTIONS`` on a free port, ready (``/readyz`` 200) on entry, killed on exit."""
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:  # a file, never a pipe: a full pipe would block the server
            process = subprocess.Popen(
                [str(self.executable), "serve", "--port", str(port), *options],
                cwd=self.cwd,
                env=self.env(PAR_PUBLIC_BASE_URL=base_url),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so the kill below reaches any child
            )
        server = ServerProcess(process, base_url, port, log_path)
        try:
            server.wait_ready()
            yield server
        finally:
            server.kill()


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    port: int
    log_path: Path

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"par-server exited with {self.process.returncode}:\n{self.log()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/readyz").status_code == 200:
                        return
                time.sleep(0.05)
        raise AssertionError(f"par-server was not ready within {STARTUP_TIMEOUT_SECONDS} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL the process group (only this server's) and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


# --- the HTTP side --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    """A service (with its access token) and one confidential client_secret_basic client."""

    service_id: int
    service_token: str
    client_id: int
    client_secret: str

    @property
    def par_path(self) -> str:
        return f"/services/{self.service_id}/par"

    @property
    def api_push_path(self) -> str:
        return f"/api/{self.service_id}/pushed_auth_req"

    @property
    def resolve_path(self) -> str:
        return f"/api/{self.service_id}/pushed_auth_req/resolve"

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.service_token}"}

    @property
    def basic(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(str(self.client_id), self.client_secret)

    def params(self, state: str = "s") -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": str(self.client_id),
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": state,
            "code_challenge": CODE_CHALLENGE,
            "code_challenge_method": "S256",
        }

    def api_push_body(self, state: str = "s") -> dict[str, str]:
        return {
            "parameters": urlencode(self.params(state)),
            "clientId": str(self.client_id),
            "clientSecret": self.client_secret,
        }

    def resolve_body(self, request_uri: str) -> dict[str, str]:
        return {"parameters": urlencode({"client_id": str(self.client_id), "request_uri": request_uri})}


def tenant_from_cli(deployment: Deployment, *, duration: int = 600) -> Tenant:
    """Seed a service and a client with ``par-server service create`` / ``client create``."""
    service = deployment.cli("service", "create", "--name", "k", "--scope", "openid", "--duration", str(duration))
    client = deployment.cli("client", "create", "--service", str(service["apiKey"]), "--redirect-uri", REDIRECT_URI)
    return Tenant(
        service_id=int(service["apiKey"]),
        service_token=service["serviceAccessToken"],
        client_id=int(client["clientId"]),
        client_secret=client["clientSecret"],
    )


def tenant_from_api(http: httpx.Client, admin_token: str) -> Tenant:
    """Seed a service and a client through the management API of a running server."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    created = http.post(
        "/api/service/create",
        json={"serviceName": "faults", "supportedScopes": [{"name": "openid"}], "pushedAuthReqDuration": 600},
        headers=admin,
    )
    assert created.status_code == 200, created.text
    service = created.json()
    bearer = {"Authorization": f"Bearer {service['serviceAccessToken']}"}
    registered = http.post(
        f"/api/{service['apiKey']}/client/create", json={"redirectUris": [REDIRECT_URI]}, headers=bearer
    )
    assert registered.status_code == 200, registered.text
    client = registered.json()
    return Tenant(
        service_id=int(service["apiKey"]),
        service_token=service["serviceAccessToken"],
        client_id=int(client["clientId"]),
        client_secret=client["clientSecret"],
    )


def assert_rfc6749_server_error(response: httpx.Response, statuses: tuple[int, ...] = (500, 503)) -> None:
    """A 5xx in RFC 6749 §5.2 form (``error``, ``error_description``), never cached."""
    assert response.status_code in statuses, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["error"] in ("server_error", "temporarily_unavailable"), body
    assert isinstance(body.get("error_description", ""), str), body
    assert response.headers.get("cache-control") == "no-store", response.headers


def assert_result_error(response: httpx.Response, statuses: tuple[int, ...] = (500, 503)) -> None:
    """A 5xx Authlete ``ResultError`` (``resultCode``, ``resultMessage``)."""
    assert response.status_code in statuses, f"{response.status_code} {response.text}"
    body = response.json()
    assert set(body) >= {"resultCode", "resultMessage"}, body
    assert body["resultMessage"].startswith(f"[{body['resultCode']}] "), body
    assert response.headers.get("cache-control") == "no-store", response.headers


# --- the app in this process --------------------------------------------------------------------------


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1:``port`` in a background thread (real sockets, real timeouts).

    In-flight requests get at most 3 s at shutdown, so a request hanging on the database cannot
    hang the test's teardown.
    """
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=3, ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="faults-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the in-process server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive(), "the in-process server did not shut down"


# --- a controllable TCP proxy in front of PostgreSQL -----------------------------------------------------


class TcpProxy:
    """127.0.0.1:``port`` -> ``target``, on an event loop of its own (a thread), so the app under test
    sees a database that can go away and come back while the test process keeps running.

    - ``start()``: listen and forward.
    - ``stop()``: the database is down: the port refuses connections and every open one is reset.
    - ``blackhole = True``: connections are accepted but nothing ever comes back (a partitioned or
      hung server); ``stop()`` releases them.
    - ``latency = seconds``: every chunk from the database arrives this much later (order kept).
    - ``freeze()``: nothing is forwarded either way, but every connection stays open and new ones are
      accepted, as with a stopped (SIGSTOP) server whose kernel still acknowledges, or a partition;
      ``thaw()`` delivers what was held and forwards again (SIGCONT).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.latency = 0.0
        self.blackhole = False
        self._server: asyncio.Server | None = None
        self._thawed: asyncio.Event | None = None  # created on the proxy's loop (``_start``)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faults-proxy", daemon=True)
        self._thread.start()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def freeze(self) -> None:
        self._loop.call_soon_threadsafe(self._thaw_event().clear)

    def thaw(self) -> None:
        self._loop.call_soon_threadsafe(self._thaw_event().set)

    def _thaw_event(self) -> asyncio.Event:
        assert self._thawed is not None, "start() the proxy first"
        return self._thawed

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        if self._thawed is None:
            self._thawed = asyncio.Event()
            self._thawed.set()
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # RST: the peer sees the connection reset, as when a server dies
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self.blackhole:
                while await reader.read(65536):  # swallow everything, answer nothing
                    pass
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            self._writers.add(upstream_writer)
            pumps = [
                asyncio.ensure_future(self._pump(reader, upstream_writer, delayed=False)),
                asyncio.ensure_future(self._pump(upstream_reader, writer, delayed=True)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for pump in pumps:
                    pump.cancel()
                for pump in pumps:
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await pump
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for each in (writer, upstream_writer):
                if each is not None:
                    self._writers.discard(each)
                    each.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, delayed: bool) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self._thaw_event().wait()
                sink.write(data)
                await sink.drain()

        delivery = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await source.read(65536)
                queue.put_nowait((time.monotonic() + (self.latency if delayed else 0.0), data))
                if not data:
                    break
            await delivery
        finally:
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await delivery


@contextlib.contextmanager
def tcp_proxy(target: tuple[str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.close()


def postgres_address(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


def elapsed_since(started: float) -> float:
    return time.monotonic() - started
