"""The one place where errors become HTTP responses.

Paths under ``/api/`` answer in Authlete's ``ResultError`` shape; every other path (the RFC 9126
endpoint, metadata) answers with RFC 6749 §5.2 JSON. Every answer carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import NO_STORE_HEADERS, JsonAnswer, encode_headers
from app.core import result_codes
from app.core.errors import InvalidClient, OAuthError, ParServerError, TemporarilyUnavailable, clean_description
from app.db.engine import failure_name

logger = logging.getLogger("par_server")

# The database is unreachable, stuck (statement_timeout) or the pool is exhausted, or Redis (PAR_REDIS_URL)
# is unreachable or stuck (its timeout): a transient condition.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError, RedisConnectionError, RedisTimeoutError)
RETRY_AFTER_SECONDS = "5"
BASIC_CHALLENGE = 'Basic realm="par-server", charset="UTF-8"'
# RFC 6749 §5.2: 401 with WWW-Authenticate when the client authenticated with the Authorization header.
CHALLENGED = (*NO_STORE_HEADERS, (b"www-authenticate", BASIC_CHALLENGE.encode("latin-1")))
_API_PREFIX = "/api/"
_TEMPLATE_PARAMETER = re.compile(r"(\{[^/{}]+\})")
_API_RESULT_CODE_BY_STATUS = {
    429: result_codes.TOO_MANY_REQUESTS,
    431: result_codes.REQUEST_HEADERS_TOO_LARGE,
    400: result_codes.API_BAD_REQUEST,
    401: result_codes.API_UNAUTHORIZED,
    403: result_codes.SERVICE_ACCESS_FORBIDDEN,
    404: result_codes.NO_SUCH_PATH,
    405: result_codes.METHOD_NOT_ALLOWED,
    413: result_codes.REQUEST_BODY_TOO_LARGE,
    415: result_codes.UNSUPPORTED_MEDIA_TYPE,
    500: result_codes.SERVER_ERROR,
    503: result_codes.SERVER_ERROR,
}


def is_api_path(path: str) -> bool:
    """Whether ``path``, below the root path (``route_path``), is the Authlete-compatible API's."""
    return path.startswith(_API_PREFIX)


def route_path(scope: Mapping[str, Any]) -> str:
    """The request's path below the root path (``--root-path``, a proxy's prefix), which the server puts
    in front of it in ``scope["path"]``: what the routes, and ``is_api_path``, match."""
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        return path[len(root_path) :] or "/"
    return path


def oauth_error_response(error: OAuthError) -> JsonAnswer:
    challenged = isinstance(error, InvalidClient) and error.used_authorization_header
    return JsonAnswer(error.to_body(), error.status_code, CHALLENGED if challenged else NO_STORE_HEADERS)


def result_error_response(
    status_code: int, result_code: str, message: str, headers: dict[str, str] | None = None
) -> JsonAnswer:
    return JsonAnswer(
        {"resultCode": result_code, "resultMessage": f"[{result_code}] {clean_description(message)}"},
        status_code,
        _no_store_and(headers),
    )


def error_response(path: str, status_code: int, message: str, headers: dict[str, str] | None = None) -> JsonAnswer:
    """An error that is neither an OAuth nor an API error (framework-level: 404, 405, 413, 422, 500)."""
    if is_api_path(path):
        return result_error_response(
            status_code, _API_RESULT_CODE_BY_STATUS.get(status_code, result_codes.API_CALL_FAILED), message, headers
        )
    error = {404: "not_found", 429: "temporarily_unavailable", 503: "temporarily_unavailable"}.get(
        status_code, "server_error" if status_code >= 500 else "invalid_request"
    )
    return JsonAnswer(
        {"error": error, "error_description": clean_description(message)}, status_code, _no_store_and(headers)
    )


def _no_store_and(headers: dict[str, str] | None) -> tuple[tuple[bytes, bytes], ...]:
    return (*NO_STORE_HEADERS, *encode_headers(headers)) if headers else NO_STORE_HEADERS


