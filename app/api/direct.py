"""The hot endpoints reached without FastAPI's routing and request handling.

Why: the calls every authorization makes (the RFC 9126 push; the backend API's push, resolve and
consume) paid more CPU for the framework than for the protocol. Profiled under load
(bench/RESULTS.md), routing, dependency injection and the exception-handler and middleware layers
took about a third of a push. These endpoints take only ``(service_id, request, state)`` and read
their bodies themselves, so they can be called directly: one regular expression picks the route,
the id is parsed as FastAPI parses it, and the endpoint's ``Response`` is sent.

They stay declared as FastAPI routes, which document them (OpenAPI) and answer every other method
on their paths; a direct route is only a shorter way to the same endpoint function. Protocol errors
go through ``app.api.errors`` as everywhere else, the observation and size-limit middlewares wrap
both ways in, and anything unexpected is answered by ``UnhandledErrorMiddleware``.

Each such endpoint is marked ``@served_directly`` where its route is declared; ``app.main`` serves every
marked route here. The paths served so, and the handler each reaches (as tests/api/test_direct.py checks):

    POST /services/{service_id}/par                  app.api.par.pushed_authorization_request
    POST /api/{service_id}/pushed_auth_req           app.api.backend.pushed_auth_req
    POST /api/{service_id}/pushed_auth_req/resolve   app.api.authorization.resolve
    POST /api/{service_id}/pushed_auth_req/consume   app.api.authorization.consume
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import DatabaseId
from app.api.errors import UnhandledErrorMiddleware, par_server_error_response
from app.core import result_codes
from app.core.errors import ApiNotFound, ParServerError
from app.state import AppState

# The constraints of ``app.api.deps.IdPath``, so both ways in accept the same ids.
_DATABASE_ID = TypeAdapter(DatabaseId)
ServiceEndpoint = Callable[[int, Request, AppState], Awaitable[Response]]
EndpointT = TypeVar("EndpointT", bound=ServiceEndpoint)
_SERVED_DIRECTLY: set[Callable[..., Any]] = set()


def served_directly(endpoint: EndpointT) -> EndpointT:
    """Marks a route's endpoint to be served by ``DirectRoutes``, ahead of FastAPI's routing; its FastAPI
    route still documents it and answers every other method on its path."""
    _SERVED_DIRECTLY.add(endpoint)
    return endpoint


@dataclass(frozen=True, slots=True)
class DirectRoute:
    method: str
    path: str  # the template, e.g. /services/{service_id}/par: the route label of metrics and log lines
    endpoint: ServiceEndpoint


def direct_routes(routes: Iterable[BaseRoute]) -> list[DirectRoute]:
    """The routes among ``routes`` whose endpoints are marked ``@served_directly``; such an endpoint must
    take exactly ``(service_id, request, state)`` and its route have one method."""
    direct = []
    for route in routes:
        if not isinstance(route, APIRoute) or route.endpoint not in _SERVED_DIRECTLY:
            continue
        if route.methods is None or len(route.methods) != 1:
            raise TypeError(f"{route.path}: a direct route has one method")
        if list(inspect.signature(route.endpoint).parameters) != ["service_id", "request", "state"]:
            raise TypeError(f"{route.path}: a direct route's endpoint takes (service_id, request, state)")
        direct.append(DirectRoute(next(iter(route.methods)), route.path, route.endpoint))
    return direct


def path_id(text: str, name: str) -> int:
    """A numeric id from the path; any other text names nothing: a 404, worded as FastAPI's routes word it
    (``app.api.errors``)."""
    try:
        return _DATABASE_ID.validate_python(text)
    except ValidationError as error:
        raise ApiNotFound(
            f"invalid path.{name}: {error.errors()[0]['msg']}", result_code=result_codes.NO_SUCH_PATH
        ) from None


class DirectRoutes:
    """ASGI: ``routes`` for their method and path, ``fallback`` (FastAPI) for every other request."""

    def __init__(self, routes: Sequence[DirectRoute], state: Callable[[], AppState], fallback: ASGIApp) -> None:
        self._routes = {
            (route.method, re.compile(re.sub(r"\{service_id\}", r"(?P<service_id>[^/]+)", route.path))): route
            for route in routes
        }
        self._state = state
        self._fallback = fallback
        self._guarded = UnhandledErrorMiddleware(self._serve)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Routes are matched below the root path, as Starlette's router matches them.
            path, root_path = scope["path"], scope.get("root_path", "")
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
            for (method, pattern), route in self._routes.items():
                match = pattern.fullmatch(path) if scope["method"] == method else None
                if match is not None:
                    scope["route"] = route  # the observation middleware labels by route.path
                    scope["path_params"] = match.groupdict()
                    await self._guarded(scope, receive, send)
                    return
        await self._fallback(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: DirectRoute = scope["route"]
        request = Request(scope, receive)
        try:
            service_id = path_id(scope["path_params"]["service_id"], "service_id")
            response = await route.endpoint(service_id, request, self._state())
        except ParServerError as error:
            response = par_server_error_response(scope["path"], error)
        await response(scope, receive, send)


class ParServerApp(FastAPI):
    """FastAPI with ``front`` (the middlewares, then the direct routes) in front of its own stack."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.direct_routes: list[DirectRoute] = []
        self._front: ASGIApp = super().__call__

    def serve_in_front(self, routes: Sequence[DirectRoute], wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Serve ``routes`` directly, with ``wrap`` (the middlewares) around them and FastAPI. Their state
        is read from ``self.state.par`` on each request, as FastAPI's ``get_state`` reads it."""
        self.direct_routes = list(routes)
        self._front = wrap(DirectRoutes(self.direct_routes, self._app_state, fallback=super().__call__))

    def _app_state(self) -> AppState:
        state: AppState = self.state.par
        return state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)
