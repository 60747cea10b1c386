"""The address a request comes from, for the per-address rate limits (``app.api.rate_limit``).

The TCP peer is the client unless it is one of the operator's proxies (``PAR_TRUSTED_PROXIES``). A
trusted proxy says whom it forwards for in ``X-Forwarded-For``, appending its own peer to whatever the
request already carried; everything left of what a trusted proxy appended may have been written by
the client itself. So the header is read from the right, skipping trusted proxies, and the first
other entry is the client (RFC 7239 §5.2 describes the same chain for ``Forwarded``). Only
``X-Forwarded-For`` is read: it is what uvicorn, nginx, HAProxy, Envoy and the cloud load balancers
set, and honouring a second header that the proxy does not manage would let a client write its own.

A header that is too long, or whose entry is not an address, proves nothing: the peer is used then.

At the backend API the peer is the authorization server relaying its client's request, never the
client: there the address is the forwarded one or none (``relayed``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# An honest chain has a hop or two per proxy; more is a client padding the header.
MAX_FORWARDED_HOPS = 16
MAX_FORWARDED_BYTES = 1024
MAX_ENTRY_LENGTH = 64  # "[v6 address with scope]:port" fits
# One subscriber, one /64 (RFC 6177 recommends at least a /56 per site): an IPv6 client that owns
# 2^64 addresses gets one budget, not 2^64.
IPV6_CLIENT_PREFIX = 64
# Peer hosts and X-Forwarded-For entries whose reading is remembered: a request from a known address then
# costs a lookup, not a parse. Bounded (a flood of distinct addresses empties it), as is each entry.
REMEMBERED_ENTRIES = 4096
REMEMBERED_ENTRY_LENGTH = 2 * MAX_ENTRY_LENGTH


class Headers(Protocol):
    def getlist(self, key: str, /) -> list[str]: ...


class PeerRequest(Protocol):
    """What is read of a request: its TCP peer, ``(host, port)`` or ``None``, and its headers."""

    @property
    def client(self) -> tuple[str, int] | None: ...

    @property
    def headers(self) -> Headers: ...


def parse_networks(setting: str) -> tuple[IPNetwork, ...]:
    """``PAR_TRUSTED_PROXIES``: addresses or CIDRs, separated by commas or spaces."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in setting.replace(",", " ").split())


def address_key(address: IPAddress) -> str:
    """What the per-address budgets count by: an IPv4 address, an IPv6 /64 (an IPv4-mapped IPv6 address
    is its IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address.packed, IPV6_CLIENT_PREFIX), strict=False)  # drops any %scope
        return str(network)
    return str(address)


def parse_address(text: str) -> IPAddress | None:
    """An ``X-Forwarded-For`` entry (or a peer host): an address, optionally with a port (``1.2.3.4:5``,
    ``[2001:db8::1]:5``); ``None`` for anything else (``unknown``, obfuscated names, garbage)."""
    text = text.strip(" \t")  # RFC 9110 §5.6.1: optional whitespace around list elements
    if not text or len(text) > MAX_ENTRY_LENGTH or not text.isascii() or not text.isprintable():
        return None
    if text.startswith("["):
        text, bracket, _ = text[1:].partition("]")
        if not bracket:
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        address = ipaddress.IPv6Address(address.packed)
    return address


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()
    # An entry's address key (None: not an address) and whether it is a trusted proxy.
    _read: dict[str, tuple[str | None, bool]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def parse(cls, setting: str) -> TrustedProxies:
        return cls(parse_networks(setting))

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def client_address(self, request: PeerRequest, *, relayed: bool = False) -> str | None:
        """The key of the address ``request`` comes from, or ``None`` when it is unknown.

        ``relayed``: the peer is an authorization server calling the backend API on its client's behalf;
        its own address never stands for the client."""
        peer = request.client
        if peer is None:
            return None
        peer_host = peer[0]
        if not peer_host:
            return None if relayed else peer_host
        key, trusted = self._entry(peer_host)
        fallback = None if relayed else (peer_host if key is None else key)
        if not trusted:
            return fallback
        forwarded = self._forwarded_for(request)
        return forwarded if forwarded is not None else fallback

    def _forwarded_for(self, request: PeerRequest) -> str | None:
        """The key of the right-most ``X-Forwarded-For`` entry that is not a trusted proxy; ``None`` when
        there is none, or when the header is malformed or padded."""
        values = request.headers.getlist("x-forwarded-for")
        if not values or sum(len(value) for value in values) > MAX_FORWARDED_BYTES:
            return None
        entries = ",".join(values).split(",")  # RFC 9110 §5.3: repeated fields are one list
        for entry in reversed(entries[-MAX_FORWARDED_HOPS:]):
            key, trusted = self._entry(entry)
            if key is None:
                return None
            if not trusted:
                return key
        return None

    def _entry(self, text: str) -> tuple[str | None, bool]:
        """A peer host or an ``X-Forwarded-For`` entry: its address key (``None`` when it is not an
        address) and whether it is a trusted proxy."""
        read = self._read.get(text)
        if read is None:
            address = parse_address(text)
            read = (None, False) if address is None else (address_key(address), self.trusts(address))
            if len(text) <= REMEMBERED_ENTRY_LENGTH:
                if len(self._read) >= REMEMBERED_ENTRIES:
                    self._read.clear()
                self._read[text] = read
        return read
