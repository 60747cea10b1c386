"""An answer's writes leave in one, and nothing written is lost, reordered or held past a loop iteration."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.http_protocol import (
    HELD_BYTES_LIMIT,
    CoalescedWrites,
    CoalescingHttpToolsProtocol,
    _Flusher,
    _OverloadLog,
    request_timed_protocol,
)
from tests.conftest import ADMIN_TOKEN
from tests.factories import ServiceHandle


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default


async def next_iteration() -> None:
    # Callbacks scheduled with call_soon before this sleep run before it returns.
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def coalesced(transport: RecordingTransport) -> CoalescedWrites:
    return CoalescedWrites(transport, _Flusher(asyncio.get_running_loop()))  # type: ignore[arg-type]


async def test_writes_of_one_iteration_leave_as_one_write_in_order() -> None:
    transport = RecordingTransport()
    writes = coalesced(transport)
    writes.write(b"HTTP/1.1 201 Created\r\n\r\n")
    writes.write(b'{"a":1}')
    assert transport.writes == []
    await next_iteration()
    assert transport.writes == [b'HTTP/1.1 201 Created\r\n\r\n{"a":1}']
    writes.write(b"next")
    await next_iteration()
    assert transport.writes[1:] == [b"next"]


async def test_connections_sharing_a_flusher_each_get_their_own_bytes() -> None:
    flusher = _Flusher(asyncio.get_running_loop())
    first, second = RecordingTransport(), RecordingTransport()
    first_writes = CoalescedWrites(first, flusher)  # type: ignore[arg-type]
    second_writes = CoalescedWrites(second, flusher)  # type: ignore[arg-type]
    first_writes.write(b"1a")
    second_writes.write(b"2a")
    first_writes.write(b"1b")
    await next_iteration()
    assert (first.writes, second.writes) == ([b"1a1b"], [b"2a"])


async def test_close_writes_what_is_held_first_and_abort_drops_it() -> None:
    closed, aborted = RecordingTransport(), RecordingTransport()
    closing_writes, aborting_writes = coalesced(closed), coalesced(aborted)
    closing_writes.write(b"last words")
    closing_writes.close()
    assert closed.writes == [b"last words"] and closed.closed
    aborting_writes.write(b"dropped")
    aborting_writes.abort()
    await next_iteration()
    assert aborted.writes == [] and aborted.aborted


async def test_a_transport_closed_meanwhile_gets_no_write() -> None:
    transport = RecordingTransport()
    writes = coalesced(transport)
    writes.write(b"for a gone client")
    transport.close()  # the connection was lost before the loop came round
    await next_iteration()
    assert transport.writes == []


async def test_more_than_the_limit_is_written_at_once_and_counted_as_buffered() -> None:
    transport = RecordingTransport()
    writes = coalesced(transport)
    writes.write(b"x" * 10)
    assert writes.get_write_buffer_size() == 10 + 7
    writes.write(b"y" * HELD_BYTES_LIMIT)
    assert transport.writes == [b"x" * 10 + b"y" * HELD_BYTES_LIMIT]
    assert writes.get_write_buffer_size() == 7
    await next_iteration()
    assert len(transport.writes) == 1


async def test_everything_else_is_the_transports() -> None:
    writes = coalesced(RecordingTransport())
    assert writes.get_extra_info("peername") == ("127.0.0.1", 1234)


STREAMED = b"".join(b"%08d" % number for number in range(64 * 1024))  # 512 KiB, past the hold limit


async def small_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        # Chunks sent without yielding to the loop between them.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for start in range(0, len(STREAMED), 4096):
            await send({"type": "http.response.body", "body": STREAMED[start : start + 4096], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(
    protocol: Callable[..., asyncio.Protocol] = CoalescingHttpToolsProtocol,
    app: ASGIApp = small_app,
    limit_concurrency: int | None = None,
) -> AsyncIterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol,  # type: ignore[arg-type]
        lifespan="off",
        log_config=None,
        limit_concurrency=limit_concurrency,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def test_uvicorn_answers_whole_on_kept_alive_and_pipelined_connections() -> None:
    async with serving() as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for path in ("/one", "/two", "/three"):
                answer = await http.get(path)
                assert (answer.status_code, answer.content) == (200, path.encode())
            streamed = await http.get("/stream")
            assert streamed.content == STREAMED
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /bb HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        received = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
    first, _, second = received.partition(b"HTTP/1.1 200 OK")[2].partition(b"HTTP/1.1 200 OK")
    assert first.endswith(b"\r\n\r\n/a") and second.endswith(b"\r\n\r\n/bb")


class WritesSeen:
    """What reaches the socket's transport, per write."""

    def __init__(self, transport: asyncio.Transport, seen: list[bytes]) -> None:
        self._transport, self._seen = transport, seen

    def write(self, data: bytes) -> None:
        self._seen.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


