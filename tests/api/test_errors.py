"""The one error mapping: right format on every path, no stack traces, nothing secret in logs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from tests.conftest import ADMIN_TOKEN, BASE_URL, make_settings
from tests.factories import ClientHandle, Factory, ServiceHandle, par_params


@pytest.fixture
async def unreachable_database_client() -> AsyncIterator[httpx.AsyncClient]:
    """The app with a database that refuses connections (nothing listens on port 1)."""
    app = create_app(make_settings("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", db_pool_timeout_seconds=1.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        yield http
    await app.state.par.aclose()


async def test_database_down_is_a_503_in_each_format(
    unreachable_database_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Never a stack trace: 503 with Retry-After, temporarily_unavailable JSON at the RFC endpoint, a
    ResultError at /api."""
    rfc = await unreachable_database_client.post("/services/1000000000001/par", data={"client_id": "1"})
    assert rfc.status_code == 503 and int(rfc.headers["retry-after"]) > 0
    assert rfc.json()["error"] == "temporarily_unavailable"
    assert rfc.headers["cache-control"] == "no-store"
    api = await unreachable_database_client.post(
        "/api/1000000000001/pushed_auth_req",
        json={"parameters": "client_id=1"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert api.status_code == 503
    assert set(api.json()) == {"resultCode", "resultMessage"}
    assert "Traceback" not in caplog.text and "127.0.0.1:1" not in rfc.text + api.text


async def test_readyz_reports_the_database(
    unreachable_database_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    down = await unreachable_database_client.get("/readyz")
    assert down.status_code == 503 and down.json()["status"] == "unavailable"
    assert (await client.get("/readyz")).json() == {"status": "ok", "database": "ok", "migrations": "current"}
    assert (await unreachable_database_client.get("/healthz")).status_code == 200


async def test_streamed_oversized_body_is_413_json(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    """PAR-23 without a Content-Length: bytes are counted as they arrive."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    response = await client.post(
        service.par_path, content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


async def test_unknown_paths_answer_in_their_format(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).json()["error"] == "not_found"
    api = await client.get("/api/nope/nothing", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert api.status_code == 404 and set(api.json()) == {"resultCode", "resultMessage"}


async def test_behind_a_path_prefix_errors_keep_their_path_s_format(app: FastAPI, service: ServiceHandle) -> None:
    """Behind a proxy that mounts the server at /par (ASGI root_path, which the server puts in front of the
    path), /api answers in Authlete's format and with its own body limit, as without the prefix."""
    transport = httpx.ASGITransport(app=app, root_path="/par")
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        api = await http.get("/par/api/nope/nothing", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert api.status_code == 404 and set(api.json()) == {"resultCode", "resultMessage"}
        assert (await http.get("/par/nope")).json()["error"] == "not_found"
        oversized = await http.post(
            f"/par/api/{service.id}/pushed_auth_req",
            content=b"x" * 1_200_000,
            headers={**service.bearer, "Content-Type": "application/json"},
        )
        assert oversized.status_code == 413 and oversized.json()["resultCode"] == "A001212"
        missing = await http.post("/par/services/1/par", data={"client_id": "x"})
        assert missing.status_code in (401, 404) and set(missing.json()) == {"error", "error_description"}


async def test_secrets_and_parameters_never_reach_the_logs(
    client: httpx.AsyncClient,
    factory: Factory,
    service: ServiceHandle,
    basic_client: ClientHandle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Standards: secrets and request parameters never appear in logs, on success or failure."""
    caplog.set_level(logging.DEBUG)
    state = "state-value-that-must-not-be-logged"
    post_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_POST")
    await client.post(service.par_path, data=par_params(basic_client, state=state), headers=basic_client.basic())
    await client.post(service.par_path, data=par_params(basic_client, state=state), headers=basic_client.basic("x"))
    await client.post(service.par_path, data=par_params(post_client, state=state, client_secret=post_client.secret))
    await client.post(
        f"/api/{service.id}/pushed_auth_req",
        headers=service.bearer,
        json={
            "parameters": urlencode(par_params(basic_client, state=state, scope="admin")),
            "clientId": str(basic_client.id),
            "clientSecret": basic_client.secret,
        },
    )
    logged = caplog.text
    for secret in (state, basic_client.secret, post_client.secret, service.token, ADMIN_TOKEN):
        assert secret and secret not in logged


@pytest.mark.parametrize("path", ["/services/1000000000001/par", "/api/1000000000001/pushed_auth_req"])
async def test_oversized_headers_are_431_in_the_path_format(client: httpx.AsyncClient, path: str) -> None:
    """Header size limits are a setting (PAR_MAX_HEADER_BYTES, 16 KiB by default)."""
    response = await client.post(path, content=b"", headers={"X-Padding": "p" * 20_000})
    assert response.status_code == 431
    if path.startswith("/api/"):
        assert response.json()["resultCode"] == "A001216"
    else:
        assert response.json()["error"] == "invalid_request"


async def test_a_trailing_slash_is_not_redirected(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """No 307 to a Location built from the Host header, which a client would follow with its credentials:
    a 404 in the path's format, like any other path that names no endpoint."""
    headers = {**basic_client.basic(), "Host": "evil.example"}
    rfc = await client.post(service.par_path + "/", data=par_params(basic_client), headers=headers)
    assert rfc.status_code == 404 and "location" not in rfc.headers
    assert rfc.json()["error"] == "not_found" and rfc.headers["cache-control"] == "no-store"
    for method, path in [
        ("POST", f"/api/{service.id}/pushed_auth_req/"),
        ("GET", f"/api/{service.id}/service/get/"),
        ("GET", "/api/service/get/list/"),
    ]:
        api = await client.request(method, path, json={}, headers={**service.bearer, "Host": "evil.example"})
        assert api.status_code == 404 and "location" not in api.headers, path
        assert api.json()["resultCode"] == "A001210" and api.headers["cache-control"] == "no-store"
    metadata = await client.get(f"/.well-known/oauth-authorization-server/services/{service.id}/")
    assert metadata.status_code == 404 and metadata.json()["error"] == "not_found"


@pytest.mark.parametrize("media_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_streamed_oversized_backend_body_is_413_result_error(
    client: httpx.AsyncClient, service: ServiceHandle, media_type: str
) -> None:
    """A direct route counts a body without a Content-Length as it arrives, whether it is read whole (JSON)
    or parsed as a form."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1100):
            yield b"x" * 1024

    response = await client.post(
        f"/api/{service.id}/pushed_auth_req",
        content=chunks(),
        headers={**service.bearer, "Content-Type": media_type},
    )
    assert response.status_code == 413, response.text
    assert response.json()["resultCode"] == "A001212"  # as when the Content-Length declares it
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/{id}/client/secret/refresh/1", "GET, POST"),  # two routes on one path
        ("HEAD", "/api/{id}/client/secret/refresh/1", "GET, POST"),  # HEAD is not answered under /api
        ("GET", "/services/{id}/par", "POST"),
        ("DELETE", "/api/service/create", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
        ("POST", "/docs", "GET, HEAD"),  # not in the OpenAPI document
        ("PUT", "/.well-known/oauth-authorization-server/services/{id}", "GET, HEAD"),
    ],
)
async def test_a_405_allows_every_method_of_its_path(
    client: httpx.AsyncClient, service: ServiceHandle, method: str, path: str, allow: str
) -> None:
    """RFC 9110 §15.5.6: the Allow header of a 405 lists the target resource's supported methods, all of
    them, whichever route of the path the router tried first."""
    response = await client.request(method, path.format(id=service.id), headers=service.bearer)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