def par_server_error_response(path: str, error: ParServerError) -> JsonAnswer:
    """A protocol error raised while handling ``path``, in that path's format."""
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if isinstance(error, TemporarilyUnavailable) else None
    if is_api_path(path):
        return result_error_response(error.status_code, error.result_code, error.description, headers)
    if isinstance(error, OAuthError):
        return oauth_error_response(error)
    return error_response(path, error.status_code, error.description, headers)


async def _handle_par_server_error(request: Request, exc: Exception) -> JsonAnswer:
    assert isinstance(exc, ParServerError)
    return par_server_error_response(route_path(request.scope), exc)


async def _handle_http_exception(request: Request, exc: Exception) -> JsonAnswer:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI's "error parsing the body" is the client leaving while its body was read: nobody to answer.
        raise exc.__cause__
    if isinstance(exc.__cause__, ParServerError):
        # FastAPI wraps whatever fails while it reads body parameters ("There was an error parsing the
        # body"): RequestTooLarge from the size limit is a 413, a refused JSON body its own 400.
        return par_server_error_response(route_path(request.scope), exc.__cause__)
    messages = {404: "no such endpoint", 405: "method not allowed", 413: "the request body is too large"}
    message = messages.get(exc.status_code) or str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request, headers.get("Allow", ""))
    return error_response(route_path(request.scope), exc.status_code, message, headers)


def allowed_methods(request: Request, route_methods: str) -> str:
    """RFC 9110 §15.5.6: a 405 "MUST generate an Allow header field ... containing a list of the target
    resource's currently supported methods". The router names those of the first route on the path only;
    a path served by several routes (the secret refresh: GET and POST) has them all here, from the OpenAPI
    document, and HEAD wherever GET is answered as HEAD too (``app.api.head``)."""
    path = route_path(request.scope)
    methods = {method.strip() for method in route_methods.split(",") if method.strip()}
    for template, operations in request.app.openapi().get("paths", {}).items():
        if _path_pattern(template).fullmatch(path):
            methods.update(method.upper() for method in operations)
    if "GET" in methods and not is_api_path(path):
        methods.add("HEAD")
    return ", ".join(sorted(methods))


@functools.cache  # the document's templates, a fixed few: built once each, not at every 405
def _path_pattern(template: str) -> re.Pattern[str]:
    """A regular expression for an OpenAPI path template: each ``{parameter}`` one path segment."""
    return re.compile(
        "".join(
            "[^/]+" if _TEMPLATE_PARAMETER.fullmatch(part) else re.escape(part)
            for part in _TEMPLATE_PARAMETER.split(template)
        )
    )


async def _handle_validation_error(request: Request, exc: Exception) -> JsonAnswer:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return error_response(route_path(request.scope), 400, "the request body is not valid JSON")
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = f"invalid {location or 'request'}: {first.get('msg', 'malformed request')}"
    # A path whose id is not one (``app.api.deps.IdPath``) names no resource.
    status = 404 if first.get("loc", ("",))[0] == "path" else 400
    return error_response(route_path(request.scope), status, message)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ParServerError, _handle_par_server_error)
    app.add_exception_handler(HTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_middleware(UnhandledErrorMiddleware)


class UnhandledErrorMiddleware:
    """Last resort: any unexpected exception becomes a 500 in the path's format, never a stack trace.

    Only the exception type is logged: driver messages can embed bound parameters.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            return  # the client left before sending its whole request: nobody to answer, nothing broken
        except Exception as exc:
            if started:
                _log_unhandled(scope, exc)
                raise
            await unhandled_error_response(scope, exc)(scope, receive, send)


def unhandled_error_response(scope: Scope, error: Exception) -> JsonAnswer:
    """The answer to an unexpected exception (logged by its type alone): 503 with Retry-After when the
    database or Redis is unavailable, else 500."""
    _log_unhandled(scope, error)
    if isinstance(error, DATABASE_UNAVAILABLE):
        return error_response(
            route_path(scope),
            503,
            "the service is temporarily unavailable, retry later",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )
    return error_response(route_path(scope), 500, "the server could not process the request")


def _log_unhandled(scope: Scope, error: Exception) -> None:
    logger.error(
        "%s %s on %s %s",
        "database unavailable:" if isinstance(error, DATABASE_UNAVAILABLE) else "unhandled",
        failure_name(error),
        scope.get("method"),
        scope.get("path"),
    )
