"""Fetching a client's JWK Set from its ``jwks_uri`` for ``private_key_jwt`` (RFC 7523).

A ``jwks_uri`` is a URL chosen by whoever registered the client, and the fetch is triggered by whoever
sends a client assertion, so this module treats both as untrusted:

* **Bounded work per request.** Documents are cached for ``cache_ttl_seconds``. An assertion with an
  unknown ``kid`` may ask for a refetch (key rotation), but at most once per
  ``refetch_min_interval_seconds`` per URI, and a failed fetch is not retried within that interval
  either; otherwise random ``kid`` values or a down server would turn every PAR request into an
  outbound request. Concurrent callers for one URI share one fetch.
* **Bounded resources per fetch.** One deadline covers resolution, connection, headers and body; the
  body is streamed and abandoned past ``max_bytes`` whatever Content-Length says; compressed bodies
  are refused (so the byte limit is also the memory limit); redirects are errors, not followed.
* **No server-side request forgery.** Unless ``allow_private_addresses`` (development, tests), the URI
  must be ``https`` and every address its host resolves to must be globally routable; see
  ``JwksFetcher`` for how the checked address is also the one connected to.

A failed fetch never serves an expired document ("fail closed"): keys past their cache lifetime may
have been revoked, and the client can always fix its endpoint.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookiejar import Cookie, CookieJar, CookiePolicy
from types import TracebackType
from typing import Any
from urllib.request import Request as UrllibRequest

import httpx

from app.core import json_input

logger = logging.getLogger("par_server")

ACCEPT = "application/jwk-set+json, application/json"
HTTPS_PORT = 443
HTTP_PORT = 80

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class JwksFetchError(Exception):
    """A JWK Set could not be obtained. ``description`` is short and operator-facing: it names what
    went wrong but never includes the URI (which may carry credentials in its query), a response body
    or a key."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(slots=True)
class _CacheEntry:
    """What we know about one URI. ``document`` stays after a failed refresh while it is within its
    lifetime, so an unknown ``kid`` plus an outage does not invalidate keys that are still good."""

    document: dict[str, Any] | None
    fetched_at: float
    attempted_at: float
    error: str | None


@dataclass(slots=True)
class _Flight:
    """Serialises fetches of one URI. ``users`` lets the last caller drop it, so the table of locks is
    bounded by the number of URIs being fetched right now rather than growing with every URI seen."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class _NoCookies(CookiePolicy):
    """A JWKS endpoint has no business setting state in our client: accept and send no cookies."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: Cookie, request: UrllibRequest) -> bool:  # noqa: ARG002 - the policy's signature
        return False

    def return_ok(self, cookie: Cookie, request: UrllibRequest) -> bool:  # noqa: ARG002
        return False

    def domain_return_ok(self, domain: str, request: UrllibRequest) -> bool:  # noqa: ARG002
        return False

    def path_return_ok(self, path: str, request: UrllibRequest) -> bool:  # noqa: ARG002
        return False


