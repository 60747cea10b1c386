"""Both Node clients (oauth4webapi through push.mjs, openid-client through push-openid-client.mjs) get
par-server's OAuth errors over real HTTP, with the error, status and challenge they surface them as.

Each test runs once per client (the ``harness`` parameter: ``oauth4webapi``, ``openid-client``), with the
service that client's own tests use (conftest.py).
"""

from __future__ import annotations

import pytest

from tests.factories import ServiceHandle
from tests.interop.conftest import HARNESSES, UNREGISTERED_REDIRECT_URI, HarnessRunner, LiveServer

pytestmark = [pytest.mark.interop, pytest.mark.parametrize("harness", HARNESSES)]


def test_unregistered_redirect_uri_is_invalid_request(
    live_server: LiveServer, service: ServiceHandle, run_harness: HarnessRunner
) -> None:
    """PAR-12 / PAR-20 / PAR-26: a redirect_uri that is not registered gets 400 invalid_request (GEN-05),
    which both clients surface as a ResponseBodyError."""
    client = live_server.create_client(service)
    result = run_harness(
        client, auth="basic", secret=client.secret, extra_params={"redirect_uri": UNREGISTERED_REDIRECT_URI}
    )
    assert result["ok"] is False, result
    assert result["error"] == "ResponseBodyError", result
    assert result["cause"]["error"] == "invalid_request", result
    assert result["cause"]["status"] == 400, result


@pytest.mark.parametrize(("auth", "statuses"), [("basic", {401}), ("post", {400, 401})])
def test_wrong_secret_is_invalid_client(
    auth: str, statuses: set[int], live_server: LiveServer, service: ServiceHandle, run_harness: HarnessRunner
) -> None:
    """GEN-05: invalid_client is 401 (with WWW-Authenticate) when the client used the Authorization
    header, 400 or 401 otherwise."""
    fields = {"tokenAuthMethod": "CLIENT_SECRET_POST"} if auth == "post" else {}
    client = live_server.create_client(service, **fields)
    result = run_harness(client, auth=auth, secret=f"wrong-{client.secret}")
    assert result["ok"] is False, result
    assert result["cause"]["error"] == "invalid_client", result
    assert result["cause"]["status"] in statuses, result
    if auth == "basic":
        assert result["error"] == "WWWAuthenticateChallengeError", result
        assert [challenge["scheme"] for challenge in result["cause"]["challenges"]] == ["basic"], result
