"""Routes served outside FastAPI's routing (app/api/direct.py): same answers, same document."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from app.api.direct import DirectRoute, DirectRoutes, path_id
from tests.factories import ClientHandle, ServiceHandle, par_params


async def test_other_methods_on_a_direct_route_are_405_in_the_rfc_format(
    client: httpx.AsyncClient, service: ServiceHandle
) -> None:
    """RFC 9110 §15.5.6: a 405 carries Allow; the body is RFC 6749 §5.2 JSON like every error there."""
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(method, service.par_path)
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(("path_id_text", "status"), [("12x", 400), ("-1", 400), ("1" * 25, 400), ("1e3", 400)])
async def test_malformed_service_ids_are_400_invalid_request(
    client: httpx.AsyncClient, basic_client: ClientHandle, path_id_text: str, status: int
) -> None:
    """The direct route reads ids as FastAPI's routes do: a malformed id is invalid_request, never a 500."""
    response = await client.post(f"/services/{path_id_text}/par", data=par_params(basic_client))
    assert response.status_code == status
    assert response.json()["error"] == "invalid_request"
    assert "path.service_id" in response.json()["error_description"]


async def test_the_openapi_document_describes_the_direct_push_route(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/services/{service_id}/par"]["post"]
    assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]
    assert set(operation["responses"]) == {"201", "4XX", "5XX"}
    assert operation["parameters"][0]["name"] == "service_id"
    ref = operation["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.removeprefix("#/components/schemas/") in app.openapi()["components"]["schemas"]


async def test_the_observation_middleware_labels_direct_routes_by_template(
    client: httpx.AsyncClient, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Metrics and log lines name the route, not the path (no per-service label explosion)."""
    await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    metrics = (await client.get("/metrics")).text
    assert 'route="/services/{service_id}/par"' in metrics
    assert f"/services/{service.id}/par" not in metrics


async def _boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def _echo_id(request: Request) -> Response:
    return Response(str(path_id(request, "item_id")), media_type="text/plain")


async def _not_found(scope: object, receive: object, send: object) -> None:
    raise AssertionError("the fallback must not be called for a direct route")


async def test_an_unexpected_error_in_a_direct_route_is_a_json_500_without_details() -> None:
    routes = DirectRoutes(
        [DirectRoute("POST", "/things/{item_id}", _boom, {}), DirectRoute("GET", "/ids/{item_id}", _echo_id, {})],
        fallback=_not_found,  # type: ignore[arg-type]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=routes), base_url="http://test") as http:
        response = await http.post("/things/1")
        assert response.status_code == 500
        assert response.json() == {
            "error": "server_error",
            "error_description": "the server could not process the request",
        }
        assert "a bug" not in response.text
        assert (await http.get("/ids/0042")).text == "42"
