"""What operators see: one JSON log line per request, Prometheus metrics, a request id.

Routes describe their outcome in ``request.state.audit`` (service, client, operation, outcome, error
code) and this middleware turns it into the log line and the counters, so both stay consistent and no
route logs by itself. Nothing here ever sees a parameter value, secret, token or assertion.
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import re
import secrets
import select
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.requests import ClientDisconnect, Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.http_protocol import ANSWERED_STATUS_KEY

logger = logging.getLogger("par_server")
access_logger = logging.getLogger("par_server.request")
REQUEST_ID_HEADER = b"x-request-id"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request whose client left before it was answered
# A request the server cut off as it stopped (uvicorn cancels what is left after PAR_SHUTDOWN_GRACE_SECONDS):
# answered 503 with Retry-After by ``ParServerApp`` where no answer had started.
CUT_OFF_STATUS = 503
_ACCEPTABLE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._\-]{1,64}")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# prometheus_client's switch to multiprocess mode, read as it is first imported: each process then keeps
# its values in files of this directory, and a scrape reads every process's files.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# With tracing on (``app.tracing``): the request's trace and span ids for its log line, read in its span.
TraceFields = Callable[[], dict[str, str]]


def audit(request: Request, **fields: Any) -> None:
    """Describe this request's outcome for its log line and the metrics (never parameter values), as
    ``observe_request`` reads it from ``request.state.audit`` (by the middleware, or by ``app.api.direct``)."""
    # What ``request.state.audit = ...`` stores, without building Starlette's State for it.
    described = {name: value for name, value in fields.items() if value is not None}
    request.scope.setdefault("state", {})["audit"] = described


STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


@dataclass
class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app), with the process's
    (``process_*``, ``python_gc_*``, ``python_info``).

    With ``multiprocess_dir`` (``PROMETHEUS_MULTIPROC_DIR``, which ``par-server serve --workers N`` sets
    for its workers) every worker writes its values to files there and ``registry`` reads all of them at
    scrape time, so whichever worker answers, the totals are every worker's. Without it the values live
    in this process alone, where an observation costs half as much (bench/RESULTS.md, "Metrics with
    several workers").
    """

    multiprocess_dir: str | None = field(default_factory=lambda: os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None)
    registry: CollectorRegistry = field(init=False, default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # In multiprocess mode the metrics below write to files, whichever registry holds them: the
        # scrape registry reads the files instead, and holding them as well would report them twice.
        own = None if self.multiprocess_dir else self.registry
        self.operations = Counter(
            "par_operations_total",
            "Pushes, resolves and consumes by service, outcome and error code",
            ["operation", "service", "outcome", "error"],
            registry=own,
        )
        self.latency = Histogram(
            "par_request_duration_seconds",
            "Request latency by route",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        # Every worker counts the same database for these two: the most recent count is the answer,
        # where a sum would count it once per worker and a maximum would keep a count long gone.
        self.live_pushed_requests = Gauge(
            "par_pushed_requests_live",
            "Pushed requests not yet expired or consumed",
            registry=own,
            multiprocess_mode="mostrecent",
        )
        self.replay_entries = Gauge(
            "par_replay_entries",
            "Single-use values remembered in the database replay store",
            registry=own,
            multiprocess_mode="mostrecent",
        )
        self.rate_limited = Counter(
            "par_rate_limited_total",
            "Requests refused by rate limiting",
            ["front_door", "scope"],
            registry=own,
        )
        # The children of the two per-request metrics, by label values: ``labels()`` validates and
        # locks on every call, which cost a request more than the observation itself. Prometheus keeps
        # every child it made anyway, so remembering them here holds nothing it does not.
        self._latency_of: dict[tuple[str, str, str], Histogram] = {}
        self._operations_of: dict[tuple[str, str, str, str], Counter] = {}
        # python_info is the same in every worker (one interpreter): read by whichever answers.
        PlatformCollector(registry=self.registry)
        if self.multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            self.runtime: WorkerRuntimeMetrics | None = None
        else:
            self.runtime = WorkerRuntimeMetrics()
            self.registry.register(EveryWorkersMetrics(self.multiprocess_dir, self.runtime.counter_names))

    def observe_latency(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        child = self._latency_of.get(key)
        if child is None:
            child = self._latency_of[key] = self.latency.labels(*key)
        child.observe(seconds)

    def count_operation(self, operation: str, service: str, outcome: str, error: str) -> None:
        key = (operation, service, outcome, error)
        child = self._operations_of.get(key)
        if child is None:
            child = self._operations_of[key] = self.operations.labels(*key)
        child.inc()

    def publish_runtime(self) -> None:
        """In multiprocess mode, write this worker's process and GC metrics where every worker's scrape
        reads them; nothing otherwise (the registry reads them from the process at scrape time)."""
        if self.runtime is not None:
            self.runtime.publish()

    def worker_stopped(self) -> None:
        """In multiprocess mode, withdraw this worker's process and GC metrics (its counts stay in the
        totals); nothing otherwise."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


class WorkerRuntimeMetrics:
    """One worker's ``process_*`` and ``python_gc_*`` metrics, as prometheus_client's collectors read
    them from this process, copied into multiprocess gauges of mode ``liveall``: each sample gets the
    worker's ``pid`` label, and a worker marked dead has none. Each worker publishes its own, since only
    it can read its garbage collector, and no worker can ask another at scrape time."""

    def __init__(self) -> None:
        self._sources = CollectorRegistry()
        ProcessCollector(registry=self._sources)
        GCCollector(registry=self._sources)
        self._gauges: dict[str, Gauge] = {}
        # The counters among them, by family name: a scrape reports them as counters again.
        self.counter_names = frozenset(metric.name for metric in self._sources.collect() if metric.type == "counter")

    def publish(self) -> None:
        for metric in self._sources.collect():
            for sample in metric.samples:
                gauge = self._gauges.get(sample.name)
                if gauge is None:
                    gauge = self._gauges[sample.name] = Gauge(
                        sample.name,
                        metric.documentation,
                        sorted(sample.labels),
                        registry=None,
                        multiprocess_mode="liveall",
                    )
                (gauge.labels(**sample.labels) if sample.labels else gauge).set(sample.value)


# What prometheus_client raises reading a metrics file that is truncated, empty or not its own.
UNREADABLE_FILE_ERRORS = (struct.error, ValueError, OSError)


class MetricsUnreadable(Exception):
    """The multiprocess directory holds a file that cannot be read: no total can be reported."""


class EveryWorkersMetrics(Collector):
    """Every worker's metrics, from the files of the multiprocess directory, as one process would
    report them: counters and histograms summed over the workers (dead ones' included, so totals never
    drop), gauges as their ``multiprocess_mode`` says, and the runtime counters that workers publish as
    gauges (``WorkerRuntimeMetrics``) typed as counters again, one series per worker."""

    def __init__(self, directory: str, counter_names: frozenset[str]) -> None:
        self._directory = directory
        self._counter_names = counter_names

    def collect(self) -> Iterator[Metric]:
        self._forget_dead_workers()
        files = glob.glob(os.path.join(self._directory, "*.db"))
        try:
            merged = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        except UNREADABLE_FILE_ERRORS as error:
            raise MetricsUnreadable(self._unreadable(files, error)) from error
        for metric in merged:
            family = metric.name.removesuffix("_total")
            if metric.type == "gauge" and family in self._counter_names:
                metric.name, metric.type = family, "counter"
            yield metric

    def _unreadable(self, files: list[str], error: BaseException) -> str:
        """Which file could not be read, read one by one (a failed scrape's cost only), and why."""
        for path in files:
            try:
                MultiProcessCollector.merge([path], accumulate=True)  # type: ignore[no-untyped-call]
            except UNREADABLE_FILE_ERRORS as file_error:
                return f"{path} cannot be read ({_type_name(file_error)}): corrupt or truncated"
        return f"the files of {self._directory} cannot be read ({_type_name(error)})"

    def _forget_dead_workers(self) -> None:
        """Withdraw the runtime metrics of workers that stopped without saying so (killed, out of
        memory): uvicorn starts another in their place, and the dead ones' would be reported forever."""
        for path in glob.glob(os.path.join(self._directory, "gauge_live*_*.db")):
            pid = path.rsplit("_", 1)[1].removesuffix(".db")
            if pid.isdigit() and not _process_exists(int(pid)):
                mark_process_dead(int(pid), self._directory)  # type: ignore[no-untyped-call]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


class RequestObservationMiddleware:
    """Request id, latency histogram, operation counters and the JSON request log line.

    A request is labelled with its route's path template. FastAPI records the route it chose in the scope
    only for its API routes; any other (``/docs``, ``/redoc``, ``/openapi.json``) is found among ``routes``
    here, after the answer, so only such requests and unmatched ones pay for the search."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        routes: Sequence[BaseRoute] = (),
        trace_fields: TraceFields | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.trace_fields = trace_fields

    def route_label(self, scope: Scope) -> str:
        """The path template of the route that took the request; "unmatched" when none did (a 404)."""
        return route_label(scope, self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(_header(scope, REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status, answered = 500, False

        async def observing_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
            if not answered:  # the application returned without answering: the client had left
                status = status_without_answer(scope)
        except ClientDisconnect:
            status = status_without_answer(scope)
            raise
        except asyncio.CancelledError:
            if not answered:
                status = CUT_OFF_STATUS
            raise
        finally:
            observe_request(
                self.metrics,
                self.route_label(scope),
                scope.get("method", ""),
                status,
                time.perf_counter() - started,
                request_id,
                scope.get("state", {}).get("audit"),
                self.trace_fields,
            )


def status_without_answer(scope: Scope) -> int:
    """The status recorded for a request the application did not answer because its client was gone: the one
    the HTTP protocol answered in its stead (408 for a body too slow, ``app.api.http_protocol``), else 499,
    the client closed the request (nginx's code)."""
    status: int = scope.get(ANSWERED_STATUS_KEY, CLIENT_CLOSED_REQUEST)
    return status


def route_label(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The path template of the route that took the request (one of ``routes`` when the scope names none);
    "unmatched" when none did (a 404)."""
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:  # PARTIAL: the path's route, another method (a 405)
            return str(getattr(route, "path", None) or "unmatched")
    return "unmatched"


def request_id_of(offered: bytes | None) -> str:
    """The request id a client offered in ``X-Request-ID`` when it is acceptable, else a new one."""
    if offered is not None and _ACCEPTABLE_REQUEST_ID.fullmatch(offered):
        return offered.decode("ascii")
    return secrets.token_hex(16)


def observe_request(
    metrics: Metrics,
    route_path: str,
    method: str,
    status: int,
    duration: float,
    request_id: str,
    audit: dict[str, Any] | None,
    trace_fields: TraceFields | None = None,
) -> None:
    """The latency histogram, the operation counter and the JSON request log line of one request (with its
    trace and span ids when ``trace_fields`` gives them)."""
    # A client chooses the method: one it invents must not make a new series (RFC 9110 §9 names these).
    metrics.observe_latency(route_path, method if method in STANDARD_METHODS else "other", status, duration)
    if audit and "operation" in audit:
        metrics.count_operation(
            audit["operation"], str(audit.get("service_id", "")), audit.get("outcome", ""), audit.get("error") or ""
        )
    fields = {
        "request_id": request_id,
        "method": method,
        "route": route_path,
        "status": status,
        "duration_ms": round(duration * 1000, 2),
    }
    if trace_fields is not None:
        fields.update(trace_fields())
    if audit:
        fields.update(audit)
    log_request(access_logger, fields)


def log_request(log: logging.Logger, fields: dict[str, Any]) -> None:
    """``log.info("request", extra={"fields": fields})``, the same line written without a ``LogRecord``
    when every handler the record would reach is one of our ``JsonLineHandler``s.

    The logging module's record, caller lookup and handler calls cost a request about as much again as
    the line itself (bench/RESULTS.md, "Request log line without a LogRecord"). Any other handler, such
    as pytest's log capture, or a filter anywhere on the way gets the record as before.
    """
    if not log.isEnabledFor(logging.INFO):
        return
    handlers = _json_line_handlers(log)
    if handlers is None:
        log.info("request", extra={"fields": fields})
        return
    created, level = time.time(), logging.getLevelName(logging.INFO)
    for handler in handlers:
        formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
        handler.write_line(formatter.format_fields(created, level, log.name, "request", fields) + handler.terminator)


def _json_line_handlers(log: logging.Logger) -> list[JsonLineHandler] | None:
    """The handlers an INFO record of ``log`` reaches, as ``Logger.callHandlers`` finds them, if all of
    them are our ``JsonLineHandler``s with our ``JsonFormatter`` and nothing on the way has a filter; else
    None (and None when there are none, where logging's last resort decides)."""
    found: list[JsonLineHandler] = []
    current: logging.Logger | None = log
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if type(handler) not in _LINE_HANDLERS or type(handler.formatter) is not JsonFormatter or handler.filters:
                return None
            if logging.INFO >= handler.level:
                found.append(handler)  # type: ignore[arg-type]
        current = current.parent if current.propagate else None
    return found or None


def flush_log_handlers(log: logging.Logger = access_logger) -> None:
    """Write now what the handlers of ``log``'s records hold (the request lines of this turn of the event
    loop), as a server stops: the loop may not turn again."""
    current: logging.Logger | None = log
    while current is not None:
        for handler in current.handlers:
            handler.flush()
        current = current.parent if current.propagate else None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


# Values orjson writes as the stdlib does; floats only where ``_plain_float`` says so.
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def _plain_float(value: object) -> bool:
    """A float that orjson and the stdlib write alike: orjson writes Infinity and NaN as null, and an
    exponent without a sign or leading zero (1e-7, where the stdlib writes 1e-07)."""
    return type(value) is float and (value == 0.0 or 1e-4 <= abs(value) < 1e16)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the exception's type and traceback when
    there is one, and the record's ``fields``."""

    # One encoder for every line: json.dumps with options builds a new one per call.
    _encode = json.JSONEncoder(separators=(",", ":"), default=str).encode

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        entry = self._head(record.created, record.levelname, record.name, record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = _type_name(record.exc_info[1])
            entry["traceback"] = _traceback_without_messages(record.exc_info[1])
        entry.update(getattr(record, "fields", {}))
        return self._encode(entry)

    def format_fields(self, created: float, level: str, name: str, message: str, fields: dict[str, Any]) -> str:
        """What ``format`` writes for a record with no exception, from the record's attributes:
        ``created``, ``levelname``, ``name``, its message and ``fields``."""
        entry = self._head(created, level, name, message)
        entry.update(fields)
        if not all(type(value) in _PLAIN_TYPES or _plain_float(value) for value in fields.values()):
            return self._encode(entry)
        # orjson writes what the stdlib encoder writes for plain values (a request line's) in a tenth of the
        # time when the line is all ASCII and holds no DEL, which the stdlib escapes; an integer beyond 64
        # bits it refuses. Any other line is written by the stdlib.
        try:
            line = orjson.dumps(entry)
        except orjson.JSONEncodeError:
            return self._encode(entry)
        return line.decode("ascii") if line.isascii() and b"\x7f" not in line else self._encode(entry)

    def _head(self, created: float, level: str, name: str, message: str) -> dict[str, Any]:
        return {"ts": self._timestamp(created), "level": level.lower(), "logger": name, "msg": message}

    def _timestamp(self, created: float) -> str:
        """ISO 8601 in UTC to the millisecond, as ``datetime.isoformat(timespec="milliseconds")`` writes it
        (the time rounded to the microsecond first, as ``datetime.fromtimestamp`` rounds it); the date
        and time of day are formatted once per second."""
        second = int(created)
        microseconds = round((created - second) * 1e6)
        if microseconds == 1_000_000:
            second, microseconds = second + 1, 0
        if self._second[0] != second:
            self._second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        return f"{self._second[1]}.{microseconds // 1000:03d}+00:00"


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _type_name(error: BaseException) -> str:
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _traceback_without_messages(error: BaseException) -> str:
    """The traceback as Python prints it, chained exceptions included, but each exception named by its
    type alone: messages can carry parameter values (a driver's bound parameters, a validation error's
    input), which no log line may."""
    links: list[str] = []
    seen: set[int] = set()
    current = error
    while True:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        header = "Traceback (most recent call last):\n" if frames else ""
        links.append(f"{header}{frames}{_type_name(current)}\n")
        if current.__cause__ is not None:
            current, separator = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, separator = current.__context__, _CONTEXT
        else:
            break
        if id(current) in seen:
            break
        links.append(separator)
    return "".join(reversed(links))


def server_log_config(level: str) -> dict[str, Any]:
    """uvicorn's ``log_config`` (a ``logging.config.dictConfig`` dict, so spawned ``--workers`` apply it
    too): uvicorn's lines, the app's and any other library's warnings as JSON lines on one stderr handler.

    uvicorn's access log writes nowhere, whatever its ``access_log`` option: its line carries the raw
    query string, which may hold a client secret, and the app logs each request itself.
    """
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"()": JsonLineHandler, "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "propagate": False},
            # Its own handler here, so configure_logging adds none, and no propagation: the root's handler
            # would write each line a second time.
            "par_server": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
        # Libraries' warnings and errors (asyncio's, the database pool's) as JSON too, not Python's plain text.
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


# Request lines held for the loop's next turn, in characters, beyond which they are written at once.
HELD_LINES_LIMIT = 64 * 1024


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose request lines (``log_request``), when written on a running event loop, reach
    the stream together once per turn of that loop rather than by a write system call each.

    Why: written one by one, each line costs a write system call; a busy turn's lines written together
    cost a tenth of that each (bench/RESULTS.md, "Request log lines, request ids, metrics"). Anything else
    the handler writes (a record it emits, a flush, a close, a line from another thread or from no loop at
    all) first writes the lines held, then itself at once, so lines keep their order; ``logging.shutdown``
    flushes every handler at exit, and the app's lifespan flushes these as it ends (``flush_log_handlers``).
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._held_size = 0
        self._held_for: asyncio.AbstractEventLoop | None = None  # whose next turn writes them

    def write_line(self, line: str) -> None:
        """Write ``line`` (a formatted record with its terminator) with the others of this loop turn."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self.lock:  # type: ignore[union-attr]
            self._held.append(line)
            self._held_size += len(line)
            if loop is None or self._held_size > HELD_LINES_LIMIT:
                self._write_held()
            elif len(self._held) == 1:
                self._held_for = loop
                loop.call_soon(self.flush)
            elif self._held_for is not loop:  # lines held for another thread's loop: not ours to wait for
                self._write_held()

    def emit(self, record: logging.LogRecord) -> None:
        if self._held:
            self._write_held()
        super().emit(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._held:
                self._write_held()
            else:
                super().flush()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write_held(self) -> None:
        """Under the handler's lock, as ``StreamHandler.emit`` writes a line: in pieces of whole lines that
        each reach the stream in one write of at most ``PIPE_BUF`` bytes.

        Why the pieces: workers share one stderr, often a pipe, and POSIX keeps a write to a pipe whole and
        apart from other processes' only up to ``PIPE_BUF`` bytes. A turn's lines written at once were cut
        by another worker's when the pipe's reader lagged (a line was one such write before)."""
        held = self._held
        self._held = []
        self._held_size, self._held_for = 0, None
        try:
            for piece in _pieces_of_whole_lines(held, select.PIPE_BUF):
                self.stream.write(piece)
                super().flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"name": access_logger.name, "msg": "request"}))


def _pieces_of_whole_lines(lines: list[str], limit: int) -> Iterator[str]:
    """``lines`` joined into pieces of at most ``limit`` bytes in UTF-8, each of whole lines (a longer line
    is a piece by itself)."""
    piece: list[str] = []
    size = 0
    for line in lines:
        length = len(line) if line.isascii() else len(line.encode())
        if piece and size + length > limit:
            yield "".join(piece)
            piece, size = [], 0
        piece.append(line)
        size += length
    if piece:
        yield "".join(piece)


class CurrentStderrHandler(JsonLineHandler):
    """Writes to ``sys.stderr`` as it is when a line is written, not as it was when the handler was made
    (as ``logging.lastResort`` does): a command run in-process, as the tests run the CLI, may see
    ``sys.stderr`` replaced and closed between two lines."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """StreamHandler.__init__ assigns a stream; the current one is always used instead."""


# The handlers log_request writes a line to without a record.
_LINE_HANDLERS = (JsonLineHandler, CurrentStderrHandler)


def configure_logging(level: str, name: str = "par_server") -> None:
    """JSON lines on stderr for the logger ``name`` and those below it (idempotent)."""
    root = logging.getLogger(name)
    root.setLevel(level.upper())
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        handler = CurrentStderrHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
