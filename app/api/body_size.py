"""Request body and header size limits that answer in the endpoint's own error format.

Starlette's ``RequestBodyLimitMiddleware`` (behind ``FastAPI(max_body_size=...)``) answers
``413 text/plain`` and replaces the application's response whenever Content-Length is over the
limit, so it cannot produce RFC 6749 §5.2 JSON or an Authlete ``ResultError``. This one refuses an
oversized declared length before reading, and counts streamed bytes otherwise, raising the protocol
error that ``app.api.errors`` renders.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response, is_api_path
from app.core.errors import RequestTooLarge


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_api_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_api_body_bytes = max_api_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(name) + len(value) for name, value in scope.get("headers", []))
        if header_bytes > self.max_header_bytes:
            # RFC 6585 §5: 431 Request Header Fields Too Large.
            message = f"the request headers exceed {self.max_header_bytes} bytes"
            await error_response(scope["path"], 431, message)(scope, receive, send)
            return
        if is_api_path(scope["path"]):
            limit, message = self.max_api_body_bytes, f"the request body exceeds {self.max_api_body_bytes} bytes"
        else:  # the body is the pushed parameters: same words as app.core.params
            limit, message = self.max_body_bytes, f"the request parameters exceed {self.max_body_bytes} bytes"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status, text = (413, message) if declared.isdigit() else (400, "invalid Content-Length")
            await error_response(scope["path"], status, text)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(message)
            return event

        await self.app(scope, limited_receive, send)