SOCKET_WRITES: list[bytes] = []


class RecordedProtocol(CoalescingHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(WritesSeen(transport, SOCKET_WRITES))  # type: ignore[arg-type]


async def test_each_answer_reaches_the_socket_in_one_write() -> None:
    SOCKET_WRITES.clear()
    async with serving(RecordedProtocol) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for path in ("/one", "/two"):
                assert (await http.get(path)).status_code == 200
    assert len(SOCKET_WRITES) == 2
    assert all(write.startswith(b"HTTP/1.1 200 OK") for write in SOCKET_WRITES)
    assert SOCKET_WRITES[0].endswith(b"\r\n\r\n/one") and SOCKET_WRITES[1].endswith(b"\r\n\r\n/two")


# --- the request read timeout ---------------------------------------------------------------------------

READ_TIMEOUT = 1.0  # short, so that the tests that wait for it end soon
ANSWER_LIMIT = 30.0  # how long a test waits for an answer or a close that must come: far past READ_TIMEOUT


class SlowApp:
    """``/slow`` answers once the test sets ``release``; ``/echo`` answers the request's body."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.slow_started = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/slow":
            self.slow_started.set()
            await self.release.wait()
            body = b"slow"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def request(path: str, body: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (path.encode(), len(body), body)


async def answers_until_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout=ANSWER_LIMIT)


async def test_partial_requests_get_408_and_are_closed_while_other_clients_are_served() -> None:
    """100 connections that sent part of their headers (and one that sent nothing) are closed, the
    partial ones with a 408; a client that sends whole requests is served meanwhile."""
    async with serving(request_timed_protocol(READ_TIMEOUT), SlowApp()) as port:
        stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(100)]
        for _, writer in stalled:
            writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-le")
            await writer.drain()
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for n in range(3):
                answer = await http.post("/echo", content=b"body %d" % n)
                assert (answer.status_code, answer.content) == (200, b"body %d" % n)
        closing = [answers_until_close(reader) for reader, _ in stalled]
        for closed in await asyncio.gather(*closing):
            head, _, body = closed.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), closed
            assert b"\r\nconnection: close\r\n" in head and b"\r\ncontent-type: application/json" in head
            assert json.loads(body) == {
                "error": "invalid_request",
                "error_description": "the request did not arrive in time",
            }
        assert await answers_until_close(silent_reader) == b""  # nothing asked, nothing answered: closed
        for _, writer in [*stalled, (silent_reader, silent_writer)]:
            writer.close()


async def test_bytes_that_keep_coming_do_not_extend_the_deadline() -> None:
    """A request sent a byte at a time, each well within the timeout of the one before, still has to
    arrive whole within the timeout from its first byte (uvicorn's own timer restarts at each byte)."""
    async with serving(request_timed_protocol(READ_TIMEOUT), SlowApp()) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        dribbled = request("/echo", b"x" * 1000)
        answer = asyncio.ensure_future(answers_until_close(reader))
        for byte in dribbled:
            if answer.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(READ_TIMEOUT / 10)
        assert (await answer).startswith(b"HTTP/1.1 408 "), "the request took 10 timeouts to arrive"
        writer.close()


async def test_a_slow_request_within_the_timeout_is_answered_and_the_connection_kept() -> None:
    generous = 20.0
    async with serving(request_timed_protocol(generous), SlowApp()) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):  # twice on one connection: the timer starts again with the next request
            slow_request = request("/echo", b"a slow client's body")
            for start in range(0, len(slow_request), 8):
                writer.write(slow_request[start : start + 8])
                await asyncio.sleep(0.02)  # about half a second in all, far from the timeout
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=ANSWER_LIMIT)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert await reader.readexactly(len(b"a slow client's body")) == b"a slow client's body"
        writer.close()


