"""What operators see: one JSON log line per request, Prometheus metrics, a request id.

Routes describe their outcome in ``request.state.audit`` (service, client, operation, outcome, error
code) and this middleware turns it into the log line and the counters, so both stay consistent and no
route logs by itself. Nothing here ever sees a parameter value, secret, token or assertion.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("par_server")
access_logger = logging.getLogger("par_server.request")
REQUEST_ID_HEADER = "x-request-id"
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.operations = Counter(
            "par_operations_total",
            "Pushes, resolves and consumes by service, outcome and error code",
            ["operation", "service", "outcome", "error"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "par_request_duration_seconds",
            "Request latency by route",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.live_pushed_requests = Gauge(
            "par_pushed_requests_live", "Pushed requests not yet expired or consumed", registry=self.registry
        )
        self.replay_entries = Gauge(
            "par_replay_entries", "Single-use values remembered in the database replay store", registry=self.registry
        )
        self.rate_limited = Counter(
            "par_rate_limited_total",
            "Requests refused by rate limiting",
            ["front_door", "scope"],
            registry=self.registry,
        )


class RequestObservationMiddleware:
    """Request id, latency histogram, operation counters and the JSON request log line."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, REQUEST_ID_HEADER)
        request_id = offered if offered and _ACCEPTABLE_REQUEST_ID.fullmatch(offered) else secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            self._observe(scope, request_id, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, request_id: str, status: int, duration: float) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "unmatched"
        self.metrics.latency.labels(route_path, scope.get("method", ""), str(status)).observe(duration)
        audit: dict[str, Any] = scope.get("state", {}).get("audit") or {}
        if "operation" in audit:
            self.metrics.operations.labels(
                audit["operation"], str(audit.get("service_id", "")), audit.get("outcome", ""), audit.get("error") or ""
            ).inc()
        access_logger.info(
            "request",
            extra={
                "fields": {
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "route": route_path,
                    "status": status,
                    "duration_ms": round(duration * 1000, 2),
                    **audit,
                }
            },
        )


def _header(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name.encode():
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:
                return None
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, separators=(",", ":"), default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the par_server loggers (idempotent)."""
    root = logging.getLogger("par_server")
    root.setLevel(level.upper())
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
