"""JSON answers, encoded as Starlette's ``JSONResponse`` encodes them, for less.

Every answer of the hot endpoints and every error answer is one of these. It is a Starlette ``Response``
(FastAPI sends it as it is), and ``app.api.direct`` sends its status, ``raw_headers`` and ``body`` itself.
Why not ``JSONResponse``: on this project's benchmark machine, building one cost a push about 18 µs,
mostly for a new ``json.JSONEncoder`` per call and for encoding the same header names and values every
time (bench/RESULTS.md, "The direct pipeline"). orjson writes the text ``json.dumps`` writes with
JSONResponse's options (UTF-8, no spaces) for a tenth of the time. It differs in two ways only: an
exponent without its sign's leading zero (``1e-7`` where ``json`` writes ``1e-07``: the same number, as a
client's authorization details may carry it back), and NaN, which ``app.core.json_input`` refuses in
every input, so no answer holds it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

# JSONResponse.render's options, for what orjson refuses (integers beyond 64 bits, keys that are not strings).
_stdlib_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode
_JSON = (b"content-type", b"application/json")
NO_STORE_HEADERS = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))


def encode_headers(headers: Mapping[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    """Header names and values as an ASGI message carries them (as ``Response.init_headers`` encodes them)."""
    return tuple((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())


class JsonAnswer(Response):
    """``JSONResponse(content, status_code, headers)``'s bytes: ``headers`` (already encoded, see
    ``encode_headers``), then Content-Length and Content-Type."""

    media_type = "application/json"

    def __init__(
        self, content: Any, status_code: int = 200, headers: tuple[tuple[bytes, bytes], ...] = NO_STORE_HEADERS
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body = self.render(content)
        self.raw_headers = [*headers, (b"content-length", str(len(self.body)).encode("latin-1")), _JSON]

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            return _stdlib_encode(content).encode("utf-8")