async def test_a_request_being_processed_is_not_timed() -> None:
    """The handler takes several read timeouts (as a push waiting for a slow jwksUri does); its answer
    still arrives, on a connection kept alive for the next request."""
    app = SlowApp()
    async with serving(request_timed_protocol(READ_TIMEOUT), app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/slow"))
        await asyncio.wait_for(app.slow_started.wait(), timeout=ANSWER_LIMIT)
        await asyncio.sleep(3 * READ_TIMEOUT)
        app.release.set()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=ANSWER_LIMIT)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in head
        assert await reader.readexactly(4) == b"slow"
        writer.write(request("/echo", b"next"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=ANSWER_LIMIT)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert await reader.readexactly(4) == b"next"
        writer.close()


async def test_a_request_pipelined_behind_a_slow_one_is_timed_only_once_that_one_is_answered() -> None:
    """The second request's head and part of its body arrive while the first is processed for several
    read timeouts; uvicorn reads no further then, so that time does not count against the second."""
    app = SlowApp()
    async with serving(request_timed_protocol(READ_TIMEOUT), app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        second = request("/echo", b"pipelined body")
        writer.write(request("/slow"))
        await asyncio.wait_for(app.slow_started.wait(), timeout=ANSWER_LIMIT)
        writer.write(second[:-4])
        await asyncio.sleep(3 * READ_TIMEOUT)
        writer.write(second[-4:])
        await writer.drain()
        app.release.set()
        writer.write(request("/echo", b"third"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=ANSWER_LIMIT)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert await reader.readexactly(4) == b"slow"
        for body in (b"pipelined body", b"third"):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=ANSWER_LIMIT)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
            assert await reader.readexactly(len(body)) == body
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed_by_the_keep_alive_timeout_without_an_answer() -> None:
    """Between requests the keep-alive timeout governs: no 408 for a connection that asked nothing."""
    async with serving(request_timed_protocol(ANSWER_LIMIT * 10), SlowApp()) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/echo", b"once"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=ANSWER_LIMIT)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert await reader.readexactly(4) == b"once"
        # uvicorn's keep-alive timeout is 5 s here; the read timeout would be far later.
        assert await answers_until_close(reader) == b""
        writer.close()


async def test_a_request_timed_out_at_the_backend_api_gets_a_result_error() -> None:
    """Its headers arrived, its body did not: the application waiting for the body gets a disconnect."""
    async with serving(request_timed_protocol(READ_TIMEOUT), SlowApp()) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/api/1/pushed_auth_req", b'{"parameters": "a=b"}')[:-5])
        head, _, body = (await answers_until_close(reader)).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"\r\nconnection: close\r\n" in head
        assert json.loads(body)["resultMessage"].endswith("the request did not arrive in time")
        writer.close()


class ObservedSlowApp(SlowApp):
    """Told, as ``ParServerApp`` is, of the answers the protocol gave without it."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol_answers: list[tuple[str, int]] = []

    def observe_protocol_answer(self, method: str, status: int, duration: float) -> None:
        assert duration >= 0
        self.protocol_answers.append((method, status))


async def test_beyond_the_connection_limit_a_request_gets_503_in_its_endpoints_format() -> None:
    app = ObservedSlowApp()
    async with serving(request_timed_protocol(ANSWER_LIMIT), app, limit_concurrency=3) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for path, error in (("/services/1/par", "error"), ("/api/1/pushed_auth_req", "resultCode")):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request(path, b"x"))
            head, _, body = (await answers_until_close(reader)).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), head
            assert b"\r\nretry-after: 5\r\n" in head and b"\r\nconnection: close\r\n" in head
            assert error in json.loads(body)
            writer.close()
            await writer.wait_closed()
        assert app.protocol_answers == [("POST", 503), ("POST", 503)]
        for _, writer in held:
            writer.close()
            await writer.wait_closed()
        # Below the limit again (uvicorn counts a connection until its close is seen): served.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.post("/echo", content=b"served")
            for _ in range(100):
                if answer.status_code == 200:
                    break
                await asyncio.sleep(0.05)
                answer = await http.post("/echo", content=b"served")
            assert (answer.status_code, answer.content) == (200, b"served")


def test_the_protocol_factory_unpickles_without_the_applications_imports() -> None:
    """With --workers, each worker unpickles the factory before it answers its supervisor's health checks
    (5 s): importing FastAPI, SQLAlchemy and redis first got workers killed on a busy machine."""
    code = (
        "import pickle, sys; pickle.loads(sys.stdin.buffer.read()); "
        "print(sorted({'fastapi', 'sqlalchemy', 'redis', 'app.api.errors'} & set(sys.modules)))"
    )
    factory = pickle.dumps(request_timed_protocol(READ_TIMEOUT))
    completed = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code], input=factory, capture_output=True, timeout=60, check=True
    )
    assert completed.stdout.decode().strip() == "[]"


# --- the bound on a request's line and headers ------------------------------------------------------------

MAX_HEADER_BYTES = 4096


async def answered_while_sending(port: int, pieces: Iterator[bytes]) -> tuple[bytes, bool]:
    """The server's answer to ``pieces`` sent one after another, and whether it came (and the server
    ended its side) before the last of them was sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(answers_until_close(reader))
    early = False
    for piece in pieces:
        if answer.done():
            early = True
            break
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0)
    received = await answer
    writer.close()
    return received, early


