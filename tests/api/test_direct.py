"""Routes served outside FastAPI's routing (app/api/direct.py): same answers, same document."""

from __future__ import annotations

from typing import cast

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.api import authorization, backend, par
from app.api.body_size import SizeLimits
from app.api.deps import StateDep
from app.api.direct import DirectRoute, DirectRoutes, ParServerApp, ServiceEndpoint, direct_routes, served_directly
from app.api.observability import Metrics
from app.state import AppState
from tests.factories import ClientHandle, Factory, ServiceHandle, par_params

DIRECT_PATHS = [
    "/services/{service_id}/par",
    "/api/{service_id}/pushed_auth_req",
    "/api/{service_id}/pushed_auth_req/resolve",
    "/api/{service_id}/pushed_auth_req/consume",
]


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


# Spellings of a service's id ({id}) that name nothing, and malformed ids.
NON_CANONICAL_IDS = [
    "{head}_{tail}",
    "%20{id}",
    "{id}%20",
    "+{id}",
    "0{id}",
    "{id}.0",
    "12x",
    "-1",
    "-0",
    "00",
    "1" * 25,
    "1e3",
    "%D9%A1",
    "%EF%BC%91",
]


@pytest.mark.parametrize("template", NON_CANONICAL_IDS)
async def test_only_canonical_ids_name_a_service(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle, template: str
) -> None:
    """An id in a path is its decimal digits, without sign, spaces, underscores or leading zeros; any other
    text names nothing: a 404 in the endpoint's format (never the service whose id it spells), never a 500."""
    text = template.format(id=service.id, head=str(service.id)[:3], tail=str(service.id)[3:])
    rfc = await client.post(f"/services/{text}/par", data=par_params(basic_client), headers=basic_client.basic())
    assert rfc.status_code == 404 and rfc.json()["error"] == "not_found", rfc.text
    assert "path.service_id" in rfc.json()["error_description"]
    metadata = await client.get(f"/.well-known/oauth-authorization-server/services/{text}")
    assert metadata.status_code == 404 and metadata.json()["error"] == "not_found", metadata.text
    for method, path in [
        ("POST", f"/api/{text}/pushed_auth_req"),
        ("GET", f"/api/{text}/service/get"),
        ("GET", f"/api/{text}/client/get/list"),
        ("DELETE", f"/api/{service.id}/service/token/delete/{text}"),
    ]:
        headers = factory.admin if "/token/" in path else service.bearer
        api = await client.request(method, path, json={"parameters": "a=b"}, headers=headers)
        assert api.status_code == 404 and api.json()["resultCode"] == "A001210", (path, api.text)


async def test_the_canonical_id_names_the_service(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    response = await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    assert response.status_code == 201


def test_the_hot_endpoints_are_direct_routes_and_documented(app: ParServerApp) -> None:
    """Each direct route is also a FastAPI route, so the OpenAPI document describes it."""
    documented = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    direct = {("POST", path) for path in DIRECT_PATHS}
    assert direct <= documented
    assert {(route.method, route.path) for route in app.direct_routes} == direct


def test_each_direct_path_reaches_the_handler_its_route_declares(app: ParServerApp) -> None:
    """As the table in app/api/direct.py lists them."""
    assert {route.path: route.endpoint for route in app.direct_routes} == {
        DIRECT_PATHS[0]: par.pushed_authorization_request,
        DIRECT_PATHS[1]: backend.pushed_auth_req,
        DIRECT_PATHS[2]: authorization.resolve,
        DIRECT_PATHS[3]: authorization.consume,
    }


def test_only_endpoints_of_the_direct_shape_can_be_direct_routes() -> None:
    router = APIRouter()

    @router.post("/x/{service_id}")
    async def other_shape(service_id: int, request: Request) -> Response:
        return Response()

    served_directly(cast(ServiceEndpoint, other_shape))
    with pytest.raises(TypeError):
        direct_routes(router.routes)


def test_a_direct_route_has_one_method() -> None:
    router = APIRouter()

    @router.api_route("/x/{service_id}", methods=["GET", "POST"])
    @served_directly
    async def two_methods(service_id: int, request: Request, state: StateDep) -> Response:
        return Response()

    with pytest.raises(TypeError):
        direct_routes(router.routes)


def test_only_marked_endpoints_are_direct_routes() -> None:
    router = APIRouter()

    @router.post("/x/{service_id}")
    async def unmarked(service_id: int, request: Request, state: StateDep) -> Response:
        return Response()

    @router.post("/y/{service_id}")
    @served_directly
    async def marked(service_id: int, request: Request, state: StateDep) -> Response:
        return Response()

    assert direct_routes(router.routes) == [DirectRoute("POST", "/y/{service_id}", marked)]


async def test_the_observation_middleware_labels_direct_routes_by_template(
    client: httpx.AsyncClient, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Metrics and log lines name the route, not the path (no per-service label explosion)."""
    await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    metrics = (await client.get("/metrics")).text
    assert 'route="/services/{service_id}/par"' in metrics
    assert f"/services/{service.id}/par" not in metrics


async def _boom(service_id: int, request: Request, state: AppState) -> Response:
    raise RuntimeError("a bug")


async def _echo_id(service_id: int, request: Request, state: AppState) -> Response:
    return Response(str(service_id), media_type="text/plain")


async def _fallback(scope: Scope, receive: Receive, send: Send) -> None:
    await Response("fallback", status_code=404)(scope, receive, send)


async def test_an_unexpected_error_in_a_direct_route_is_a_json_500_without_details() -> None:
    routes = DirectRoutes(
        [DirectRoute("POST", "/things/{service_id}", _boom), DirectRoute("GET", "/ids/{service_id}", _echo_id)],
        lambda: cast(AppState, None),
        _fallback,
        limits=SizeLimits(max_body_bytes=1024, max_api_body_bytes=1024, max_header_bytes=8192),
        metrics=Metrics(),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=routes), base_url="http://test") as http:
        response = await http.post("/things/1")
        assert response.status_code == 500
        assert response.json() == {
            "error": "server_error",
            "error_description": "the server could not process the request",
        }
        assert "a bug" not in response.text
        assert (await http.get("/ids/42")).text == "42"
        assert (await http.get("/ids/0042")).status_code == 404  # one spelling per id, as FastAPI's IdPath
        assert (await http.post("/ids/42")).text == "fallback"  # another method: not the direct route
        assert (await http.get("/ids/42/more")).text == "fallback"
    mounted = httpx.ASGITransport(app=routes, root_path="/par-server")
    async with httpx.AsyncClient(transport=mounted, base_url="http://test") as http:
        assert (await http.get("/par-server/ids/7")).text == "7"  # matched below the root path
