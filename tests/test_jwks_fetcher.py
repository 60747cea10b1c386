"""JwksFetcher against a real HTTP/1.1 server on 127.0.0.1 (asyncio streams, no framework).

Only loopback is reachable here, so tests of the address guard that name other addresses run with a
transport that refuses anything but 127.0.0.1: a broken guard fails the test instead of reaching out.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from app.jwks_fetcher import JwksFetcher, JwksFetchError

KEY_1 = {
    "kty": "EC",
    "crv": "P-256",
    "kid": "k1",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
KEY_2 = {**KEY_1, "kid": "k2"}
DOCUMENT = {"keys": [KEY_1]}

TIMEOUT = 2.0
MAX_BYTES = 4096
TTL = 300.0
REFETCH_INTERVAL = 30.0
MAX_ENTRIES = 16
HEAD_TIMEOUT = 5.0  # how long the test server waits for a request head

Route = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class LocalHttpServer:
    """Just enough HTTP/1.1: one request per connection, routes by path, records every connection."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> int:
        return sum(1 for request in self.requests if request.path == path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            self.requests.append(RecordedRequest(method, path, headers))
            await self.routes.get(path, reply(404, b"not found"))(writer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
            self._handlers.discard(task)


def response_head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(
    status: int, body: bytes, *, headers: Iterable[tuple[str, str]] = (), content_length: bool = True, delay: float = 0
) -> Route:
    """A response; without Content-Length the body ends when the connection closes."""
    all_headers = [("Content-Type", "application/json"), *headers]
    if content_length:
        all_headers.append(("Content-Length", str(len(body))))

    async def route(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        writer.write(response_head(status, all_headers) + body)

    return route


def json_reply(document: object, **options: Any) -> Route:
    return reply(200, json.dumps(document).encode(), **options)


def drip(chunk: bytes, count: int, interval: float) -> Route:
    """A 200 whose body arrives a chunk at a time: each read is quick, the whole is slow."""

    async def route(writer: asyncio.StreamWriter) -> None:
        writer.write(response_head(200, [("Content-Length", str(len(chunk) * count))]))
        for _ in range(count):
            await writer.drain()
            await asyncio.sleep(interval)
            writer.write(chunk)

    return route


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class LoopbackOnlyTransport(httpx.AsyncBaseTransport):
    """The real transport, but only towards 127.0.0.1: anything else fails the test unsent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host != "127.0.0.1":
            raise AssertionError(f"test would have contacted {request.url.host}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


FetcherFactory = Callable[..., JwksFetcher]


@pytest.fixture
async def server() -> AsyncIterator[LocalHttpServer]:
    local = LocalHttpServer()
    await local.start()
    yield local
    await local.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_fetcher(clock: FakeClock) -> AsyncIterator[FetcherFactory]:
    created: list[JwksFetcher] = []

    def make(**overrides: Any) -> JwksFetcher:
        options: dict[str, Any] = {
            "timeout_seconds": TIMEOUT,
            "max_bytes": MAX_BYTES,
            "cache_ttl_seconds": TTL,
            "refetch_min_interval_seconds": REFETCH_INTERVAL,
            "max_cache_entries": MAX_ENTRIES,
            "allow_private_addresses": True,
            "clock": clock,
            **overrides,
        }
        fetcher = JwksFetcher(**options)
        created.append(fetcher)
        return fetcher

    yield make
    for fetcher in created:
        await fetcher.aclose()


@pytest.fixture
def fetcher(make_fetcher: FetcherFactory) -> JwksFetcher:
    return make_fetcher()


@pytest.fixture
async def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Replaces the running loop's getaddrinfo: names resolve from the returned table (filled in by the
    test), IP literals to themselves, anything else fails; no real DNS query is made."""
    table: dict[str, list[str]] = {}

    async def getaddrinfo(
        host: str, port: int, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]]:
        del family, proto, flags
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            addresses = [host]
        except OSError:
            if host not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            addresses = table[host]
        kind = socket.SocketKind(type or socket.SOCK_STREAM)
        return [
            (socket.AF_INET6, kind, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, kind, 6, "", (address, port))
            for address in addresses
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    return table


# Fetching and caching


async def test_fetch_then_cache_hit(server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT)

    assert await fetcher.get(server.url("/jwks")) == DOCUMENT
    clock.now += TTL - 1
    assert await fetcher.get(server.url("/jwks")) == DOCUMENT

    assert server.hits("/jwks") == 1
    assert server.requests[0].method == "GET"
    assert server.requests[0].headers["accept"] == "application/jwk-set+json, application/json"


async def test_cached_answers_without_fetching_or_says_none(
    server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock
) -> None:
    """What a caller holding a database connection asks before ``get``: a document only when ``get``
    would neither fetch nor wait."""
    server.routes["/jwks"] = json_reply(DOCUMENT)
    assert fetcher.cached(server.url("/jwks")) is None
    await fetcher.get(server.url("/jwks"))

    assert fetcher.cached(server.url("/jwks")) == DOCUMENT
    cached = fetcher.cached(server.url("/jwks"))
    assert cached is not None
    cached["keys"].clear()  # a copy
    assert fetcher.cached(server.url("/jwks")) == DOCUMENT
    assert fetcher.cached(server.url("/jwks"), refresh=True) == DOCUMENT  # too soon to refetch
    clock.now += REFETCH_INTERVAL
    assert fetcher.cached(server.url("/jwks"), refresh=True) is None  # an unknown kid would refetch
    clock.now += TTL
    assert fetcher.cached(server.url("/jwks")) is None
    assert server.hits("/jwks") == 1


async def test_returned_document_is_a_copy(server: LocalHttpServer, fetcher: JwksFetcher) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT)

    (await fetcher.get(server.url("/jwks")))["keys"].clear()

    assert await fetcher.get(server.url("/jwks")) == DOCUMENT


async def test_ttl_expiry_refetches(server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT)
    await fetcher.get(server.url("/jwks"))
    server.routes["/jwks"] = json_reply({"keys": [KEY_2]})

    clock.now += TTL

    assert await fetcher.get(server.url("/jwks")) == {"keys": [KEY_2]}
    assert server.hits("/jwks") == 2


async def test_refresh_refetches_once_then_is_rate_limited(
    server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock
) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT)
    await fetcher.get(server.url("/jwks"))
    rotated = {"keys": [KEY_1, KEY_2]}
    server.routes["/jwks"] = json_reply(rotated)

    # Just fetched: the document is as fresh as we allow, so an unknown kid does not refetch yet.
    assert await fetcher.get(server.url("/jwks"), refresh=True) == DOCUMENT
    assert server.hits("/jwks") == 1

    clock.now += REFETCH_INTERVAL
    assert await fetcher.get(server.url("/jwks"), refresh=True) == rotated
    assert server.hits("/jwks") == 2

    for _ in range(5):  # an attacker's random kids, within the interval
        clock.now += 1
        assert await fetcher.get(server.url("/jwks"), refresh=True) == rotated
    assert server.hits("/jwks") == 2

    clock.now += REFETCH_INTERVAL
    await fetcher.get(server.url("/jwks"), refresh=True)
    assert server.hits("/jwks") == 3


async def test_concurrent_gets_share_one_request(server: LocalHttpServer, fetcher: JwksFetcher) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT, delay=0.2)

    documents = await asyncio.gather(*(fetcher.get(server.url("/jwks")) for _ in range(10)))

    assert documents == [DOCUMENT] * 10
    assert server.hits("/jwks") == 1


