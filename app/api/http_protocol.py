"""uvicorn's HTTP/1.1 protocol (httptools), with each connection's writes of one event-loop iteration sent
as one, and a bound on the time a request takes to arrive.

uvicorn writes an answer's status line and headers, then its body, in two ``transport.write`` calls: two
``send`` system calls and two TCP segments per answer (``TCP_NODELAY`` is on). Held until the loop has
run what is ready, both leave in one. ``par-server serve`` passes ``CoalescingHttpToolsProtocol`` to
uvicorn as its ``http`` implementation; the figures are in bench/RESULTS.md ("One write per answer").

uvicorn times only an idle kept-alive connection, and any byte received stops that timer: a client that
sends a request slowly, or part of one and then nothing, holds its connection (and a place under the
concurrency limit) for ever. Here a request must arrive whole within the read timeout.

uvicorn holds a request's line and headers without bound until the header block is complete; here they
are counted as they arrive and a request whose target, header names and values exceed
``PAR_MAX_HEADER_BYTES`` gets 431 at once.

uvicorn answers a request beyond the concurrency limit (``PAR_MAX_CONNECTIONS``) ``503 text/plain``, and
a malformed one ``400 text/plain``; here these, like the 408 and the 431, are in the endpoint's error
format (the 503 with ``Retry-After``), and the application is told of the ones it did not see (the
request log and metrics, ``ParServerApp.observe_protocol_answer``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

# app.api.errors is imported where it is used. With --workers, uvicorn unpickles this module's protocol
# factory in each worker process before the worker answers its supervisor's health checks, and errors'
# imports (FastAPI, SQLAlchemy, redis) took over the 5 s those allow on a busy machine; the application,
# loaded before any connection is served, has imported it by the time it is used.

# Held bytes beyond this are written at once: a streamed answer that produces much without yielding to the
# loop reaches the socket, and uvicorn's flow control (which watches the socket's buffer) sees it.
HELD_BYTES_LIMIT = 64 * 1024


class _Flusher:
    """The connections with held writes, written out in one callback per loop iteration."""

    __slots__ = ("_loop", "_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: list[CoalescedWrites] = []

    def enlist(self, writes: CoalescedWrites) -> None:
        if not self._waiting:
            self._loop.call_soon(self._flush_all)
        self._waiting.append(writes)

    def _flush_all(self) -> None:
        waiting, self._waiting = self._waiting, []
        for writes in waiting:
            writes.flush()


_flushers: dict[asyncio.AbstractEventLoop, _Flusher] = {}


def _flusher_of(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        # One loop per worker process; a loop that is closed is dropped with the next one's arrival.
        for old in [known for known in _flushers if known.is_closed()]:
            del _flushers[old]
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


class CoalescedWrites:
    """A transport whose ``write`` calls are held until the loop has run what is ready, then written as one.

    Everything but writing is the wrapped transport's. Closing writes what is held first; aborting drops
    it, as the transport's own ``abort`` drops its buffer."""

    __slots__ = ("_transport", "_flusher", "_held", "_held_bytes")

    def __init__(self, transport: asyncio.Transport, flusher: _Flusher) -> None:
        self._transport = transport
        self._flusher = flusher
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes) -> None:
        if not self._held:
            self._flusher.enlist(self)
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > HELD_BYTES_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Write what is held (nothing once the transport is closing: its connection is gone)."""
        if not self._held:
            return
        held = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held = []
        self._held_bytes = 0
        if not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = []
        self._held_bytes = 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._held_bytes + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


logger = logging.getLogger("par_server")

DEFAULT_REQUEST_READ_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
# Where the protocol notes, in a request's scope, the status it answered in the application's stead (a 408
# or 431 while the body was awaited): the request log and metrics record it rather than a disconnect.
ANSWERED_STATUS_KEY = "par_server.answered_status"
# The most a request outlives its read timeout by: deadlines are checked this often (or four times per
# timeout, when that is shorter), by one timer per event loop rather than one per request, whose arming
# and cancelling would cost every request several microseconds.
READ_DEADLINE_CHECK_SECONDS = 1.0
# The answers below end their connection: the client learns it, and uvicorn reads no further.
_CLOSE = {"Connection": "close"}


def error_answer(path: str, status: int, message: str) -> bytes:
    """An answer that ends its connection, in ``path``'s error format, as the bytes of a whole answer."""
    from app.api.errors import error_response

    answer = error_response(path, status, message, _CLOSE)
    head = [STATUS_LINE[status], *(name + b": " + value + b"\r\n" for name, value in answer.raw_headers), b"\r\n"]
    return b"".join(head) + answer.body


