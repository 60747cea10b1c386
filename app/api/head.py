"""HEAD answered as GET without content (RFC 9110 §9.3.2)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import is_api_path, route_path


class HeadAsGetMiddleware:
    """RFC 9110 §9.1: "All general-purpose servers MUST support the methods GET and HEAD." A FastAPI
    route answers only the methods it names, so a HEAD request goes to the application as a GET, and its
    answer keeps its status and header fields, Content-Length included, and loses its content: "The HEAD
    method is identical to GET except that the server MUST NOT send content in the response" (§9.3.2).
    Load balancers and uptime checks probe ``/healthz`` and ``/readyz`` with HEAD; a route without GET
    still answers 405 with its Allow header.

    Not under ``/api/``: HEAD must be safe (§9.2.1), and there a GET may change state (Authlete's
    ``client/secret/refresh`` is a GET: as a HEAD it would replace the secret and drop the new one), so
    HEAD stays 405 there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or is_api_path(route_path(scope)):
            await self.app(scope, receive, send)
            return

        async def send_without_content(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server's own scope must still say HEAD when the answer starts (uvicorn then sends no
        # content and expects none). The route FastAPI chose is handed back, for the request's log line.
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send_without_content)
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]