def growing_header_block(path: bytes) -> Iterator[bytes]:
    """A request whose header block never ends (10 MB of tiny headers, in 1 KB pieces)."""
    yield b"POST " + path + b" HTTP/1.1\r\nhost: x\r\n"
    for _ in range(10_000):
        yield b"a:b\r\n" * 200


def huge_header_line() -> Iterator[bytes]:
    """One header whose value never ends: the parser reports nothing until it does."""
    yield b"POST /services/1/par HTTP/1.1\r\nhost: x\r\nx-big: "
    for _ in range(10_000):
        yield b"v" * 1000


def huge_target() -> Iterator[bytes]:
    yield b"GET /api/1/pushed_auth_req?"
    for _ in range(10_000):
        yield b"q" * 1000


async def test_a_header_block_or_target_beyond_the_limit_gets_431_before_it_ends() -> None:
    """The server answers and ends its side while the client still has megabytes to send: what it held
    was bounded by the limit, not by what the client sent (the rest is read and dropped)."""
    async with serving(request_timed_protocol(ANSWER_LIMIT, MAX_HEADER_BYTES), SlowApp()) as port:
        for pieces, error in (
            (growing_header_block(b"/services/1/par"), "error"),
            (huge_header_line(), "error"),
            (huge_target(), "resultCode"),
        ):
            received, early = await answered_while_sending(port, pieces)
            head, _, body = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 431 "), received[:200]
            assert b"\r\nconnection: close\r\n" in head
            assert early, "the answer waited for the whole request"
            assert (
                f"the request headers exceed {MAX_HEADER_BYTES} bytes"
                in json.loads(body)["error_description" if error == "error" else "resultMessage"]
            )
        # Requests within the limit, headers and target near it included, are served as before.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            near = {f"x-{n}": "v" * 100 for n in range(30)}
            answer = await http.post("/echo?" + "q" * 500, content=b"within", headers=near)
            assert (answer.status_code, answer.content) == (200, b"within")


async def test_headers_that_fit_are_not_counted_across_requests_of_a_connection() -> None:
    async with serving(request_timed_protocol(ANSWER_LIMIT, MAX_HEADER_BYTES), SlowApp()) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            headers = {f"x-{n}": "v" * 100 for n in range(20)}  # over half the limit each time
            for n in range(5):
                answer = await http.post("/echo", content=b"%d" % n, headers=headers)
                assert (answer.status_code, answer.content) == (200, b"%d" % n)


# --- malformed requests ---------------------------------------------------------------------------------


