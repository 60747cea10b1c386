"""Endpoints served as plain ASGI applications, in front of FastAPI's routing.

Why: a push is the request every authorization starts with, and in FastAPI it paid for the
framework more than for the protocol. Profiled under load (bench/RESULTS.md), routing, dependency
injection, the exception-handler and middleware layers and the per-request telemetry check took
about a third of a push's CPU. A direct route is matched by one regular expression, gets a
Starlette ``Request`` and returns a ``Response``; the rest of the app is unchanged, FastAPI serves
every other path, and ``ParServerApp.openapi`` documents the direct routes with the others.

What a route answers does not change: protocol errors go through ``app.api.errors`` like
everywhere else, the observation and size-limit middlewares wrap both, and anything unexpected is
answered by ``UnhandledErrorMiddleware``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import TypeAdapter, ValidationError, conint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import DB_INT_MAX
from app.api.errors import UnhandledErrorMiddleware, error_response, par_server_error_response
from app.core.errors import InvalidRequest, ParServerError

# Ids are BIGINT columns; parsed like FastAPI parses its ``IdPath`` (pydantic's lax int), so a direct
# route and a FastAPI route accept the same ids.
_DATABASE_ID = TypeAdapter(conint(ge=0, le=DB_INT_MAX))


@dataclass(frozen=True, slots=True)
class DirectRoute:
    method: str
    path: str  # the template, e.g. /services/{service_id}/par: the route label of metrics and log lines
    endpoint: Callable[[Request], Awaitable[Response]]
    openapi_operation: dict[str, Any]

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path))


def path_id(request: Request, name: str) -> int:
    """A numeric id from the path; a malformed one is a 400, as FastAPI would answer it."""
    try:
        return _DATABASE_ID.validate_python(request.path_params[name])
    except ValidationError as error:
        raise InvalidRequest(f"invalid path.{name}: {error.errors()[0]['msg']}") from None


class DirectRoutes:
    """ASGI: the direct routes, then ``fallback`` (FastAPI) for every other request."""

    def __init__(self, routes: Sequence[DirectRoute], fallback: ASGIApp) -> None:
        self._routes = [(route.pattern, route) for route in routes]
        self._fallback = fallback
        self._guarded = UnhandledErrorMiddleware(self._serve)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for pattern, route in self._routes:
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                if scope["method"] != route.method:
                    response = error_response(path, 405, "method not allowed", {"Allow": route.method})
                    await response(scope, receive, send)
                    return
                scope["route"] = route
                scope["path_params"] = match.groupdict()
                await self._guarded(scope, receive, send)
                return
        await self._fallback(scope, receive, send)

    @staticmethod
    async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
        route: DirectRoute = scope["route"]
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request)
        except ParServerError as error:
            response = par_server_error_response(scope["path"], error)
        await response(scope, receive, send)


class ParServerApp(FastAPI):
    """FastAPI with ``front`` (the middlewares and the direct routes) in front of its own stack."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.direct_routes: list[DirectRoute] = []
        self._front: ASGIApp = super().__call__

    def serve_in_front(self, routes: Sequence[DirectRoute], wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Serve ``routes`` directly, with ``wrap`` (the middlewares) around them and FastAPI."""
        self.direct_routes = list(routes)
        self._front = wrap(DirectRoutes(self.direct_routes, fallback=super().__call__))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            for route in self.direct_routes:
                schema["paths"].setdefault(route.path, {})[route.method.lower()] = route.openapi_operation
        return self.openapi_schema or {}
