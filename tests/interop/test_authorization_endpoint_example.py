"""The example authorization endpoint (examples/authorization_endpoint) in front of the real server, driven
end to end by oauth4webapi (authorize.mjs): push, the browser's visit, the redirect, and a second visit.

Both run under uvicorn on loopback; the service's authorizationEndpoint is the example's ``/authorize``,
so the client finds it in the metadata as it would in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from examples.authorization_endpoint.app import TEST_USER, Grant, create_app
from tests.factories import REDIRECT_URI, ClientHandle, ServiceHandle
from tests.interop.conftest import INTEROP_DIR, HarnessRunner, LiveServer, bound_socket, serving

pytestmark = pytest.mark.interop

SCRIPT = INTEROP_DIR / "authorize.mjs"


@dataclass(frozen=True)
class Example:
    """The running example, the service it serves, and the codes it issued."""

    app: FastAPI
    base_url: str
    service: ServiceHandle

    @property
    def codes(self) -> dict[str, Grant]:
        codes: dict[str, Grant] = self.app.state.codes
        return codes


@contextmanager
def running_example(
    live_server: LiveServer, *, consume_on_resolve: bool = False, **service_fields: Any
) -> Iterator[Example]:
    """A service (with ``service_fields``) whose authorization endpoint is the example, which serves it with
    the service's access token (and ``consume_on_resolve``)."""
    with bound_socket() as sock:
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        service = live_server.create_service(authorizationEndpoint=f"{base_url}/authorize", **service_fields)
        app = create_app(live_server.base_url, service.id, service.token, consume_on_resolve=consume_on_resolve)
        with serving(app, sock, "authorization endpoint example"):
            yield Example(app, base_url, service)


@pytest.fixture
def example(live_server: LiveServer) -> Iterator[Example]:
    with running_example(live_server) as running:
        yield running


def push(live_server: LiveServer, service: ServiceHandle, client: ClientHandle, state: str) -> str:
    """A request pushed to the service's PAR endpoint (RFC 9126 §2.1), returning its request_uri."""
    form = {"client_id": str(client.id), "response_type": "code", "redirect_uri": REDIRECT_URI, "state": state}
    assert client.secret is not None
    response = live_server.http.post(f"/services/{service.id}/par", data=form, auth=(str(client.id), client.secret))
    assert response.status_code == 201, response.text
    request_uri: str = response.json()["request_uri"]
    return request_uri


