"""A client that disconnects mid-request is not a server error."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi import FastAPI

from tests.factories import ServiceHandle


def post_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of a POST to ``path``, as uvicorn gives it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"host", b"par.test")],
        "client": ("127.0.0.1", 1),
        "server": ("par.test", 80),
        "state": {},
    }


async def test_client_disconnect_is_not_logged_as_an_error(
    app: FastAPI, service: ServiceHandle, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = post_scope(service.par_path, [(b"content-type", b"application/x-www-form-urlencoded")])
    with caplog.at_level(logging.INFO, logger="par_server"):
        await app(scope, receive, send)
    assert "unhandled" not in caplog.text
    assert sent == []


@pytest.mark.parametrize("where", ["direct route", "management API"])
async def test_a_request_cut_off_as_the_server_stops_is_a_503_not_a_traceback(
    app: FastAPI, service: ServiceHandle, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """uvicorn cancels the requests still running PAR_SHUTDOWN_GRACE_SECONDS after SIGTERM: one with no
    answer yet gets a 503 with Retry-After in its endpoint's format on a closing connection, its log line
    says 503, and the cancellation ends there (raised to uvicorn, it would log a stack trace and a 500)."""
    path = service.par_path if where == "direct route" else f"/api/{service.id}/client/create"
    sent: list[MutableMapping[str, Any]] = []
    body_never_comes = asyncio.Event()

    async def receive() -> dict[str, object]:
        await body_never_comes.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    content_type = b"application/json" if where == "management API" else b"application/x-www-form-urlencoded"
    headers = [(b"content-type", content_type), (b"content-length", b"100")]
    scope = post_scope(path, [*headers, (b"authorization", f"Bearer {service.token}".encode())])
    with caplog.at_level(logging.INFO, logger="par_server"):
        request = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.2)  # waiting for its body
        request.cancel()
        await asyncio.wait_for(request, 5)  # ends, the cancellation handled
    assert sent[0]["status"] == 503
    answered = dict(sent[0]["headers"])
    assert answered[b"retry-after"] == b"5" and answered[b"connection"] == b"close"
    body = json.loads(sent[1]["body"])
    expected = {"resultCode", "resultMessage"} if where == "management API" else {"error", "error_description"}
    assert set(body) == expected
    lines = [record for record in caplog.records if record.name == "par_server.request"]
    assert [line.__dict__["fields"]["status"] for line in lines] == [503]
    assert "Traceback" not in caplog.text and "unhandled" not in caplog.text
