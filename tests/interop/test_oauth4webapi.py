"""A third-party client, oauth4webapi (Node), pushes authorization requests over real HTTP.

The harness (push.mjs) discovers the service's RFC 8414 metadata from its issuer, which oauth4webapi
checks against the issuer it was given (META-01), then pushes a PKCE request to the advertised
``pushed_authorization_request_endpoint`` (PAR-04) and prints one JSON line. The error cases, the
same for both Node clients, are in test_node_errors.py.
"""

from __future__ import annotations

import pytest

from tests.factories import ServiceHandle
from tests.interop.conftest import AUTH_METHODS, DURATION, OAUTH4WEBAPI, HarnessRunner

pytestmark = pytest.mark.interop

HARNESS = OAUTH4WEBAPI  # the service has pushedAuthReqDuration = DURATION


@pytest.mark.parametrize("method", list(AUTH_METHODS))
def test_push_succeeds(method: str, service: ServiceHandle, run_harness: HarnessRunner) -> None:
    """PAR-07 / GEN-04: each client authentication method works as oauth4webapi sends it (Basic with
    form-encoded credentials, client_id also in the body: PAR-09). PAR-13: 201 with request_uri and
    expires_in = the service's pushedAuthReqDuration. PAR-14 / PAR-15: URN with a >= 256-bit reference."""
    _, result = run_harness.push_with(method)
    assert result["status"] == 201
    assert result["expires_in"] == service.body["pushedAuthReqDuration"] == DURATION
