"""The HTTP server's floor: an ASGI app that reads a push's body and answers a constant 201 like a push's.

    cd bench && ../.venv/bin/uvicorn floor_app:app --port 8911 --no-access-log --loop uvloop --http httptools
    SERVICE_ID=1 CLIENT_ID=x CLIENT_SECRET=y wrk -t1 -c32 -d20s --latency -s par.lua http://127.0.0.1:8911

What uvicorn, httptools and uvloop cost per request with nothing else to do (bench/RESULTS.md, "What bounds it").
"""

from __future__ import annotations

import json
import secrets
from typing import Any

ANSWER_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    body = json.dumps(
        {"request_uri": "urn:ietf:params:oauth:request_uri:" + secrets.token_urlsafe(32), "expires_in": 60}
    ).encode()
    headers = [*ANSWER_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})