def test_code_flow_through_the_example(node_harness: str, live_server: LiveServer, example: Example) -> None:
    """RFC 9126 §4 / RFC 6749 §4.1.2 / RFC 9207 §2: the pushed request, resolved and consumed by the example,
    comes back to the client as a code with its state and the service's issuer (oauth4webapi's
    validateAuthResponse checks both); RFC 9126 §7.3: the request_uri is then used up, so the same visit
    again gets an error page and no redirect."""
    client = live_server.create_client(example.service)
    run = HarnessRunner(node_harness, SCRIPT, live_server, example.service)
    result = run(client, auth="basic", secret=client.secret)
    assert result["ok"] is True, result

    assert result["status"] == 303, result
    location = urlsplit(result["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI, result
    assert set(parse_qs(location.query)) == {"code", "state", "iss"}, result
    grant = example.codes[result["code"]]
    assert grant.user == TEST_USER
    assert grant.client_id == client.id
    assert grant.request["redirectUri"] == REDIRECT_URI
    assert grant.request["codeChallengeMethod"] == "S256"

    assert result["replay_status"] == 400, result
    assert result["replay_location"] is None, result
    assert "invalid_request_uri" in result["replay_body"], result
    assert len(example.codes) == 1


def test_unknown_client_gets_an_error_page(live_server: LiveServer, example: Example) -> None:
    """RFC 6749 §4.1.2.1: with an invalid client identifier the server "MUST NOT automatically redirect"."""
    with httpx.Client(base_url=example.base_url, trust_env=False, timeout=10.0) as http:
        response = http.get("/authorize", params={"client_id": "1", "redirect_uri": REDIRECT_URI})
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert "invalid_request" in response.text
    assert not example.codes


def test_invalid_request_is_redirected_with_state_and_iss(live_server: LiveServer, example: Example) -> None:
    """RFC 6749 §4.1.2.1 / RFC 9207 §2: other errors go back to the client's (registered) redirect URI
    with error, state and iss, and no code."""
    client = live_server.create_client(example.service)
    parameters = {
        "client_id": str(client.id),
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "not-supported",
        "state": "xyz",
    }
    with httpx.Client(base_url=example.base_url, trust_env=False, timeout=10.0) as http:
        response = http.get("/authorize", params=parameters)
    assert response.status_code == 303, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    issuer = live_server.metadata(example.service)["issuer"]
    assert query["error"] == ["invalid_scope"], query
    assert query["state"] == ["xyz"]
    assert query["iss"] == [issuer]
    assert "code" not in query
    assert not example.codes


def test_plain_request_gets_a_code(live_server: LiveServer, example: Example) -> None:
    """A service that does not require PAR: a plain authorization request is resolved (validated) and
    answered with a code; there is no request_uri to consume."""
    client = live_server.create_client(example.service)
    parameters = {"client_id": str(client.id), "response_type": "code", "redirect_uri": REDIRECT_URI, "state": "s"}
    with httpx.Client(base_url=example.base_url, trust_env=False, timeout=10.0) as http:
        response = http.get("/authorize", params=parameters)
    assert response.status_code == 303, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert set(query) == {"code", "state", "iss"}, query
    assert example.codes[query["code"][0]].request["redirectUri"] == REDIRECT_URI


def test_unusable_service_token_is_a_server_error_page(live_server: LiveServer, example: Example) -> None:
    """When par-server refuses the example's service token, the user sees a 502 page (no redirect URI is
    known yet)."""
    broken = create_app(live_server.base_url, example.service.id, "not-the-token")
    with bound_socket() as sock, serving(broken, sock, "misconfigured example"):
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/authorize"
        response = httpx.get(url, params={"client_id": "1"}, trust_env=False, timeout=10.0)
    assert response.status_code == 502, response.text
    assert "server_error" in response.text


def test_service_consuming_on_resolve(live_server: LiveServer) -> None:
    """A service with consumeRequestUriOnResolve: resolve uses the request up, the example (told so) does not
    consume, and the code comes back; the request_uri is then unusable (RFC 9126 §7.3)."""
    with running_example(live_server, consume_on_resolve=True, consumeRequestUriOnResolve=True) as example:
        client = live_server.create_client(example.service)
        visit = {"client_id": str(client.id), "request_uri": push(live_server, example.service, client, "s1")}
        with httpx.Client(base_url=example.base_url, trust_env=False, timeout=10.0) as http:
            first = http.get("/authorize", params=visit)
            second = http.get("/authorize", params=visit)
    assert first.status_code == 303, first.text
    query = parse_qs(urlsplit(first.headers["location"]).query)
    assert set(query) == {"code", "state", "iss"}, query
    assert query["state"] == ["s1"]
    assert second.status_code == 400, second.text
    assert "invalid_request_uri" in second.text
    assert list(example.codes) == query["code"]


def test_failed_consume_is_redirected_with_error(live_server: LiveServer) -> None:
    """RFC 6749 §4.1.2.1: once resolve has vouched for the redirect URI, a consume that fails (here: the
    service already consumed on resolve, and the example was not told) goes back to the client as
    invalid_request_uri with state and iss, and no code."""
    with running_example(live_server, consumeRequestUriOnResolve=True) as example:
        client = live_server.create_client(example.service)
        visit = {"client_id": str(client.id), "request_uri": push(live_server, example.service, client, "s2")}
        with httpx.Client(base_url=example.base_url, trust_env=False, timeout=10.0) as http:
            response = http.get("/authorize", params=visit)
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["error"] == ["invalid_request_uri"], query
    assert query["state"] == ["s2"]
    assert query["iss"] == [live_server.metadata(example.service)["issuer"]]
    assert "code" not in query
    assert not example.codes
