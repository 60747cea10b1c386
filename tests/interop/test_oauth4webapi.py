"""A third-party client, oauth4webapi (Node), pushes authorization requests over real HTTP.

The harness (push.mjs) discovers the service's RFC 8414 metadata from its issuer, which oauth4webapi
checks against the issuer it was given (META-01), then pushes a PKCE request to the advertised
``pushed_authorization_request_endpoint`` (PAR-04) and prints one JSON line.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import ClientHandle, ServiceHandle
from tests.interop.conftest import PUSH_SCRIPT, LiveServer, run_harness

pytestmark = pytest.mark.interop

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
DURATION = 90  # not the server default (60), so expires_in must come from the service
UNREGISTERED_REDIRECT_URI = "https://evil.example/cb"
# tokenAuthMethod as registered -> (client fields, the harness's PAR_AUTH)
AUTH_METHODS: dict[str, tuple[dict[str, str], str]] = {
    "CLIENT_SECRET_BASIC": ({}, "basic"),
    "CLIENT_SECRET_POST": ({"tokenAuthMethod": "CLIENT_SECRET_POST"}, "post"),
    "NONE": ({"clientType": "PUBLIC"}, "none"),
}


@pytest.fixture
def service(live_server: LiveServer) -> ServiceHandle:
    return live_server.create_service(pushedAuthReqDuration=DURATION)


def push(
    node: str,
    server: LiveServer,
    service: ServiceHandle,
    client: ClientHandle,
    *,
    auth: str,
    secret: str | None = None,
    extra_params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run push.mjs once and return its JSON line."""
    return run_harness(node, PUSH_SCRIPT, server, service, client, auth=auth, secret=secret, extra_params=extra_params)


@pytest.mark.parametrize("method", list(AUTH_METHODS))
def test_push_succeeds(method: str, live_server: LiveServer, service: ServiceHandle, node_harness: str) -> None:
    """PAR-07 / GEN-04: each client authentication method works as oauth4webapi sends it (Basic with
    form-encoded credentials, client_id also in the body: PAR-09). PAR-13: 201 with request_uri and
    expires_in = the service's pushedAuthReqDuration. PAR-14 / PAR-15: URN with a >= 256-bit reference."""
    fields, auth = AUTH_METHODS[method]
    client = live_server.create_client(service, **fields)
    assert client.body["tokenAuthMethod"] == method
    result = push(node_harness, live_server, service, client, auth=auth, secret=client.secret)
    assert result["ok"] is True, result
    assert result["status"] == 201
    request_uri = result["request_uri"]
    assert request_uri.startswith(REQUEST_URI_PREFIX)
    assert len(request_uri) - len(REQUEST_URI_PREFIX) >= 43
    assert result["expires_in"] == service.body["pushedAuthReqDuration"] == DURATION


def test_unregistered_redirect_uri_is_invalid_request(
    live_server: LiveServer, service: ServiceHandle, node_harness: str
) -> None:
    """PAR-12 / PAR-20 / PAR-26: a redirect_uri that is not registered gets 400 invalid_request (GEN-05)."""
    client = live_server.create_client(service)
    result = push(
        node_harness,
        live_server,
        service,
        client,
        auth="basic",
        secret=client.secret,
        extra_params={"redirect_uri": UNREGISTERED_REDIRECT_URI},
    )
    assert result["ok"] is False, result
    assert result["cause"]["error"] == "invalid_request", result
    assert result["cause"]["status"] == 400, result


@pytest.mark.parametrize(("auth", "statuses"), [("basic", {401}), ("post", {400, 401})])
def test_wrong_secret_is_invalid_client(
    auth: str, statuses: set[int], live_server: LiveServer, service: ServiceHandle, node_harness: str
) -> None:
    """GEN-05: invalid_client is 401 (with WWW-Authenticate) when the client used the Authorization
    header, 400 or 401 otherwise."""
    fields = {"tokenAuthMethod": "CLIENT_SECRET_POST"} if auth == "post" else {}
    client = live_server.create_client(service, **fields)
    result = push(node_harness, live_server, service, client, auth=auth, secret=f"wrong-{client.secret}")
    assert result["ok"] is False, result
    assert result["cause"]["error"] == "invalid_client", result
    assert result["cause"]["status"] in statuses, result
    if auth == "basic":
        assert result["error"] == "WWWAuthenticateChallengeError", result
        assert [challenge["scheme"] for challenge in result["cause"]["challenges"]] == ["basic"], result
