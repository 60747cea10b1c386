"""A client's ``jwksUri`` on loopback, for tests that make the server fetch keys."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JwksServer:
    """Serves ``document`` at any path, counts ``hits`` and keeps each request's ``headers``. Held
    (``held=True``), it answers only once the test sets ``release`` (or after ``hold_limit`` seconds, so
    that a failing test still ends), and sets ``all_waiting`` once ``expected`` requests wait."""

    def __init__(self, *, held: bool = False, expected: int = 1, hold_limit: float = 60.0) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()
        self.all_waiting = threading.Event()
        if not held:
            self.release.set()
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with lock:
                    server.hits += 1
                    server.headers.append({name.lower(): value for name, value in self.headers.items()})
                    if server.hits >= expected:
                        server.all_waiting.set()
                server.release.wait(hold_limit)
                body = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                return

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.url = f"{self.base_url}/jwks"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=5)