def request_timeout_answer(path: str) -> bytes:
    """RFC 9110 §15.5.9: the server would not wait any longer for the request to ``path`` (as far as it
    arrived)."""
    return error_answer(path, 408, "the request did not arrive in time")


def headers_too_large_answer(path: str, max_header_bytes: int) -> bytes:
    """RFC 6585 §5, in the words of ``app.api.body_size.SizeLimits``."""
    return error_answer(path, 431, f"the request headers exceed {max_header_bytes} bytes")


class _OverloadLog:
    """The warning about 503s at the connection limit, at most once per Retry-After interval (the time the
    refused clients are told to wait), with the number answered since the line before."""

    __slots__ = ("_next_line_at", "_unlogged")

    def __init__(self) -> None:
        self._next_line_at = 0.0
        self._unlogged = 0

    def answered(self, interval: float) -> None:
        self._unlogged += 1
        now = time.monotonic()
        if now >= self._next_line_at:
            logger.warning(
                "connection limit reached (PAR_MAX_CONNECTIONS): answered 503 to %d request(s)", self._unlogged
            )
            self._unlogged = 0
            self._next_line_at = now + interval


_overload_log = _OverloadLog()


async def _answer_overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """Beyond the concurrency limit, in place of the application."""
    from app.api.errors import RETRY_AFTER_SECONDS, error_response, route_path

    _overload_log.answered(float(RETRY_AFTER_SECONDS))
    headers = {"Retry-After": RETRY_AFTER_SECONDS, **_CLOSE}
    answer = error_response(route_path(scope), 503, "the server is at its limit of connections", headers)
    await answer(scope, receive, send)


class _ReadDeadlines:
    """The connections whose request is on its way, checked against their deadlines while there are any."""

    __slots__ = ("_loop", "_waiting", "_interval", "_checking")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: set[CoalescingHttpToolsProtocol] = set()
        self._interval = READ_DEADLINE_CHECK_SECONDS
        self._checking = False

    def add(self, protocol: CoalescingHttpToolsProtocol, interval: float) -> None:
        self._waiting.add(protocol)
        self._interval = min(self._interval, interval)
        if not self._checking:
            self._checking = True
            self._loop.call_later(self._interval, self._check)

    def discard(self, protocol: CoalescingHttpToolsProtocol) -> None:
        self._waiting.discard(protocol)

    def _check(self) -> None:
        now = self._loop.time()
        for protocol in [protocol for protocol in self._waiting if protocol.read_deadline <= now]:
            self._waiting.discard(protocol)
            protocol.request_read_timed_out()
        if self._waiting:
            self._loop.call_later(self._interval, self._check)
        else:
            self._checking = False
            self._interval = READ_DEADLINE_CHECK_SECONDS


_read_deadlines: dict[asyncio.AbstractEventLoop, _ReadDeadlines] = {}