async def test_concurrent_refreshes_share_one_request(
    server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock
) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT, delay=0.2)
    await fetcher.get(server.url("/jwks"))
    clock.now += REFETCH_INTERVAL

    await asyncio.gather(*(fetcher.get(server.url("/jwks"), refresh=True) for _ in range(10)))

    assert server.hits("/jwks") == 2


async def test_concurrent_failures_share_one_request(server: LocalHttpServer, fetcher: JwksFetcher) -> None:
    server.routes["/jwks"] = reply(500, b"{}", delay=0.2)

    results = await asyncio.gather(*(fetcher.get(server.url("/jwks")) for _ in range(5)), return_exceptions=True)

    assert all(isinstance(result, JwksFetchError) for result in results)
    assert server.hits("/jwks") == 1


async def test_failure_is_not_retried_within_the_interval(
    server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock
) -> None:
    server.routes["/jwks"] = reply(503, b"")
    for _ in range(3):
        with pytest.raises(JwksFetchError, match="HTTP status 503"):
            await fetcher.get(server.url("/jwks"))
    assert server.hits("/jwks") == 1

    server.routes["/jwks"] = json_reply(DOCUMENT)
    clock.now += REFETCH_INTERVAL
    assert await fetcher.get(server.url("/jwks")) == DOCUMENT
    assert server.hits("/jwks") == 2


