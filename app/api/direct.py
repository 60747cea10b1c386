"""The hot endpoints reached without FastAPI's routing, request handling and middlewares.

Why: the calls every authorization makes (the RFC 9126 push; the backend API's push, resolve and
consume) paid more CPU for the framework than for the protocol. Profiled under load
(bench/RESULTS.md), routing, dependency injection and the exception-handler and middleware layers
took about a third of a push. These endpoints take only ``(service_id, request, state)`` and read
their bodies themselves, so they can be called directly: one regular expression picks the route,
the id is parsed as FastAPI parses it, and the endpoint's ``Response`` is sent as two ASGI messages.

They stay declared as FastAPI routes, which document them (OpenAPI) and answer every other method
on their paths; a direct route is only a shorter way to the same endpoint function. What the
middlewares do for every other route is done here once, inline, with the same code: the size limits
(``app.api.body_size.SizeLimits``), the request id, latency, counters and log line
(``app.api.observability.observe_request``), protocol errors through ``app.api.errors``, and anything
unexpected answered as ``UnhandledErrorMiddleware`` answers it (``unhandled_error_response``).

Each such endpoint is marked ``@served_directly`` where its route is declared; ``app.main`` serves every
marked route here. The paths served so, and the handler each reaches (as tests/api/test_direct.py checks):

    POST /services/{service_id}/par                  app.api.par.pushed_authorization_request
    POST /api/{service_id}/pushed_auth_req           app.api.backend.pushed_auth_req
    POST /api/{service_id}/pushed_auth_req/resolve   app.api.authorization.resolve
    POST /api/{service_id}/pushed_auth_req/consume   app.api.authorization.consume
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.body_size import SizeLimits, header_facts
from app.api.deps import DB_INT_MAX, DatabaseId
from app.api.errors import (
    RETRY_AFTER_SECONDS,
    error_response,
    par_server_error_response,
    route_path,
    unhandled_error_response,
)
from app.api.observability import (
    CUT_OFF_STATUS,
    Metrics,
    TraceFields,
    observe_request,
    request_id_of,
    status_without_answer,
)
from app.api.openapi import with_security_schemes
from app.core import result_codes
from app.core.errors import ApiNotFound, ParServerError
from app.state import AppState

# The constraints of ``app.api.deps.IdPath``, so both ways in accept the same ids.
_DATABASE_ID = TypeAdapter(DatabaseId)
_MAX_ID_DIGITS = len(str(DB_INT_MAX))
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
    if text.isdigit() and text.isascii() and (text == "0" or text[0] != "0") and len(text) <= _MAX_ID_DIGITS:
        number = int(text)  # canonical digits (``app.api.deps.canonical_id``): what the TypeAdapter returns
        if number <= DB_INT_MAX:
            return number
    try:
        return _DATABASE_ID.validate_python(text)  # refuses it, in pydantic's words
    except ValidationError as error:
        raise ApiNotFound(
            f"invalid path.{name}: {error.errors()[0]['msg']}", result_code=result_codes.NO_SUCH_PATH
        ) from None


class DirectRequest(Request):
    """The request a direct route's endpoint gets: Starlette's, with its body read here, under the size
    limit of its path (``SizeLimits``), in one pass rather than through Starlette's stream."""

    def __init__(self, scope: Scope, receive: Receive, limits: SizeLimits) -> None:
        super().__init__(scope, receive)
        self._limits = limits

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            limit = self._limits.body_limit(route_path(self.scope))
            chunks: list[bytes] = []
            received, more = 0, True
            while more:
                event = await self._receive()
                if event["type"] == "http.disconnect":
                    self._is_disconnected = True
                    raise ClientDisconnect()
                chunk = event.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise self._limits.body_too_large(route_path(self.scope))
                chunks.append(chunk)
                more = event.get("more_body", False)
            self._stream_consumed = True
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The body, read (and limited) by ``body``: what ``form()`` parses."""
        yield await self.body()
        yield b""


class DirectRoutes:
    """ASGI: ``routes`` for their method and path, ``fallback`` (the middlewares around FastAPI) for
    every other request.

    A direct route does what the middlewares do for every other route, once and inline: the size
    limits (``app.api.body_size``), the request id, latency, counters and log line
    (``app.api.observability``), and the last-resort answer to anything unexpected (``app.api.errors``).
    """

    def __init__(
        self,
        routes: Sequence[DirectRoute],
        state: Callable[[], AppState],
        fallback: ASGIApp,
        *,
        limits: SizeLimits,
        metrics: Metrics,
        trace_fields: TraceFields | None = None,
    ) -> None:
        # One expression for every route: the route is the outer group that matched, the id its inner one.
        self._routes = {f"route{number}": route for number, route in enumerate(routes)}
        self._pattern = re.compile(
            "|".join(
                f"(?P<{name}>{re.escape(route.path).replace(re.escape('{service_id}'), f'(?P<{name}_id>[^/]+)')})"
                for name, route in self._routes.items()
            )
        )
        self._state = state
        self._fallback = fallback
        self._limits = limits
        self._metrics = metrics
        self._trace_fields = trace_fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Routes are matched below the root path, as Starlette's router matches them.
            match = self._pattern.fullmatch(route_path(scope))
            if match is not None and match.lastgroup is not None:
                route = self._routes[match.lastgroup]
                if scope["method"] == route.method:
                    await self._serve(route, match[f"{match.lastgroup}_id"], scope, receive, send)
                    return
        await self._fallback(scope, receive, send)

    async def _serve(self, route: DirectRoute, service_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        state = self._state()
        scope["route"] = route  # what the route label of metrics and log lines is read from, as elsewhere
        scope["path_params"] = {"service_id": service_id}
        scope["state"] = {}  # the endpoint's ``audit`` describes its outcome here
        header_bytes, declared_length, offered_id = header_facts(scope["headers"])
        request_id = request_id_of(offered_id)
        status = 500
        try:
            try:
                response = await self._answer(route, service_id, scope, receive, state, header_bytes, declared_length)
            except asyncio.CancelledError:
                status = CUT_OFF_STATUS  # no answer started: ParServerApp gives this one
                raise
            if response is None:
                status = status_without_answer(scope)
            else:
                status = response.status_code
                headers = response.raw_headers
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [*headers, (b"x-request-id", request_id.encode())],
                    }
                )
                await send({"type": "http.response.body", "body": response.body})
        finally:
            observe_request(
                self._metrics,
                route.path,
                scope["method"],
                status,
                time.perf_counter() - started,
                request_id,
                scope["state"].get("audit"),
                self._trace_fields,
            )

    async def _answer(
        self,
        route: DirectRoute,
        service_id: str,
        scope: Scope,
        receive: Receive,
        state: AppState,
        header_bytes: int,
        declared_length: bytes | None,
    ) -> Response | None:
        """The endpoint's response, or the error response in its path's format; None when the client left."""
        path = route_path(scope)
        refusal = self._limits.refusal(path, header_bytes, declared_length)
        if refusal is not None:
            return refusal
        request = DirectRequest(scope, receive, self._limits)
        try:
            return await route.endpoint(path_id(service_id, "service_id"), request, state)
        except ParServerError as error:
            return par_server_error_response(path, error)
        except ClientDisconnect:
            return None  # the client left before sending its whole request: nobody to answer, nothing broken
        except Exception as error:
            return unhandled_error_response(scope, error)


class ParServerApp(FastAPI):
    """FastAPI with ``front`` (the middlewares, then the direct routes) in front of its own stack, and an
    OpenAPI document with the security schemes FastAPI cannot derive (``app.api.openapi``)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.direct_routes: list[DirectRoute] = []
        self._front: ASGIApp = super().__call__
        self._metrics: Metrics | None = None
        self._trace_fields: TraceFields | None = None
        self._requests_in_flight = 0

    def serve_in_front(
        self,
        routes: Sequence[DirectRoute],
        wrap: Callable[[ASGIApp], ASGIApp],
        limits: SizeLimits,
        metrics: Metrics,
        trace_fields: TraceFields | None = None,
    ) -> None:
        """Serve ``routes`` directly, and every other request by FastAPI with ``wrap`` (the middlewares)
        around it. Their state is read from ``self.state.par`` on each request, as FastAPI's ``get_state``
        reads it."""
        self.direct_routes = list(routes)
        self._metrics, self._trace_fields = metrics, trace_fields
        self._front = DirectRoutes(
            self.direct_routes,
            self._app_state,
            wrap(super().__call__),
            limits=limits,
            metrics=metrics,
            trace_fields=trace_fields,
        )

    def openapi(self) -> dict[str, Any]:
        return with_security_schemes(super().openapi())  # FastAPI's document, built once

    def wrap_front(self, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Put ``wrap`` around everything, the direct routes included (the request spans of ``app.tracing``)."""
        self._front = wrap(self._front)

    def observe_protocol_answer(self, method: str, status: int, duration: float) -> None:
        """The request log line and metrics of a request the HTTP protocol answered without the application
        (``app.api.http_protocol``: 400, 408, 431, 503), under the route "unmatched"."""
        if self._metrics is not None:
            request_id = request_id_of(None)
            observe_request(self._metrics, "unmatched", method, status, duration, request_id, None, self._trace_fields)

    def _app_state(self) -> AppState:
        state: AppState = self.state.par
        return state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._front(scope, receive, send)
            return
        self._requests_in_flight += 1
        try:
            await self._front(scope, receive, send)
        except asyncio.CancelledError:
            await answer_cut_off(scope, receive, send)
        finally:
            self._requests_in_flight -= 1

    async def requests_ended(self, within: float) -> None:
        """Wait, at most ``within`` seconds, for the requests in flight to end. When uvicorn stops, it
        cancels the requests left after the grace period and then runs the lifespan's shutdown at once:
        this lets those answer their 503 (``answer_cut_off``) before the pool closes and the process ends."""
        deadline = time.monotonic() + within
        while self._requests_in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


async def answer_cut_off(scope: Scope, receive: Receive, send: Send) -> None:
    """A request cancelled before it was answered: uvicorn cancels the requests still running when
    ``PAR_SHUTDOWN_GRACE_SECONDS`` has passed since SIGTERM. It gets a 503 with ``Retry-After`` in its
    endpoint's format on a closing connection, and the cancellation ends here, as the request's end:
    raised further, uvicorn would log a stack trace and answer a plain 500. Where an answer had started,
    the connection just closes."""
    answer = error_response(
        route_path(scope),
        CUT_OFF_STATUS,
        "the server is stopping, retry later",
        {"Retry-After": RETRY_AFTER_SECONDS, "Connection": "close"},
    )
    with contextlib.suppress(RuntimeError):  # an answer had started: the server refuses a second one
        await answer(scope, receive, send)