def _read_deadlines_of(loop: asyncio.AbstractEventLoop) -> _ReadDeadlines:
    deadlines = _read_deadlines.get(loop)
    if deadlines is None:
        for old in [known for known in _read_deadlines if known.is_closed()]:
            del _read_deadlines[old]
        deadlines = _read_deadlines[loop] = _ReadDeadlines(loop)
    return deadlines


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``CoalescedWrites`` transport, with a request read timeout and a
    bound on a request's line and headers.

    The read timer runs from a request's first byte (a new connection's first request: from the
    connection's start) until the request has arrived whole, headers and body. It is held while an
    earlier request of the connection is still being answered, since uvicorn reads no further then
    (pipelining), and starts once that answer is complete. A request being processed is not timed by
    it, nor is an idle kept-alive connection (uvicorn's keep-alive timeout is). On expiry a request
    that has not been answered gets 408 and ``Connection: close``; otherwise the connection is closed.

    A request's target and header (and trailer) names and values are counted as the parser reports them,
    and the bytes of a header line it has not reported yet as they arrive: beyond ``max_header_bytes`` the
    request gets 431 and ``Connection: close``, and nothing more is parsed.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        request_read_timeout: float = DEFAULT_REQUEST_READ_TIMEOUT_SECONDS,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.request_read_timeout = request_read_timeout
        self.max_header_bytes = max_header_bytes
        # Checked here rather than by uvicorn, whose answer is plain text.
        self.max_connections, self.limit_concurrency = self.limit_concurrency, None
        self._deadlines = _read_deadlines_of(self.loop)
        self._deadline_check_interval = min(READ_DEADLINE_CHECK_SECONDS, request_read_timeout / 4)
        self.read_deadline = 0.0  # by the loop's clock, while reading_timed
        self._reading_timed = False
        self._request_begun = False  # a request's first byte was parsed, its last was not
        self._request_headers_read = False  # ... and its headers are complete (it has a cycle of its own)
        self._request_started = 0.0  # by the loop's clock
        self._header_bytes = 0  # the request's target and header names and values, as reported by the parser
        self._unreported_header_bytes = 0  # bytes received since the parser last reported any of those
        self._header_reports = 0  # how many times it did, ever
        self._parsing_ended = False  # the connection was ended by an answer the request did not wait for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalesced = CoalescedWrites(transport, _flusher_of(self.loop))
        super().connection_made(coalesced)  # type: ignore[arg-type]
        self._start_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._ended():
            return  # the rest of a request that was answered (408, 431, 400) without it
        # The first byte since the connection went idle starts the clock (bytes that begin no request,
        # such as stray line endings, too: uvicorn's keep-alive timer stops at any byte).
        if not self._reading_timed and not self._behind_an_answer():
            self._start_read_timer()
        reports = self._header_reports
        super().data_received(data)
        if self._request_begun and not self._request_headers_read and not self._ended():
            # The parser holds a header line until it is whole: its bytes so far count as they arrive.
            if self._header_reports == reports:
                self._unreported_header_bytes += len(data)
            else:
                self._unreported_header_bytes = 0  # what follows the last report is bounded by this chunk
            if self._header_bytes + self._unreported_header_bytes > self.max_header_bytes:
                self._refuse_headers()

    def on_message_begin(self) -> None:
        if self._parsing_ended:
            return
        super().on_message_begin()
        self._request_begun = True
        self._request_headers_read = False
        self._request_started = self.loop.time()
        self._header_bytes = self._unreported_header_bytes = 0
        self._header_reports += 1

    def on_url(self, url: bytes) -> None:
        if self._parsing_ended:
            return
        super().on_url(url)
        self._header_bytes += len(url)
        self._header_reports += 1
        if self._header_bytes > self.max_header_bytes:
            self._refuse_headers()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._parsing_ended:
            return
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value)
        self._header_reports += 1
        if self._header_bytes > self.max_header_bytes:
            self._refuse_headers()

    def on_headers_complete(self) -> None:
        if self._parsing_ended:
            return
        limit = self.max_connections
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app, self.app = self.app, _answer_overloaded  # as uvicorn's own check does, for this request
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            self._observe_answer(503)
        else:
            super().on_headers_complete()
        self._request_headers_read = True

    def on_body(self, body: bytes) -> None:
        if not self._parsing_ended:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._request_begun = False
        self._stop_read_timer()
        if not self._parsing_ended:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A request that began arriving behind this answer is read from now on (uvicorn resumed reading).
        if self._request_begun and not self._reading_timed and not self._behind_an_answer():
            if not self._ended():
                self._unset_keepalive_if_required()  # not idle: a request is on its way
                self._start_read_timer()

    def send_400_response(self, msg: str) -> None:  # noqa: ARG002 (uvicorn logged it)
        """A request the parser refused (uvicorn logged its words), in its path's error format."""
        self._stop_read_timer()
        if self._request_begun:
            self._end_request(400, _invalid_request_answer)
        elif not self._ended():
            self._observe_answer(400)
            self._answer_early(_invalid_request_answer(""))

    def _behind_an_answer(self) -> bool:
        """Whether an earlier request of this connection is still being answered."""
        if self._request_begun and self._request_headers_read:
            return bool(self.pipeline)  # the request's own cycle waits in the pipeline
        return self.cycle is not None and not self.cycle.response_complete

    def _start_read_timer(self) -> None:
        self._reading_timed = True
        self.read_deadline = self.loop.time() + self.request_read_timeout
        self._deadlines.add(self, self._deadline_check_interval)

    def _stop_read_timer(self) -> None:
        if self._reading_timed:
            self._reading_timed = False
            self._deadlines.discard(self)

    def request_read_timed_out(self) -> None:
        """Called by ``_ReadDeadlines`` once ``read_deadline`` has passed."""
        self._reading_timed = False
        self._end_request(408, request_timeout_answer)

    def _refuse_headers(self) -> None:
        self._stop_read_timer()
        self._end_request(431, functools.partial(headers_too_large_answer, max_header_bytes=self.max_header_bytes))

    def _end_request(self, status: int, answer: Callable[[str], bytes]) -> None:
        """Answer ``status`` (``answer`` of the path) to a request on its way that has not been answered, and
        close the connection."""
        if self._ended():
            return
        self._parsing_ended = True
        if self._request_begun and not (self._request_headers_read and self.cycle.response_started):
            if self._request_headers_read:
                # The application waits for the rest of the body: it gets a disconnect, and anything it
                # sends is dropped, as for a client that went away. Its request line records this status.
                self.cycle.scope[ANSWERED_STATUS_KEY] = status  # type: ignore[literal-required]
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            else:
                self._observe_answer(status)
            self._answer_early(answer(self._request_path()))
        else:
            self.transport.close()

    def _answer_early(self, answer: bytes) -> None:
        """Send ``answer`` to a request still arriving, and end the connection.

        Closing a socket with unread bytes makes the kernel reset the connection, and a client still sending
        may lose the answer to the reset: the answer is followed by the end of our side of the stream, and
        what the client sends on is read and dropped until it closes its side, for at most the keep-alive
        timeout (as nginx's lingering close does; the transport closes at the client's end of stream)."""
        self._parsing_ended = True
        self._stop_read_timer()
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(self.timeout_keep_alive, self.transport.close)
        else:
            self.transport.close()

    def _ended(self) -> bool:
        """Whether nothing more is to be read: the connection is closing, or was ended by an early answer."""
        return self._parsing_ended or self.transport.is_closing()

    def _request_path(self) -> str:
        """The path of the request on its way, as far as it arrived."""
        if self._request_headers_read:
            from app.api.errors import route_path

            return route_path(self.scope)
        return self.url.partition(b"?")[0].decode("latin-1")

    def _observe_answer(self, status: int) -> None:
        """The request log line and metrics of an answer the application did not give."""
        app = self.app
        while not hasattr(app, "observe_protocol_answer") and hasattr(app, "app"):
            app = app.app  # within uvicorn's middlewares (proxy headers, message logging), when it adds them
        observe = getattr(app, "observe_protocol_answer", None)
        if observe is None:
            return
        if self._request_begun:
            # The method is parsed once the target began arriving.
            method = self.parser.get_method().decode("latin-1") if self.url and self.parser else ""
            observe(method, status, self.loop.time() - self._request_started)
        else:
            observe("", status, 0.0)


def _invalid_request_answer(path: str) -> bytes:
    return error_answer(path, 400, "the request is not valid HTTP")


def request_timed_protocol(
    request_read_timeout: float, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> Callable[..., CoalescingHttpToolsProtocol]:
    """The protocol factory uvicorn takes as ``http``; picklable, for ``--workers`` processes."""
    return functools.partial(
        CoalescingHttpToolsProtocol, request_read_timeout=request_read_timeout, max_header_bytes=max_header_bytes
    )