async def test_a_malformed_request_gets_400_in_its_endpoints_format() -> None:
    async with serving(request_timed_protocol(ANSWER_LIMIT), SlowApp()) as port:
        for malformed, key in (
            (b"POST /services/1/par HTTP/1.1\r\nhost: x\r\nx-a: a\x00b\r\n\r\n", "error"),
            (
                b"POST /api/1/pushed_auth_req HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                "resultCode",
            ),
            (b"G\xffT /services/1/par HTTP/1.1\r\nhost: x\r\n\r\n", "error"),  # no path yet: the default format
            (b"GET /services/\xff/par HTTP/1.1\r\nhost: x\r\n\r\n", "error"),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(malformed)
            head, _, body = (await answers_until_close(reader)).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 "), (malformed, head)
            assert b"\r\nconnection: close\r\n" in head and b"\r\ncontent-type: application/json" in head
            assert key in json.loads(body), (malformed, body)
            writer.close()


# --- what the request log and metrics record of requests the protocol ended ---------------------------------


async def request_line(caplog: pytest.LogCaptureFixture, route: str) -> dict[str, Any]:
    """The request log line of ``route``, once the application has written it (it may finish after the
    client saw the protocol's answer)."""
    for _ in range(int(ANSWER_LIMIT / 0.01)):
        fields = [record.__dict__["fields"] for record in caplog.records if record.name == "par_server.request"]
        lines = [line for line in fields if line["route"] == route]
        if lines:
            [line] = lines
            return dict(line)
        await asyncio.sleep(0.01)
    raise AssertionError(f"no request line for {route}")


def latency_count(app: FastAPI, route: str, status: str) -> float:
    sample = app.state.par.metrics.registry.get_sample_value(
        "par_request_duration_seconds_count", {"route": route, "method": "POST", "status": status}
    )
    return sample or 0.0


async def test_a_body_too_slow_is_logged_and_counted_as_408(
    app: FastAPI, service: ServiceHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="par_server.request")
    async with serving(request_timed_protocol(READ_TIMEOUT), app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n"
            b"content-length: 100\r\n\r\nclient_id=1" % service.par_path.encode()
        )
        assert (await answers_until_close(reader)).startswith(b"HTTP/1.1 408 ")
        writer.close()
        line = await request_line(caplog, "/services/{service_id}/par")
    assert line["status"] == 408
    assert latency_count(app, "/services/{service_id}/par", "408") == 1
    assert latency_count(app, "/services/{service_id}/par", "500") == 0


async def test_a_client_that_leaves_while_its_body_is_read_is_logged_and_counted_as_499(
    app: FastAPI, service: ServiceHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """Whether the direct routes or FastAPI's read the body: the client closed the request, nothing failed."""
    caplog.set_level(logging.INFO, logger="par_server.request")
    async with serving(request_timed_protocol(ANSWER_LIMIT), app) as port:
        for path, route, media_type in (
            (service.par_path, "/services/{service_id}/par", b"application/x-www-form-urlencoded"),
            ("/api/service/create", "/api/service/create", b"application/json"),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: %s\r\nexpect: 100-continue\r\n"
                b"authorization: Bearer %s\r\ncontent-length: 100\r\n\r\n"
                % (path.encode(), media_type, ADMIN_TOKEN.encode())
            )
            # The application asks for the body: uvicorn says 100 Continue; the client leaves instead.
            continued = await reader.readuntil(b"\r\n\r\n")
            assert continued.startswith(b"HTTP/1.1 100 "), continued
            writer.transport.abort()
            line = await request_line(caplog, route)
            assert line["status"] == 499
            assert latency_count(app, route, "499") == 1


async def test_answers_without_the_application_are_logged_and_counted_as_unmatched(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """A 431 and a 408 given before the headers were complete, which the application never saw."""
    caplog.set_level(logging.INFO, logger="par_server.request")
    async with serving(request_timed_protocol(READ_TIMEOUT, MAX_HEADER_BYTES), app) as port:
        received, _ = await answered_while_sending(port, growing_header_block(b"/services/1/par"))
        assert received.startswith(b"HTTP/1.1 431 ")
        line = await request_line(caplog, "unmatched")
        assert (line["status"], line["method"]) == (431, "POST")
        caplog.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /services/1/par HTTP/1.1\r\nhost: x\r\ncontent-le")
        assert (await answers_until_close(reader)).startswith(b"HTTP/1.1 408 ")
        writer.close()
        line = await request_line(caplog, "unmatched")
        assert (line["status"], line["method"]) == (408, "POST")
    assert latency_count(app, "unmatched", "431") == latency_count(app, "unmatched", "408") == 1


def test_the_connection_limit_warning_is_one_line_per_interval_with_the_count_since_the_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="par_server")
    overload_log = _OverloadLog()
    for _ in range(3):
        overload_log.answered(interval=3600.0)
    overload_log._next_line_at = 0.0  # the interval has passed
    overload_log.answered(interval=3600.0)
    assert [record.getMessage() for record in caplog.records if record.name == "par_server"] == [
        "connection limit reached (PAR_MAX_CONNECTIONS): answered 503 to 1 request(s)",
        "connection limit reached (PAR_MAX_CONNECTIONS): answered 503 to 3 request(s)",
    ]
