"""HEAD answered as GET without content (``app.api.head``, RFC 9110 §9.3.2), except under /api/."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import FastAPI

from app.api.observability import JsonFormatter
from tests.conftest import BASE_URL
from tests.factories import ClientHandle, ServiceHandle

SAFE_GETS = [
    "/healthz",
    "/readyz",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/.well-known/oauth-authorization-server/services/{service_id}",
    "/services/{service_id}/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server/services/1",  # a service that does not exist: 404 alike
]


@pytest.mark.parametrize("path", SAFE_GETS)
async def test_head_answers_as_get_without_content(
    client: httpx.AsyncClient, service: ServiceHandle, path: str
) -> None:
    url = path.format(service_id=service.id)
    got, head = await client.get(url), await client.head(url)
    assert head.status_code == got.status_code
    assert head.content == b""
    for field in ("content-type", "content-length", "cache-control", "etag"):
        assert head.headers.get(field) == got.headers.get(field), field


async def test_head_on_a_post_only_route_is_405_with_allow(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    head = await client.head(service.par_path, headers=basic_client.basic())
    assert head.status_code == 405
    assert head.headers["allow"] == "POST" and head.content == b""


async def test_head_under_api_stays_405_as_a_get_there_may_change_state(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Authlete's secret refresh is a GET: a HEAD run as that GET would replace the client's secret and
    drop the new one with the content."""
    refresh = f"/api/{service.id}/client/secret/refresh/{basic_client.id}"
    head = await client.head(refresh, headers=service.bearer)
    assert head.status_code == 405 and head.content == b""
    still_works = await client.post(
        service.par_path,
        data={"response_type": "code", "redirect_uri": "https://client.example.org/cb", "scope": "openid"},
        headers=basic_client.basic(),
    )
    assert still_works.status_code != 401, still_works.text  # the old secret still authenticates


async def test_behind_a_path_prefix_head_under_api_stays_405(
    app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """The server puts the root path (/par, a proxy's prefix) in front of the request's path: /api is
    recognised below it, so HEAD there does not run the secret refresh either."""
    transport = httpx.ASGITransport(app=app, root_path="/par")
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        head = await http.head(f"/par/api/{service.id}/client/secret/refresh/{basic_client.id}", headers=service.bearer)
        assert head.status_code == 405
        assert (await http.head("/par/healthz")).status_code == 200
        still_works = await http.post(
            f"/par/services/{service.id}/par",
            data={"response_type": "code", "redirect_uri": "https://client.example.org/cb", "scope": "openid"},
            headers=basic_client.basic(),
        )
    assert still_works.status_code != 401, still_works.text  # the old secret still authenticates


async def test_the_request_log_line_says_head(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="par_server.request")
    await client.head("/healthz")
    [record] = [r for r in caplog.records if r.name == "par_server.request"]
    line = json.loads(JsonFormatter().format(record))
    assert (line["method"], line["route"], line["status"]) == ("HEAD", "/healthz", 200)
