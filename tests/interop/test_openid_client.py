"""A third-party relying-party library, openid-client (Node), builds authorization URLs with PAR over real HTTP.

The harness (push-openid-client.mjs) uses openid-client's high-level API only: ``discovery`` (OpenID
Connect Discovery at ``<issuer>/.well-known/openid-configuration``, with openid-client's issuer check,
META-01), then ``buildAuthorizationUrlWithPAR``, which pushes a PKCE request to the advertised
``pushed_authorization_request_endpoint`` (PAR-04) and returns the URL for the advertised
``authorization_endpoint``. The service sets ``authorizationEndpoint``, since the metadata has none
otherwise and openid-client needs it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.factories import ClientHandle, ServiceHandle
from tests.interop.conftest import OPENID_CLIENT_SCRIPT, LiveServer, run_harness

pytestmark = pytest.mark.interop

AUTHORIZATION_ENDPOINT = "https://as.example.com/authorize"
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
UNREGISTERED_REDIRECT_URI = "https://evil.example/cb"
# tokenAuthMethod as registered -> (client fields, the harness's PAR_AUTH)
AUTH_METHODS: dict[str, tuple[dict[str, str], str]] = {
    "CLIENT_SECRET_BASIC": ({}, "basic"),
    "CLIENT_SECRET_POST": ({"tokenAuthMethod": "CLIENT_SECRET_POST"}, "post"),
    "NONE": ({"clientType": "PUBLIC"}, "none"),
}


@pytest.fixture
def service(live_server: LiveServer) -> ServiceHandle:
    created = live_server.create_service(authorizationEndpoint=AUTHORIZATION_ENDPOINT)
    assert created.body["authorizationEndpoint"] == AUTHORIZATION_ENDPOINT
    return created


def build_url(
    node: str,
    server: LiveServer,
    service: ServiceHandle,
    client: ClientHandle,
    *,
    auth: str,
    secret: str | None = None,
    extra_params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run push-openid-client.mjs once and return its JSON line."""
    return run_harness(
        node, OPENID_CLIENT_SCRIPT, server, service, client, auth=auth, secret=secret, extra_params=extra_params
    )


@pytest.mark.parametrize("method", list(AUTH_METHODS))
def test_authorization_url_with_par(
    method: str, live_server: LiveServer, service: ServiceHandle, node_harness: str
) -> None:
    """PAR-07 / GEN-04: each client authentication method works as openid-client sends it. The URL for
    the authorization endpoint carries only client_id and request_uri (RFC 9126 §4); PAR-14: the
    request_uri is a URN."""
    fields, auth = AUTH_METHODS[method]
    client = live_server.create_client(service, **fields)
    assert client.body["tokenAuthMethod"] == method
    result = build_url(node_harness, live_server, service, client, auth=auth, secret=client.secret)
    assert result["ok"] is True, result
    url = result["authorization_url"]
    assert url.startswith(AUTHORIZATION_ENDPOINT), result
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTHORIZATION_ENDPOINT, result
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    assert query == {"client_id": [str(client.id)], "request_uri": [result["request_uri"]]}, result
    assert result["client_id"] == str(client.id)
    request_uri = result["request_uri"]
    assert request_uri.startswith(REQUEST_URI_PREFIX), result
    assert len(request_uri) - len(REQUEST_URI_PREFIX) >= 43, result


def test_unregistered_redirect_uri_is_invalid_request(
    live_server: LiveServer, service: ServiceHandle, node_harness: str
) -> None:
    """PAR-12 / PAR-20 / PAR-26: a redirect_uri that is not registered gets 400 invalid_request (GEN-05),
    which openid-client surfaces as a ResponseBodyError."""
    client = live_server.create_client(service)
    result = build_url(
        node_harness,
        live_server,
        service,
        client,
        auth="basic",
        secret=client.secret,
        extra_params={"redirect_uri": UNREGISTERED_REDIRECT_URI},
    )
    assert result["ok"] is False, result
    assert result["error"] == "ResponseBodyError", result
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
    result = build_url(node_harness, live_server, service, client, auth=auth, secret=f"wrong-{client.secret}")
    assert result["ok"] is False, result
    assert result["cause"]["error"] == "invalid_client", result
    assert result["cause"]["status"] in statuses, result
    if auth == "basic":
        assert result["error"] == "WWWAuthenticateChallengeError", result
        assert [challenge["scheme"] for challenge in result["cause"]["challenges"]] == ["basic"], result
