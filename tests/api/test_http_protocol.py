"""An answer's writes leave in one, and nothing written is lost, reordered or held past a loop iteration."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from app.api.http_protocol import HELD_BYTES_LIMIT, CoalescedWrites, CoalescingHttpToolsProtocol, _Flusher


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
async def serving(protocol: type[asyncio.Protocol] = CoalescingHttpToolsProtocol) -> AsyncIterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    config = uvicorn.Config(small_app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_config=None)
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
