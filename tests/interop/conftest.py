"""Interop fixtures: par-server on a real loopback socket, and the Node harnesses (oauth4webapi, openid-client).

``live_server`` serves the real app with uvicorn in a background thread, once per database kind (it
builds on ``database_url``). ``node_harness`` makes sure the harnesses can run; without Node it skips,
or fails when ``PAR_TEST_REQUIRE_INTEROP=1`` (as in CI). A test module picks a harness (``OAUTH4WEBAPI``,
``OPENID_CLIENT``) by providing or parametrizing ``harness``; ``service`` is then a service set up as that
harness needs, and ``run_harness`` runs the harness script against it and returns its JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app.main import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.factories import REDIRECT_URI, ClientHandle, ServiceHandle

INTEROP_DIR = Path(__file__).resolve().parent
REQUIRE_INTEROP = os.environ.get("PAR_TEST_REQUIRE_INTEROP") == "1"
MIN_NODE_MAJOR = 20
STARTUP_TIMEOUT_SECONDS = 15.0
SHUTDOWN_TIMEOUT_SECONDS = 15.0

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
UNREGISTERED_REDIRECT_URI = "https://evil.example/cb"
DURATION = 90  # not the server default (60), so expires_in must come from the service
AUTHORIZATION_ENDPOINT = "https://as.example.com/authorize"
# tokenAuthMethod as registered -> (client fields, the harness's PAR_AUTH)
AUTH_METHODS: dict[str, tuple[dict[str, str], str]] = {
    "CLIENT_SECRET_BASIC": ({}, "basic"),
    "CLIENT_SECRET_POST": ({"tokenAuthMethod": "CLIENT_SECRET_POST"}, "post"),
    "NONE": ({"clientType": "PUBLIC"}, "none"),
}


@dataclass(frozen=True)
class Harness:
    """A Node harness script (README.md), and the service fields its tests create the service with."""

    library: str
    script: Path
    service_fields: Mapping[str, Any]


OAUTH4WEBAPI = Harness("oauth4webapi", INTEROP_DIR / "push.mjs", {"pushedAuthReqDuration": DURATION})
# openid-client's buildAuthorizationUrlWithPAR needs an authorization_endpoint in the metadata, which
# a service publishes only when it sets authorizationEndpoint (as every service here does).
OPENID_CLIENT = Harness(
    "openid-client", INTEROP_DIR / "push-openid-client.mjs", {"authorizationEndpoint": AUTHORIZATION_ENDPOINT}
)
HARNESSES = [pytest.param(harness, id=harness.library) for harness in (OAUTH4WEBAPI, OPENID_CLIENT)]


class LiveServer:
    """The running server and management calls over real HTTP."""

    def __init__(self, base_url: str, http: httpx.Client) -> None:
        self.base_url = base_url
        self.admin_token = ADMIN_TOKEN
        self.http = http

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def create_service(self, **fields: Any) -> ServiceHandle:
        body: dict[str, Any] = {
            "serviceName": "interop service",
            "supportedScopes": ["openid", "profile"],
            "authorizationEndpoint": AUTHORIZATION_ENDPOINT,
            "tokenEndpoint": "https://as.example.com/token",
        }
        body.update(fields)
        data = self._ok(self.http.post("/api/service/create", json=body, headers=self.admin))
        return ServiceHandle(id=data["apiKey"], token=data["serviceAccessToken"], body=data)

    def create_service_token(self, service_id: int) -> str:
        """Another access token for the service, issued with the admin token."""
        response = self.http.post(f"/api/{service_id}/service/token/create", json={}, headers=self.admin)
        return str(self._ok(response)["accessToken"])

    def create_client(self, service: ServiceHandle, **fields: Any) -> ClientHandle:
        body: dict[str, Any] = {"clientName": "interop client", "redirectUris": [REDIRECT_URI]}
        body.update(fields)
        data = self._ok(self.http.post(f"/api/{service.id}/client/create", json=body, headers=service.bearer))
        return ClientHandle(id=data["clientId"], secret=data.get("clientSecret"), body=data)

    def metadata(self, service: ServiceHandle) -> dict[str, Any]:
        """The service's RFC 8414 metadata (path-inserted well-known URI, as push.mjs fetches it)."""
        return self._ok(self.http.get(f"/.well-known/oauth-authorization-server/services/{service.id}"))

    def resolve(self, service: ServiceHandle, client: ClientHandle, request_uri: str) -> dict[str, Any]:
        """The pushed request behind ``request_uri``, as the backend resolve API (service token) answers it
        for the authorization endpoint: its ``request`` (state, dpopJkt, signedRequestObject, ...)."""
        parameters = urlencode({"client_id": str(client.id), "request_uri": request_uri})
        response = self.http.post(
            f"/api/{service.id}/pushed_auth_req/resolve", json={"parameters": parameters}, headers=service.bearer
        )
        answer = self._ok(response)
        assert answer["action"] == "OK", answer
        request: dict[str, Any] = answer["request"]
        return request

    @staticmethod
    def _ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, f"{response.request.url}: {response.status_code} {response.text}"
        data: dict[str, Any] = response.json()
        return data