async def test_failed_refresh_keeps_the_current_document(
    server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock
) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT)
    await fetcher.get(server.url("/jwks"))
    server.routes["/jwks"] = reply(500, b"")
    clock.now += REFETCH_INTERVAL

    with pytest.raises(JwksFetchError):
        await fetcher.get(server.url("/jwks"), refresh=True)

    assert await fetcher.get(server.url("/jwks")) == DOCUMENT
    assert await fetcher.get(server.url("/jwks"), refresh=True) == DOCUMENT  # rate-limited again
    assert server.hits("/jwks") == 2


async def test_failed_fetch_after_expiry_does_not_serve_the_expired_document(
    server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock
) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT)
    await fetcher.get(server.url("/jwks"))
    server.routes["/jwks"] = reply(500, b"")
    clock.now += TTL

    for _ in range(2):
        with pytest.raises(JwksFetchError):
            await fetcher.get(server.url("/jwks"))
    assert server.hits("/jwks") == 2


async def test_cache_evicts_the_oldest_entry(server: LocalHttpServer, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(max_cache_entries=2)
    for path in ("/a", "/b", "/c"):
        server.routes[path] = json_reply(DOCUMENT)
        await fetcher.get(server.url(path))

    await fetcher.get(server.url("/b"))
    await fetcher.get(server.url("/c"))
    await fetcher.get(server.url("/a"))

    assert [server.hits(path) for path in ("/a", "/b", "/c")] == [2, 1, 1]


async def test_no_cookies_are_kept(server: LocalHttpServer, fetcher: JwksFetcher, clock: FakeClock) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT, headers=[("Set-Cookie", "session=abc; Path=/")])
    await fetcher.get(server.url("/jwks"))
    clock.now += TTL

    await fetcher.get(server.url("/jwks"))

    assert server.hits("/jwks") == 2
    assert "cookie" not in server.requests[1].headers


# Limits


@pytest.mark.parametrize("content_length", [True, False], ids=["with-content-length", "without-content-length"])
async def test_oversized_body_fails(server: LocalHttpServer, fetcher: JwksFetcher, content_length: bool) -> None:
    padding = "x" * MAX_BYTES
    server.routes["/jwks"] = json_reply({"keys": [], "padding": padding}, content_length=content_length)

    with pytest.raises(JwksFetchError, match=f"larger than {MAX_BYTES} bytes"):
        await fetcher.get(server.url("/jwks"))


async def test_declared_oversized_body_fails_before_it_arrives(server: LocalHttpServer, fetcher: JwksFetcher) -> None:
    async def promise_a_gigabyte(writer: asyncio.StreamWriter) -> None:
        writer.write(response_head(200, [("Content-Length", str(10**9))]))
        await writer.drain()
        await asyncio.sleep(10)

    server.routes["/jwks"] = promise_a_gigabyte

    started = time.monotonic()
    with pytest.raises(JwksFetchError, match=f"larger than {MAX_BYTES} bytes"):
        await fetcher.get(server.url("/jwks"))
    assert time.monotonic() - started < TIMEOUT / 2


async def test_body_of_exactly_max_bytes_is_accepted(server: LocalHttpServer, fetcher: JwksFetcher) -> None:
    body = json.dumps(DOCUMENT).encode()
    body += b" " * (MAX_BYTES - len(body))
    server.routes["/jwks"] = reply(200, body, content_length=False)

    assert await fetcher.get(server.url("/jwks")) == DOCUMENT