class JwksFetcher:
    """Fetches and caches JWK Sets by URI; one instance per application, closed with ``aclose()``.

    DNS rebinding: the host name is resolved once with ``loop.getaddrinfo``, every address is checked,
    and the request is then sent to a checked *address* (the URL's host replaced by the IP), with the
    original ``Host`` header and the original name as TLS SNI and certificate-verification name
    (httpx's documented ``sni_hostname`` request extension). So there is no second resolution an
    attacker's DNS could answer differently, while TLS still authenticates the named server. Pooled
    connections are keyed by address, not name, so keep-alive is off: otherwise a connection verified
    for one name could carry a request for another name that resolves to the same address. JWKS fetches
    are rare (cached), so the lost reuse costs nothing. Addresses are tried in resolver order, the next
    one only when connecting to the previous failed.

    The guard runs before the transport, so it also applies to an injected ``transport``; with
    ``allow_private_addresses=True`` there is no guard at all (``http`` and any address are allowed).
    """

    def __init__(
        self,
        *,
        timeout_seconds: float,
        max_bytes: int,
        cache_ttl_seconds: float,
        refetch_min_interval_seconds: float,
        max_cache_entries: int,
        allow_private_addresses: bool,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if cache_ttl_seconds <= 0:
            raise ValueError("cache_ttl_seconds must be positive")
        if refetch_min_interval_seconds < 0:
            raise ValueError("refetch_min_interval_seconds must not be negative")
        if max_cache_entries <= 0:
            raise ValueError("max_cache_entries must be positive")
        self._timeout_seconds = timeout_seconds
        self._max_bytes = max_bytes
        self._cache_ttl_seconds = cache_ttl_seconds
        self._refetch_min_interval_seconds = refetch_min_interval_seconds
        self._max_cache_entries = max_cache_entries
        self._allow_private_addresses = allow_private_addresses
        self._clock = clock
        self._cache: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # no proxy or certificate settings from the environment
            cookies=CookieJar(policy=_NoCookies()),
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"Accept": ACCEPT, "Accept-Encoding": "identity"},
        )

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The client the fetches are sent with (instrumented by ``app.tracing`` when tracing is on)."""
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> JwksFetcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def get(self, uri: str, *, refresh: bool = False) -> dict[str, Any]:
        """The JWK Set at ``uri``: a dict whose ``"keys"`` is a list of dicts (a copy; callers may modify
        it). ``refresh=True`` is for a caller that did not find its ``kid``: it refetches unless the
        document was fetched within ``refetch_min_interval_seconds``, in which case the cached one is
        already as fresh as we allow. Raises ``JwksFetchError``."""
        document = self._cached(uri, refresh=refresh)
        if document is None:
            flight = self._flights.setdefault(uri, _Flight())
            flight.users += 1
            try:
                async with flight.lock:
                    # Whoever held the lock may just have fetched (or failed to fetch) this URI.
                    document = self._cached(uri, refresh=refresh)
                    if document is None:
                        document = await self._fetch_and_store(uri)
            finally:
                flight.users -= 1
                if flight.users == 0:
                    del self._flights[uri]
        return copy.deepcopy(document)

    def cached(self, uri: str, *, refresh: bool = False) -> dict[str, Any] | None:
        """What ``get`` would answer without any network I/O or wait (a copy), or None when ``get`` would
        fetch or wait for another caller's fetch; raises a recent failure again, as ``get`` would. A
        caller holding something scarce (a pooled database connection) gives it back before calling
        ``get`` when this is None."""
        document = self._cached(uri, refresh=refresh)
        return None if document is None else copy.deepcopy(document)

    def _cached(self, uri: str, *, refresh: bool) -> dict[str, Any] | None:
        """The document to serve without fetching, or None to fetch; raises a recent failure again."""
        entry = self._cache.get(uri)
        if entry is None:
            return None
        now = self._clock()
        current = entry.document is not None and now - entry.fetched_at < self._cache_ttl_seconds
        if current and not refresh:
            return entry.document
        if now - entry.attempted_at >= self._refetch_min_interval_seconds:
            return None
        if current:
            return entry.document  # a refresh asked for too soon after the last fetch
        if entry.error is not None:
            raise JwksFetchError(entry.error)
        return None  # expired, and the last fetch succeeded: fetch again

    async def _fetch_and_store(self, uri: str) -> dict[str, Any]:
        started = self._clock()
        try:
            document = await self._fetch(uri)
        except JwksFetchError as exc:
            logger.warning("jwks_uri fetch from host %s failed: %s", _host_for_log(uri), exc.description)
            previous = self._cache.get(uri)
            failed = _CacheEntry(document=None, fetched_at=started, attempted_at=started, error=exc.description)
            if previous is not None:  # keep a document that is still within its lifetime
                failed.document, failed.fetched_at = previous.document, previous.fetched_at
            self._store(uri, failed)
            raise
        self._store(uri, _CacheEntry(document=document, fetched_at=started, attempted_at=started, error=None))
        return document

    def _store(self, uri: str, entry: _CacheEntry) -> None:
        self._cache[uri] = entry
        self._cache.move_to_end(uri)
        while len(self._cache) > self._max_cache_entries:
            self._cache.popitem(last=False)

    async def _fetch(self, uri: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout_seconds):
                body = await self._download(self._parse_uri(uri))
        except TimeoutError:
            raise JwksFetchError(f"no complete response within {self._timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            # The class name says enough (ConnectError, ReadTimeout, RemoteProtocolError, ...); the
            # message may quote the URL.
            raise JwksFetchError(f"request failed ({type(exc).__name__})") from None
        return _parse_document(body)

    def _parse_uri(self, uri: str) -> httpx.URL:
        try:
            url = httpx.URL(uri)
        except httpx.InvalidURL:
            raise JwksFetchError("jwks_uri is not a valid URL") from None
        allowed_schemes = ("https", "http") if self._allow_private_addresses else ("https",)
        if url.scheme not in allowed_schemes:
            raise JwksFetchError(f"jwks_uri scheme must be {' or '.join(allowed_schemes)}")
        if not url.host:
            raise JwksFetchError("jwks_uri has no host")
        if url.userinfo:
            raise JwksFetchError("jwks_uri must not contain credentials")
        return url

    async def _download(self, url: httpx.URL) -> bytes:
        if self._allow_private_addresses:
            return await self._request(url, url)
        addresses = await self._checked_addresses(url)
        for address in addresses[:-1]:
            try:
                return await self._request(url, url.copy_with(host=address))
            except httpx.ConnectError:
                continue
        return await self._request(url, url.copy_with(host=addresses[-1]))

    async def _checked_addresses(self, url: httpx.URL) -> list[str]:
        """Every address ``url``'s host stands for, refusing them all if any is not globally routable:
        a name that resolves to both a public and an internal address is an attack, not a fallback."""
        host = url.raw_host.decode("ascii")  # IDNA-encoded: what the resolver and SNI take
        literal = _parse_address(host)
        if literal is not None:
            if _is_forbidden(literal):
                raise JwksFetchError("jwks_uri host is a non-public address")
            return [str(literal)]
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            raise JwksFetchError("jwks_uri host is a local name")
        port = url.port or (HTTPS_PORT if url.scheme == "https" else HTTP_PORT)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise JwksFetchError("jwks_uri host name does not resolve") from None
        addresses: list[str] = []
        for *_, sockaddr in infos:
            address = _parse_address(str(sockaddr[0]))
            if address is None or _is_forbidden(address):
                raise JwksFetchError("jwks_uri host resolves to a non-public address")
            if str(address) not in addresses:
                addresses.append(str(address))
        if not addresses:
            raise JwksFetchError("jwks_uri host name does not resolve")
        return addresses

    async def _request(self, url: httpx.URL, target: httpx.URL) -> bytes:
        """GET ``target`` (``url``, or ``url`` with its host replaced by a checked address) as if it were
        ``url``; return the body of a 200 response, at most ``max_bytes`` of it."""
        headers: dict[str, str] = {}
        extensions: dict[str, Any] = {}
        if target.host != url.host:
            headers["Host"] = url.netloc.decode("ascii")
            extensions["sni_hostname"] = url.raw_host.decode("ascii")
        async with self._client.stream("GET", target, headers=headers, extensions=extensions) as response:
            if response.is_redirect:
                raise JwksFetchError(f"redirect (HTTP {response.status_code}) not followed")
            # Only 200: 204 has no document, 206 only part of one, 203 a transformed one.
            if response.status_code != httpx.codes.OK:
                raise JwksFetchError(f"unexpected HTTP status {response.status_code}")
            if response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
                # We asked for identity; decompressing would make max_bytes a limit on the wire only.
                raise JwksFetchError("compressed response refused")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                raise JwksFetchError(f"response larger than {self._max_bytes} bytes")
            body = bytearray()
            # aiter_bytes rather than aiter_raw: the same bytes for an identity body, and it also serves
            # a response a (test) transport has already read.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise JwksFetchError(f"response larger than {self._max_bytes} bytes")
            return bytes(body)


def _parse_document(body: bytes) -> dict[str, Any]:
    try:
        document = json_input.loads(body)
    except json_input.JsonInputError as error:
        raise JwksFetchError(f"response is not JSON we accept: {error}") from None
    if not isinstance(document, dict):
        raise JwksFetchError("response is not a JSON object")
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JwksFetchError('response has no "keys" array')
    if not all(isinstance(key, dict) for key in keys):
        raise JwksFetchError('"keys" holds a value that is not a JSON object')
    return document


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_forbidden(address: IPAddress) -> bool:
    """True unless ``address`` is a globally routable unicast address. ``is_global`` alone would do for
    most ranges (it also excludes 100.64/10 and the documentation ranges), but the named properties
    cover global multicast, and the IPv4 forms embedded in IPv6 addresses are checked as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and _is_forbidden(embedded):
            return True
        if address.is_site_local:
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _host_for_log(uri: str) -> str:
    """The host only: the path and query of a ``jwks_uri`` may carry an access token."""
    try:
        return httpx.URL(uri).host or "(none)"
    except httpx.InvalidURL:
        return "(invalid URL)"
