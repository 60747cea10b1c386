"""Request body and header size limits that answer in the endpoint's own error format.

Starlette's ``RequestBodyLimitMiddleware`` (behind ``FastAPI(max_body_size=...)``) answers
``413 text/plain`` and replaces the application's response whenever Content-Length is over the
limit, so it cannot produce RFC 6749 §5.2 JSON or an Authlete ``ResultError``. This one refuses an
oversized declared length before reading, and counts streamed bytes otherwise, raising the protocol
error that ``app.api.errors`` renders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response, is_api_path, par_server_error_response, route_path
from app.api.observability import REQUEST_ID_HEADER
from app.api.responses import JsonAnswer
from app.core import result_codes
from app.core.errors import RequestTooLarge


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """PAR_MAX_BODY_BYTES (a pushed request's parameters), PAR_MAX_API_BODY_BYTES (/api bodies) and
    PAR_MAX_HEADER_BYTES."""

    max_body_bytes: int
    max_api_body_bytes: int
    max_header_bytes: int

    def body_limit(self, path: str) -> int:
        """The largest body a request to ``path`` may send."""
        return self.max_api_body_bytes if is_api_path(path) else self.max_body_bytes

    def body_too_large(self, path: str) -> RequestTooLarge:
        """The error of a body over ``body_limit`` that its Content-Length did not declare: the words and,
        at /api, the code of one it did (``refusal``)."""
        if is_api_path(path):
            message = f"the request body exceeds {self.max_api_body_bytes} bytes"
            return RequestTooLarge(message, result_code=result_codes.REQUEST_BODY_TOO_LARGE)
        # the body is the pushed parameters: same words as app.core.params
        return RequestTooLarge(f"the request parameters exceed {self.max_body_bytes} bytes")

    def refusal(self, path: str, header_bytes: int, declared_length: bytes | None) -> JsonAnswer | None:
        """The answer to a request whose headers (``header_bytes`` of names and values) or declared
        Content-Length are over the limits, before its body is read; None when they are within."""
        if header_bytes > self.max_header_bytes:
            # RFC 6585 §5: 431 Request Header Fields Too Large.
            return error_response(path, 431, f"the request headers exceed {self.max_header_bytes} bytes")
        if declared_length is None:
            return None
        if not declared_length.isdigit():
            return error_response(path, 400, "invalid Content-Length")
        if int(declared_length) > self.body_limit(path):
            return par_server_error_response(path, self.body_too_large(path))
        return None


def header_facts(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, bytes | None, bytes | None]:
    """One pass over a request's headers: the bytes of their names and values (``SizeLimits.refusal``), the
    first Content-Length, and the first X-Request-ID (what ``app.api.direct`` echoes and logs)."""
    header_bytes, declared_length, request_id = 0, None, None
    for name, value in headers:
        header_bytes += len(name) + len(value)
        if name == b"content-length":
            declared_length = value if declared_length is None else declared_length
        elif name == REQUEST_ID_HEADER:
            request_id = value if request_id is None else request_id
    return header_bytes, declared_length, request_id


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limits: SizeLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes, declared_length, _ = header_facts(scope["headers"])
        refusal = self.limits.refusal(route_path(scope), header_bytes, declared_length)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limit = self.limits.body_limit(route_path(scope))
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    raise self.limits.body_too_large(route_path(scope))
            return event

        await self.app(scope, limited_receive, send)