async def test_compressed_body_is_refused(server: LocalHttpServer, fetcher: JwksFetcher) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT, headers=[("Content-Encoding", "gzip")])

    with pytest.raises(JwksFetchError, match="compressed"):
        await fetcher.get(server.url("/jwks"))
    assert server.requests[0].headers["accept-encoding"] == "identity"


async def test_silent_server_times_out(server: LocalHttpServer, make_fetcher: FetcherFactory) -> None:
    fetcher = make_fetcher(timeout_seconds=0.3)
    server.routes["/jwks"] = json_reply(DOCUMENT, delay=10)

    started = time.monotonic()
    with pytest.raises(JwksFetchError):
        await fetcher.get(server.url("/jwks"))
    assert time.monotonic() - started < 2


async def test_trickling_body_hits_the_total_timeout(server: LocalHttpServer, make_fetcher: FetcherFactory) -> None:
    # Every chunk arrives well within 0.5 s (httpx's per-read timeout would never fire); the whole
    # body would take 2 s.
    fetcher = make_fetcher(timeout_seconds=0.5)
    server.routes["/jwks"] = drip(b" ", count=20, interval=0.1)

    started = time.monotonic()
    with pytest.raises(JwksFetchError, match=r"no complete response within 0\.5 s"):
        await fetcher.get(server.url("/jwks"))
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (reply(404, b"{}"), "HTTP status 404"),
        (reply(500, b'{"keys": []}'), "HTTP status 500"),
        (reply(204, b"", content_length=False), "HTTP status 204"),
        (reply(302, b"", headers=[("Location", "/elsewhere")]), r"redirect \(HTTP 302\)"),
        (reply(307, b"", headers=[("Location", "/elsewhere")]), r"redirect \(HTTP 307\)"),
        (reply(200, b"{not json"), "not JSON"),
        (reply(200, b"\xff\xfe"), "not JSON"),
        (reply(200, b"[" * 3000 + b"]" * 3000), "not JSON|not a JSON object"),
        (reply(200, b'{"keys": [{"kty": "EC", "x": NaN}]}'), "holds NaN"),
        (reply(200, b'{"keys": [{"kty": "EC", "kid": "\\ud800"}]}'), "unpaired surrogate"),
        (reply(200, b'{"keys": [], "x": ' + b"[" * 40 + b"]" * 40 + b"}"), "deeper than"),
        (json_reply([KEY_1]), "not a JSON object"),
        (json_reply({"kid": "k1"}), 'no "keys" array'),
        (json_reply({"keys": {"k1": KEY_1}}), 'no "keys" array'),
        (json_reply({"keys": [KEY_1, "k2"]}), "not a JSON object"),
    ],
    ids=[
        "404",
        "500",
        "204",
        "302",
        "307",
        "invalid-json",
        "invalid-utf8",
        "deep-nesting",
        "NaN",
        "unpaired-surrogate",
        "nested-40-deep",
        "array",
        "no-keys",
        "keys-object",
        "key-not-object",
    ],
)
async def test_unusable_response_fails(
    server: LocalHttpServer, make_fetcher: FetcherFactory, route: Route, message: str
) -> None:
    fetcher = make_fetcher(max_bytes=64 * 1024)
    server.routes["/jwks"] = route
    server.routes["/elsewhere"] = json_reply(DOCUMENT)

    with pytest.raises(JwksFetchError, match=message):
        await fetcher.get(server.url("/jwks"))
    assert server.hits("/elsewhere") == 0


async def test_failure_log_and_error_name_the_host_only(
    server: LocalHttpServer, fetcher: JwksFetcher, caplog: pytest.LogCaptureFixture
) -> None:
    server.routes["/jwks?access_token=s3cr3t"] = reply(500, b"BODY-SECRET")

    with caplog.at_level(logging.WARNING, logger="par_server"), pytest.raises(JwksFetchError) as raised:
        await fetcher.get(server.url("/jwks?access_token=s3cr3t"))

    assert server.hits("/jwks?access_token=s3cr3t") == 1
    [record] = caplog.records
    assert "127.0.0.1" in record.getMessage()
    for text in (record.getMessage(), str(raised.value)):
        assert "s3cr3t" not in text
        assert "BODY-SECRET" not in text
        assert "/jwks" not in text


