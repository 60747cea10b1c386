"""The opening the backend API's push, resolve and consume share (app/api/backend_call.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import Factory, ServiceHandle

PUSH, RESOLVE, CONSUME = "pushed_auth_req", "pushed_auth_req/resolve", "pushed_auth_req/consume"
NO_PARAMETERS = "the request body does not contain 'parameters'"
NO_CONSUMPTION = "the request body must contain 'clientId' and 'requestUri'"


@pytest.mark.parametrize(
    ("path", "body", "result_code", "message"),
    [
        (PUSH, {}, "A245201", "the request body does not contain 'parameters'"),
        (RESOLVE, {}, "A004201", "the request body does not contain 'parameters'"),
        (CONSUME, {"clientId": "1"}, "A001203", "the request body must contain 'clientId' and 'requestUri'"),
        (
            CONSUME,
            {"clientId": "", "requestUri": "urn:x"},
            "A001203",
            "the request body must contain 'clientId' and 'requestUri'",
        ),
    ],
)
async def test_a_call_without_its_required_fields_is_400(
    client: httpx.AsyncClient, service: ServiceHandle, path: str, body: dict[str, Any], result_code: str, message: str
) -> None:
    response = await client.post(f"/api/{service.id}/{path}", json=body, headers=service.bearer)
    assert response.status_code == 400
    assert response.json() == {"resultCode": result_code, "resultMessage": f"[{result_code}] {message}"}


@pytest.mark.parametrize("path", [PUSH, RESOLVE, CONSUME])
async def test_an_unauthenticated_caller_learns_nothing_about_its_body(
    client: httpx.AsyncClient, service: ServiceHandle, path: str
) -> None:
    """The body is read first, but its problems are reported only to an authorized caller."""
    for content in ("{not json", "{}"):
        response = await client.post(
            f"/api/{service.id}/{path}", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 401
        assert response.json()["resultCode"] == "A001202"


@pytest.mark.parametrize("path", [PUSH, RESOLVE, CONSUME])
async def test_a_service_that_does_not_exist_is_404_for_the_admin_token(
    client: httpx.AsyncClient, factory: Factory, path: str
) -> None:
    response = await client.post(f"/api/1000000000001/{path}", json={}, headers=factory.admin)
    assert response.status_code == 404
    assert response.json()["resultCode"] == "A003202"
