"""The one place where errors become HTTP responses.

Paths under ``/api/`` answer in Authlete's ``ResultError`` shape; every other path (the RFC 9126
endpoint, metadata) answers with RFC 6749 §5.2 JSON. Every answer carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import result_codes
from app.core.errors import InvalidClient, OAuthError, ParServerError, TemporarilyUnavailable, clean_description

logger = logging.getLogger("par_server")

# The database is unreachable, stuck (statement_timeout) or the pool is exhausted, or Redis (PAR_REDIS_URL)
# is unreachable or stuck (its timeout): a transient condition.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError, RedisConnectionError, RedisTimeoutError)
RETRY_AFTER_SECONDS = "5"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BASIC_CHALLENGE = 'Basic realm="par-server", charset="UTF-8"'
_API_PREFIX = "/api/"
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
    return path.startswith(_API_PREFIX)


def oauth_error_response(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if isinstance(error, InvalidClient) and error.used_authorization_header:
        headers["WWW-Authenticate"] = BASIC_CHALLENGE
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=headers)


def result_error_response(
    status_code: int, result_code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"resultCode": result_code, "resultMessage": f"[{result_code}] {clean_description(message)}"},
        status_code=status_code,
        headers={**NO_STORE, **(headers or {})},
    )


def error_response(path: str, status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error that is neither an OAuth nor an API error (framework-level: 404, 405, 413, 422, 500)."""
    if is_api_path(path):
        return result_error_response(
            status_code, _API_RESULT_CODE_BY_STATUS.get(status_code, result_codes.API_CALL_FAILED), message, headers
        )
    error = {404: "not_found", 429: "temporarily_unavailable", 503: "temporarily_unavailable"}.get(
        status_code, "server_error" if status_code >= 500 else "invalid_request"
    )
    return JSONResponse(
        {"error": error, "error_description": clean_description(message)},
        status_code=status_code,
        headers={**NO_STORE, **(headers or {})},
    )


def par_server_error_response(path: str, error: ParServerError) -> JSONResponse:
    """A protocol error raised while handling ``path``, in that path's format."""
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if isinstance(error, TemporarilyUnavailable) else None
    if is_api_path(path):
        return result_error_response(error.status_code, error.result_code, error.description, headers)
    if isinstance(error, OAuthError):
        return oauth_error_response(error)
    return error_response(path, error.status_code, error.description, headers)


async def _handle_par_server_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ParServerError)
    return par_server_error_response(request.url.path, exc)


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, ParServerError):
        # FastAPI wraps whatever fails while it reads body parameters ("There was an error parsing the
        # body"): RequestTooLarge from the size limit is a 413, a refused JSON body its own 400.
        return par_server_error_response(request.url.path, exc.__cause__)
    messages = {404: "no such endpoint", 405: "method not allowed", 413: "the request body is too large"}
    message = messages.get(exc.status_code) or str(exc.detail)
    return error_response(request.url.path, exc.status_code, message, dict(exc.headers or {}))


async def _handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return error_response(request.url.path, 400, "the request body is not valid JSON")
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = f"invalid {location or 'request'}: {first.get('msg', 'malformed request')}"
    # A path whose id is not one (``app.api.deps.IdPath``) names no resource.
    status = 404 if first.get("loc", ("",))[0] == "path" else 400
    return error_response(request.url.path, status, message)


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
            database_unavailable = isinstance(exc, DATABASE_UNAVAILABLE)
            logger.error(
                "%s %s on %s %s",
                "database unavailable:" if database_unavailable else "unhandled",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
            )
            if started:
                raise
            if database_unavailable:
                response = error_response(
                    scope.get("path", ""),
                    503,
                    "the service is temporarily unavailable, retry later",
                    {"Retry-After": RETRY_AFTER_SECONDS},
                )
            else:
                response = error_response(scope.get("path", ""), 500, "the server could not process the request")
            await response(scope, receive, send)