@pytest.mark.parametrize(
    "option",
    [
        {"timeout_seconds": 0},
        {"max_bytes": 0},
        {"cache_ttl_seconds": 0},
        {"refetch_min_interval_seconds": -1},
        {"max_cache_entries": 0},
    ],
)
def test_limits_must_be_positive(option: dict[str, float]) -> None:
    limits: dict[str, Any] = {
        "timeout_seconds": TIMEOUT,
        "max_bytes": MAX_BYTES,
        "cache_ttl_seconds": TTL,
        "refetch_min_interval_seconds": REFETCH_INTERVAL,
        "max_cache_entries": MAX_ENTRIES,
        "allow_private_addresses": False,
    }
    with pytest.raises(ValueError, match=next(iter(option))):
        JwksFetcher(**{**limits, **option})


# The address guard


@pytest.fixture
def guarded(make_fetcher: FetcherFactory) -> tuple[JwksFetcher, LoopbackOnlyTransport]:
    transport = LoopbackOnlyTransport()
    return make_fetcher(allow_private_addresses=False, transport=transport), transport


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("http://127.0.0.1:{port}/jwks", "scheme must be https"),
        ("ftp://127.0.0.1:{port}/jwks", "scheme must be https"),
        ("https://127.0.0.1:{port}/jwks", "non-public address"),
        ("https://localhost:{port}/jwks", "local name"),
        ("https://LocalHost.:{port}/jwks", "local name"),
        ("https://jwks.localhost:{port}/jwks", "local name"),
        ("https://[::1]:{port}/jwks", "non-public address"),
        ("https://[::ffff:127.0.0.1]:{port}/jwks", "non-public address"),
        ("https://[2002:7f00:1::]:{port}/jwks", "non-public address"),  # 6to4 around 127.0.0.1
        ("https://10.0.0.1/jwks", "non-public address"),
        ("https://172.16.0.1/jwks", "non-public address"),
        ("https://192.168.1.1/jwks", "non-public address"),
        ("https://100.64.0.1/jwks", "non-public address"),  # carrier-grade NAT
        ("https://169.254.169.254/latest/meta-data/", "non-public address"),
        ("https://0.0.0.0/jwks", "non-public address"),
        ("https://224.0.0.1/jwks", "non-public address"),
        ("https://240.0.0.1/jwks", "non-public address"),
        ("https://[::]/jwks", "non-public address"),
        ("https://[fe80::1]/jwks", "non-public address"),
        ("https://[fc00::1]/jwks", "non-public address"),
        ("https://[ff02::1]/jwks", "non-public address"),
        ("https://[::ffff:10.0.0.1]/jwks", "non-public address"),
        ("https://[::ffff:169.254.169.254]/jwks", "non-public address"),
        ("https://user:password@jwks.example/jwks", "credentials"),
        ("https:///jwks", "no host|not a valid URL"),
    ],
)
async def test_guard_refuses_without_connecting(
    server: LocalHttpServer,
    guarded: tuple[JwksFetcher, LoopbackOnlyTransport],
    resolver: dict[str, list[str]],
    template: str,
    message: str,
) -> None:
    fetcher, transport = guarded
    resolver["jwks.example"] = ["93.184.216.34"]

    with pytest.raises(JwksFetchError, match=message):
        await fetcher.get(template.format(port=server.port))

    assert transport.requests == []
    assert server.connections == 0


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["::ffff:127.0.0.1"],
        ["fd00::1"],
        ["93.184.216.34", "10.1.2.3"],  # one internal address is enough to refuse
        ["2606:2800:220:1:248:1893:25c8:1946", "::1"],
    ],
)
async def test_guard_refuses_a_name_that_resolves_to_an_internal_address(
    server: LocalHttpServer,
    guarded: tuple[JwksFetcher, LoopbackOnlyTransport],
    resolver: dict[str, list[str]],
    addresses: list[str],
) -> None:
    fetcher, transport = guarded
    resolver["jwks.example"] = addresses

    with pytest.raises(JwksFetchError, match="resolves to a non-public address"):
        await fetcher.get(f"https://jwks.example:{server.port}/jwks")

    assert transport.requests == []
    assert server.connections == 0


