"""Graceful shutdown finishes the requests in flight.

A real ``par-server serve`` process gets a push whose body arrives slowly: the head and half the body
are sent, so the request is in flight (the app is reading its body) when SIGTERM arrives. The server
must stop accepting connections at once, still answer the in-flight push with 201 (and store it), then
shut down cleanly within a bound.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from app.cli import run_migrations
from app.settings import Settings
from tests.faults import support

pytestmark = [pytest.mark.faults, pytest.mark.postgresql]

IN_FLIGHT_SETTLE_SECONDS = 0.5  # lets the server parse the head and start the app on the request
REFUSAL_LIMIT_SECONDS = 3.0
EXIT_LIMIT_SECONDS = 10.0
SOCKET_TIMEOUT_SECONDS = 10.0


def read_http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body (what uvicorn sends for JSON)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a full response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the response body"
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def raw_push(tenant: support.Tenant, port: int, state: str) -> tuple[bytes, bytes]:
    """The head and body of a push, to be sent over a socket in parts (so that it stays in flight)."""
    body = urlencode(tenant.params(state)).encode()
    credentials = base64.b64encode(f"{tenant.client_id}:{tenant.client_secret}".encode()).decode()
    head = (
        f"POST {tenant.par_path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Basic {credentials}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode()
    return head, body


def connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_finishes_the_in_flight_request_and_refuses_new_ones(tmp_path: Path) -> None:
    with support.fresh_postgres_database() as database_url:
        run_migrations(Settings(database_url=database_url))
        deployment = support.Deployment(database_url, tmp_path)
        with deployment.server("terminated") as server:
            with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10.0) as http:
                tenant = support.tenant_from_api(http, deployment.admin_token)

            head, body = raw_push(tenant, server.port, "in-flight")
            with socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
                sock.sendall(head + body[: len(body) // 2])
                time.sleep(IN_FLIGHT_SETTLE_SECONDS)

                server.process.send_signal(signal.SIGTERM)
                terminated = time.monotonic()

                # The listening socket closes first: new connections are refused while the push is in flight.
                while not connection_refused(server.port):
                    assert time.monotonic() - terminated < REFUSAL_LIMIT_SECONDS, "still accepting after SIGTERM"
                    time.sleep(0.05)
                # Past uvicorn's first pause (0.1 s): the server is now waiting for the in-flight request.
                time.sleep(IN_FLIGHT_SETTLE_SECONDS)
                assert server.process.poll() is None, "exited without waiting for the in-flight request"

                sock.sendall(body[len(body) // 2 :])
                status, headers, content = read_http_response(sock)

            assert status == 201, (status, content, server.log())
            request_uri = json.loads(content)["request_uri"]
            assert request_uri.startswith(support.REQUEST_URI_PREFIX)
            assert headers.get("connection") == "close", headers  # no keep-alive past the shutdown

            returncode = server.process.wait(timeout=EXIT_LIMIT_SECONDS)
            exited_after = time.monotonic() - terminated
            # uvicorn re-raises the SIGTERM it handled once it has shut down, so a clean exit is 0 or
            # -SIGTERM (143 in a shell); what proves it was graceful is the completed lifespan shutdown.
            assert returncode in (0, -signal.SIGTERM), (returncode, server.log())
            log = server.log()
            assert "Waiting for connections to close" in log, log
            assert "Application shutdown complete" in log, log
            assert exited_after < EXIT_LIMIT_SECONDS

        assert support.count_pushed_requests(database_url) == 1  # the in-flight push was stored


# --- the container's stop ------------------------------------------------------------------------------

SLOW_REQUEST_SECONDS = 13.0  # longer than the 10 s after which `docker stop` kills by default
TERMINATE_AFTER_SECONDS = 1.0


def compose_stop_grace_seconds() -> float:
    """What docker-compose.yml gives par-server between SIGTERM and SIGKILL (compose's default: 10 s)."""
    compose = (support.REPO_ROOT / "docker-compose.yml").read_text()
    service = compose.split("\n  par-server:\n", 1)[1].split("\n\n", 1)[0]
    match = re.search(r"^\s+stop_grace_period:\s*(\d+)s\s*$", service, re.MULTILINE)
    return float(match.group(1)) if match else 10.0


def test_a_slow_request_finishes_across_a_compose_stop(tmp_path: Path) -> None:
    """The image's entrypoint serves; a stop as compose does it (SIGTERM, then SIGKILL after its
    stop_grace_period) lets a 13-second push finish and the server exit by itself."""
    grace = compose_stop_grace_seconds()
    assert grace > Settings().shutdown_grace_seconds, "compose would kill the server inside its own grace"
    with support.fresh_postgres_database() as database_url:
        deployment = support.Deployment(database_url, tmp_path)
        port = support.free_port()
        path = f"{support.PAR_SERVER.parent}{os.pathsep}{os.environ['PATH']}"
        log_path = tmp_path / "container.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                ["sh", str(support.REPO_ROOT / "docker" / "entrypoint.sh")],
                cwd=tmp_path,
                env=deployment.env(PAR_PORT=str(port), PATH=path, PAR_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}"),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = support.ServerProcess(process, f"http://127.0.0.1:{port}", port, log_path)
        try:
            server.wait_ready()  # the entrypoint migrated the new database first
            with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10.0) as http:
                tenant = support.tenant_from_api(http, deployment.admin_token)
            head, body = raw_push(tenant, port, "slow")
            with socket.create_connection(("127.0.0.1", port), timeout=SLOW_REQUEST_SECONDS + grace) as sock:
                sock.sendall(head + body[: len(body) // 2])
                started = time.monotonic()
                time.sleep(TERMINATE_AFTER_SECONDS)
                process.send_signal(signal.SIGTERM)  # `docker stop`
                # ... and SIGKILL once the stop grace period is over, as docker does.
                kill = threading.Timer(grace, lambda: os.killpg(process.pid, signal.SIGKILL))
                kill.start()
                try:
                    time.sleep(max(0.0, started + SLOW_REQUEST_SECONDS - time.monotonic()))
                    sock.sendall(body[len(body) // 2 :])
                    status, _, content = read_http_response(sock)
                    returncode = process.wait(timeout=grace)
                finally:
                    kill.cancel()
            assert status == 201, (status, content, server.log())
            assert returncode in (0, -signal.SIGTERM), (returncode, server.log())
        finally:
            server.kill()
        assert support.count_pushed_requests(database_url) == 1