@contextmanager
def serving(app: FastAPI, sock: socket.socket, name: str) -> Iterator[None]:
    """``app`` under uvicorn on the bound ``sock``, in a background thread, until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=sock.getsockname()[1], log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"{name} did not start")
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT_SECONDS)
    assert not thread.is_alive(), f"{name} did not shut down"


def bound_socket() -> socket.socket:
    """A socket bound to a free loopback port: the port is known before the app is built, without a race."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def live_server(database_url: str) -> Iterator[LiveServer]:
    """The real app under uvicorn on 127.0.0.1, in a background thread, on a fresh database."""
    with bound_socket() as sock:
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        app = create_app(make_settings(database_url, public_base_url=base_url))
        with serving(app, sock, "par-server"), httpx.Client(base_url=base_url, trust_env=False, timeout=10.0) as http:
            yield LiveServer(base_url, http)


def _unavailable(reason: str) -> NoReturn:
    message = f"Node interop harness unavailable: {reason}"
    if REQUIRE_INTEROP:
        pytest.fail(message + " (PAR_TEST_REQUIRE_INTEROP=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def node_harness() -> str:
    """The ``node`` executable, with the harnesses' pinned dependencies (package.json) installed."""
    node = shutil.which("node")
    if node is None:
        _unavailable("`node` is not on PATH (install Node.js >= 20)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE_MAJOR:
        _unavailable(f"node {version} is too old; the harness needs Node.js >= {MIN_NODE_MAJOR}")
    dependencies = json.loads((INTEROP_DIR / "package.json").read_text())["dependencies"]
    if not all((INTEROP_DIR / "node_modules" / name).is_dir() for name in dependencies):
        npm = shutil.which("npm")
        if npm is None:
            _unavailable(f"{INTEROP_DIR / 'node_modules'} is incomplete and `npm` is not on PATH to run `npm ci`")
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=INTEROP_DIR, capture_output=True, text=True, timeout=300
        )
        if installed.returncode != 0:
            _unavailable(f"`npm ci` in {INTEROP_DIR} failed:\n{installed.stdout}\n{installed.stderr}")
    return node


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Harness:
    """The test module's ``HARNESS``; a module that tests several harnesses parametrizes ``harness`` instead."""
    chosen: Harness | None = getattr(request.module, "HARNESS", None)
    if chosen is None:
        pytest.fail(f"{request.module.__name__} uses a Node harness: set HARNESS or parametrize `harness`")
    return chosen


@pytest.fixture
def service(harness: Harness, live_server: LiveServer) -> ServiceHandle:
    """A service with the fields ``harness`` needs."""
    created = live_server.create_service(**harness.service_fields)
    for name, value in harness.service_fields.items():
        assert created.body[name] == value
    return created


@dataclass(frozen=True)
class HarnessRunner:
    """Runs a harness script against ``service`` on ``server``."""

    node: str
    script: Path
    server: LiveServer
    service: ServiceHandle

    def __call__(
        self,
        client: ClientHandle,
        *,
        auth: str,
        secret: str | None = None,
        extra_params: dict[str, str] | None = None,
        private_jwk: Mapping[str, Any] | None = None,
        signing_alg: str | None = None,
        dpop: bool = False,
        request_object: bool = False,
        outer_params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run the script once and return its JSON line (``ok`` agrees with the exit status).

        ``private_jwk`` (PAR_PRIVATE_JWK) and ``signing_alg`` (PAR_SIGNING_ALG) are for
        ``auth="private_key_jwt"`` and for ``request_object``. ``dpop`` (PAR_DPOP) sends a DPoP proof;
        ``request_object`` (PAR_REQUEST_OBJECT) pushes the parameters (``extra_params`` included) as a
        request object signed with ``private_jwk``, with ``outer_params`` (PAR_OUTER_PARAMS) next to it.
        """
        env = {name: value for name, value in os.environ.items() if not name.startswith("PAR_")}
        env.update(
            PAR_ISSUER=f"{self.server.base_url}/services/{self.service.id}",
            PAR_CLIENT_ID=str(client.id),
            PAR_AUTH=auth,
            PAR_REDIRECT_URI=REDIRECT_URI,
            PAR_SCOPE="openid profile",
        )
        if secret is not None:
            env["PAR_CLIENT_SECRET"] = secret
        if extra_params:
            env["PAR_EXTRA_PARAMS"] = urlencode(extra_params)
        if private_jwk is not None:
            env["PAR_PRIVATE_JWK"] = json.dumps(private_jwk)
        if signing_alg is not None:
            env["PAR_SIGNING_ALG"] = signing_alg
        if dpop:
            env["PAR_DPOP"] = "1"
        if request_object:
            env["PAR_REQUEST_OBJECT"] = "1"
        if outer_params:
            env["PAR_OUTER_PARAMS"] = urlencode(outer_params)
        completed = subprocess.run(
            [self.node, str(self.script)], cwd=INTEROP_DIR, env=env, capture_output=True, text=True, timeout=60
        )
        name = self.script.name
        report = f"{name}: exit {completed.returncode}\nstdout: {completed.stdout}\nstderr: {completed.stderr}"
        lines = completed.stdout.splitlines()
        assert len(lines) == 1, report
        result: dict[str, Any] = json.loads(lines[0])
        assert result["ok"] is (completed.returncode == 0), report
        return result

    def push_with(self, method: str) -> tuple[ClientHandle, dict[str, Any]]:
        """Register a client with tokenAuthMethod ``method`` (AUTH_METHODS), run the script as that client
        (with its secret) and check that it succeeded with a request_uri that is a URN with a >= 256-bit
        reference (PAR-14 / PAR-15). Returns the client and the JSON line."""
        fields, auth = AUTH_METHODS[method]
        client = self.server.create_client(self.service, **fields)
        assert client.body["tokenAuthMethod"] == method
        result = self(client, auth=auth, secret=client.secret)
        assert result["ok"] is True, result
        request_uri = result["request_uri"]
        assert request_uri.startswith(REQUEST_URI_PREFIX), result
        assert len(request_uri) - len(REQUEST_URI_PREFIX) >= 43, result
        return client, result


@pytest.fixture
def run_harness(harness: Harness, node_harness: str, live_server: LiveServer, service: ServiceHandle) -> HarnessRunner:
    """``harness``'s script, run against ``service``: ``run_harness(client, auth=..., secret=...)``."""
    return HarnessRunner(node_harness, harness.script, live_server, service)