async def test_guard_refuses_a_name_that_does_not_resolve(
    guarded: tuple[JwksFetcher, LoopbackOnlyTransport], resolver: dict[str, list[str]]
) -> None:
    fetcher, transport = guarded
    del resolver  # installed, and empty

    with pytest.raises(JwksFetchError, match="does not resolve"):
        await fetcher.get("https://jwks.invalid/jwks")
    assert transport.requests == []


def recording_transport(
    seen: list[httpx.Request], *, refuse: frozenset[str] = frozenset(), document: object = DOCUMENT
) -> httpx.MockTransport:
    """Answers in-process (nothing is sent anywhere); a host in ``refuse`` fails to connect."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host in refuse:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=document)

    return httpx.MockTransport(handle)


async def test_guard_connects_to_the_checked_address_with_the_original_name(
    make_fetcher: FetcherFactory, resolver: dict[str, list[str]]
) -> None:
    seen: list[httpx.Request] = []
    fetcher = make_fetcher(allow_private_addresses=False, transport=recording_transport(seen))
    resolver["jwks.example"] = ["93.184.216.34"]

    assert await fetcher.get("https://jwks.example/keys/jwks.json?v=2") == DOCUMENT

    [request] = seen
    assert str(request.url) == "https://93.184.216.34/keys/jwks.json?v=2"
    assert request.headers["Host"] == "jwks.example"
    assert request.extensions["sni_hostname"] == "jwks.example"


async def test_guard_keeps_a_non_default_port_and_brackets_ipv6(
    make_fetcher: FetcherFactory, resolver: dict[str, list[str]]
) -> None:
    seen: list[httpx.Request] = []
    fetcher = make_fetcher(allow_private_addresses=False, transport=recording_transport(seen))
    resolver["jwks.example"] = ["2606:2800:220:1:248:1893:25c8:1946"]

    await fetcher.get("https://jwks.example:8443/jwks")

    [request] = seen
    assert str(request.url) == "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/jwks"
    assert request.headers["Host"] == "jwks.example:8443"


async def test_guard_tries_the_next_checked_address_when_connecting_fails(
    make_fetcher: FetcherFactory, resolver: dict[str, list[str]]
) -> None:
    seen: list[httpx.Request] = []
    transport = recording_transport(seen, refuse=frozenset({"2606:2800:220:1:248:1893:25c8:1946"}))
    fetcher = make_fetcher(allow_private_addresses=False, transport=transport)
    resolver["jwks.example"] = ["2606:2800:220:1:248:1893:25c8:1946", "93.184.216.34"]

    assert await fetcher.get("https://jwks.example/jwks") == DOCUMENT
    assert [request.url.host for request in seen] == ["2606:2800:220:1:248:1893:25c8:1946", "93.184.216.34"]


async def test_guard_reports_when_no_address_connects(
    make_fetcher: FetcherFactory, resolver: dict[str, list[str]]
) -> None:
    seen: list[httpx.Request] = []
    transport = recording_transport(seen, refuse=frozenset({"93.184.216.34"}))
    fetcher = make_fetcher(allow_private_addresses=False, transport=transport)
    resolver["jwks.example"] = ["93.184.216.34"]

    with pytest.raises(JwksFetchError, match=r"request failed \(ConnectError\)"):
        await fetcher.get("https://jwks.example/jwks")


async def test_private_addresses_allowed_when_configured(server: LocalHttpServer, fetcher: JwksFetcher) -> None:
    server.routes["/jwks"] = json_reply(DOCUMENT)

    assert await fetcher.get(f"http://localhost:{server.port}/jwks") == DOCUMENT
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"
