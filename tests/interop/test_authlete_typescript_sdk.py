"""Authlete's TypeScript SDK (``@authlete/typescript-sdk``), unchanged but for its ``serverURL``, drives the
management and backend APIs over real HTTP (``authlete-ts-sdk.mjs``, README.md there).

The SDK parses every answer with its strict (zod) schemas, so this also checks that par-server's answers
have the types Authlete's do.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.factories import REDIRECT_URI
from tests.interop.conftest import INTEROP_DIR, REQUEST_URI_PREFIX, LiveServer

pytestmark = pytest.mark.interop

SCRIPT = INTEROP_DIR / "authlete-ts-sdk.mjs"


@pytest.fixture
def operations(node_harness: str, live_server: LiveServer) -> dict[str, dict[str, Any]]:
    """Run the script against ``live_server`` once; its operations by name."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PAR_")}
    env.update(
        PAR_BASE_URL=live_server.base_url, PAR_ADMIN_TOKEN=live_server.admin_token, PAR_REDIRECT_URI=REDIRECT_URI
    )
    completed = subprocess.run(
        [node_harness, str(SCRIPT)], cwd=INTEROP_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    report = f"{SCRIPT.name}: exit {completed.returncode}\nstdout: {completed.stdout}\nstderr: {completed.stderr}"
    lines = completed.stdout.splitlines()
    assert len(lines) == 1, report
    output: dict[str, Any] = json.loads(lines[0])
    assert output["ok"] is True and completed.returncode == 0, report
    result: dict[str, dict[str, Any]] = output["operations"]
    return result


def succeeded(operations: dict[str, dict[str, Any]], name: str) -> Any:
    operation = operations[name]
    assert operation["ok"] is True, f"{name}: {json.dumps(operation, indent=1)}"
    return operation["result"]


def test_service_calls(operations: dict[str, dict[str, Any]], live_server: LiveServer) -> None:
    """service.create, service.list and service.delete with the admin token, service.get and
    service.update with a service access token; the update changes the name and keeps the scopes, and a
    deleted service is not found."""
    created = succeeded(operations, "service.create")
    service_id = created["apiKey"]
    assert created["serviceName"] == "typescript sdk service"
    assert [scope["name"] for scope in created["supportedScopes"]] == ["openid", "profile"]
    assert created["issuer"] == f"{live_server.base_url}/services/{service_id}"
    listed = succeeded(operations, "service.list")
    assert [service["apiKey"] for service in listed["services"]] == [service_id]
    assert succeeded(operations, "service.get")["serviceName"] == "typescript sdk service"
    updated = succeeded(operations, "service.update")
    assert updated["serviceName"] == "renamed typescript sdk service"
    assert [scope["name"] for scope in updated["supportedScopes"]] == ["openid", "profile"]
    succeeded(operations, "service.delete")  # with the admin token, last of all
    deleted = operations["service.get.deleted"]
    assert deleted["ok"] is False and deleted["status"] == 404, deleted


def test_client_calls(operations: dict[str, dict[str, Any]]) -> None:
    """client.create answers the secret once; get and list show the client; update renames it; delete
    removes it (a later get is the SDK's error for a 404)."""
    created = succeeded(operations, "client.create")
    client_id = created["clientId"]
    assert created["clientSecret"]
    assert (created["clientType"], created["tokenAuthMethod"]) == ("CONFIDENTIAL", "CLIENT_SECRET_BASIC")
    fetched = succeeded(operations, "client.get")
    assert (fetched["clientId"], fetched["clientName"], fetched["redirectUris"]) == (
        client_id,
        "typescript sdk client",
        [REDIRECT_URI],
    )
    assert "clientSecret" not in fetched
    assert [client["clientId"] for client in succeeded(operations, "client.list")["clients"]] == [client_id]
    updated = succeeded(operations, "client.update")
    assert updated["clientName"] == "renamed typescript sdk client"
    assert updated["redirectUris"] == [REDIRECT_URI]
    succeeded(operations, "client.delete")
    deleted = operations["client.get.deleted"]
    assert deleted["ok"] is False and deleted["status"] == 404, deleted


def test_secret_calls_and_push(operations: dict[str, dict[str, Any]]) -> None:
    """refreshSecret answers a new generated secret, updateSecret sets the client's own; the push with the
    new secret is CREATED with a request_uri, the refreshed (replaced) one is refused."""
    refreshed = succeeded(operations, "client.management.refreshSecret")
    assert refreshed["newClientSecret"].startswith("parcs")
    updated = succeeded(operations, "client.management.updateSecret")
    assert updated["newClientSecret"] == "typescript-sdk-own-secret-0123456789abcdef"
    pushed = succeeded(operations, "pushedAuthorization.create")
    assert pushed["action"] == "CREATED", pushed
    assert pushed["requestUri"].startswith(REQUEST_URI_PREFIX)
    refused = succeeded(operations, "pushedAuthorization.create.oldSecret")
    assert refused["action"] == "UNAUTHORIZED", refused
    assert "requestUri" not in refused
