"""A client that disconnects mid-request is not a server error."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi import FastAPI

from tests.factories import ServiceHandle


async def test_client_disconnect_is_not_logged_as_an_error(
    app: FastAPI, service: ServiceHandle, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": service.par_path,
        "raw_path": service.par_path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"par.test")],
        "client": ("127.0.0.1", 1),
        "server": ("par.test", 80),
        "state": {},
    }
    with caplog.at_level(logging.INFO, logger="par_server"):
        await app(scope, receive, send)
    assert "unhandled" not in caplog.text
    assert sent == []
