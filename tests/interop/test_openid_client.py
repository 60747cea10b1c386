"""A third-party relying-party library, openid-client (Node), builds authorization URLs with PAR over real HTTP.

The harness (push-openid-client.mjs) uses openid-client's high-level API only: ``discovery`` (OpenID
Connect Discovery at ``<issuer>/.well-known/openid-configuration``, with openid-client's issuer check,
META-01), then ``buildAuthorizationUrlWithPAR``, which pushes a PKCE request to the advertised
``pushed_authorization_request_endpoint`` (PAR-04) and returns the URL for the advertised
``authorization_endpoint``. The service sets ``authorizationEndpoint`` (OPENID_CLIENT in conftest.py),
since the metadata has none otherwise and openid-client needs it. The error cases, the same for both
Node clients, are in test_node_errors.py.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.interop.conftest import AUTH_METHODS, AUTHORIZATION_ENDPOINT, OPENID_CLIENT, HarnessRunner

pytestmark = pytest.mark.interop

HARNESS = OPENID_CLIENT  # the service has authorizationEndpoint = AUTHORIZATION_ENDPOINT


@pytest.mark.parametrize("method", list(AUTH_METHODS))
def test_authorization_url_with_par(method: str, run_harness: HarnessRunner) -> None:
    """PAR-07 / GEN-04: each client authentication method works as openid-client sends it. The URL for
    the authorization endpoint carries only client_id and request_uri (RFC 9126 §4); PAR-14: the
    request_uri is a URN."""
    client, result = run_harness.push_with(method)
    url = result["authorization_url"]
    assert url.startswith(AUTHORIZATION_ENDPOINT), result
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTHORIZATION_ENDPOINT, result
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    assert query == {"client_id": [str(client.id)], "request_uri": [result["request_uri"]]}, result
    assert result["client_id"] == str(client.id)
