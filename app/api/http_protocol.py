"""uvicorn's HTTP/1.1 protocol (httptools), with each connection's writes of one event-loop iteration sent
as one.

uvicorn writes an answer's status line and headers, then its body, in two ``transport.write`` calls: two
``send`` system calls and two TCP segments per answer (``TCP_NODELAY`` is on). Held until the loop has
run what is ready, both leave in one. ``par-server serve`` passes ``CoalescingHttpToolsProtocol`` to
uvicorn as its ``http`` implementation; the figures are in bench/RESULTS.md ("One write per answer").
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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

    def abort(self) -> None:
        self._held = []
        self._held_bytes = 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._held_bytes + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``CoalescedWrites`` transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalesced = CoalescedWrites(transport, _flusher_of(self.loop))
        super().connection_made(coalesced)  # type: ignore[arg-type]
