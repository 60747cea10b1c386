"""``TrustedProxies.client_address``: whose address a request counts against (app/api/client_address.py)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from app.api.client_address import (
    MAX_ENTRY_LENGTH,
    MAX_FORWARDED_HOPS,
    REMEMBERED_ENTRIES,
    TrustedProxies,
    parse_address,
)

PROXIES = TrustedProxies.parse("10.0.0.0/8, 192.0.2.1 2001:db8:ffff::/48")


def request(peer: str | None, *forwarded_for: bytes) -> Request:
    headers = [(b"x-forwarded-for", value) for value in forwarded_for]
    scope = {"type": "http", "headers": headers, "client": (peer, 4000) if peer else None}
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.5", [b"198.51.100.1"], "203.0.113.5"),  # an untrusted peer speaks for itself only
        ("10.1.1.1", [b"198.51.100.1"], "198.51.100.1"),
        ("10.1.1.1", [b"1.2.3.4, 198.51.100.1, 10.2.2.2"], "198.51.100.1"),  # right-most untrusted
        ("10.1.1.1", [b"1.2.3.4", b"198.51.100.1"], "198.51.100.1"),  # repeated headers are one list
        ("10.1.1.1", [b"198.51.100.1:4711"], "198.51.100.1"),
        ("10.1.1.1", [b"[2001:db8:1:2:3::9]:4711"], "2001:db8:1:2::/64"),  # a subscriber's /64
        ("10.1.1.1", [b"2001:db8:1:2::1%eth0" + b"0" * 60], "10.1.1.1"),  # too long
        ("10.1.1.1", [b"fe80::1%eth0"], "fe80::/64"),
        ("10.1.1.1", [b"::ffff:198.51.100.1"], "198.51.100.1"),
        ("10.1.1.1", [], "10.1.1.1"),  # the proxy's own request
        ("10.1.1.1", [b"10.3.3.3"], "10.1.1.1"),  # trusted all the way
        ("10.1.1.1", [b"unknown"], "10.1.1.1"),
        ("10.1.1.1", [b"198.51.100.1\x00"], "10.1.1.1"),
        ("10.1.1.1", [b"198.51.100.1\xc3\xa9"], "10.1.1.1"),
        ("10.1.1.1", ["\uff11.2.3.4".encode()], "10.1.1.1"),  # fullwidth digits are not an address
        ("10.1.1.1", [b"198.51.100.1, bogus"], "10.1.1.1"),
        ("10.1.1.1", [b"198.51.100.1" + b", 10.0.0.1" * MAX_FORWARDED_HOPS], "10.1.1.1"),  # padded
        ("10.1.1.1", [b"1.1.1.1," * 2000 + b"198.51.100.1"], "10.1.1.1"),  # huge
        ("2001:db8:ffff::1", [b"198.51.100.1"], "198.51.100.1"),
        ("2001:db8:1::1", [b"198.51.100.1"], "2001:db8:1::/64"),
        ("testclient", [b"198.51.100.1"], "testclient"),  # not an address (a test transport): as it is
    ],
)
def test_client_address(peer: str, forwarded_for: list[bytes], expected: str) -> None:
    for _ in range(2):  # the second time from what the first remembered
        assert PROXIES.client_address(request(peer, *forwarded_for)) == expected


def test_remembered_entries_are_bounded() -> None:
    proxies = TrustedProxies.parse("10.0.0.0/8")
    for number in range(3 * REMEMBERED_ENTRIES):
        peer = f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"
        assert (
            proxies.client_address(request(peer, f"198.51.100.{number % 256}".encode())) == f"198.51.100.{number % 256}"
        )
    assert proxies.client_address(request("10.0.0.1", b" " * 500 + b"198.51.100.1")) == "198.51.100.1"
    assert 0 < len(proxies._read) <= REMEMBERED_ENTRIES
    assert max(len(entry) for entry in proxies._read) <= 2 * MAX_ENTRY_LENGTH


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("10.1.1.1", [b"198.51.100.1"], "198.51.100.1"),
        ("10.1.1.1", [], None),
        ("10.1.1.1", [b"garbage"], None),
        ("203.0.113.5", [b"198.51.100.1"], None),  # an authorization server not trusted to say
        (None, [], None),
    ],
)
def test_a_relaying_authorization_server_never_stands_for_its_client(
    peer: str | None, forwarded_for: list[bytes], expected: str | None
) -> None:
    assert PROXIES.client_address(request(peer, *forwarded_for), relayed=True) == expected


def test_nothing_is_trusted_by_default() -> None:
    assert TrustedProxies.parse("").client_address(request("127.0.0.1", b"198.51.100.1")) == "127.0.0.1"


@pytest.mark.parametrize("text", ["", " ", "[::1", "1.2.3.4:5:6", "x" * 65, "1.2.3.4\n", "999.1.1.1", "0x7f.0.0.1"])
def test_parse_address_refuses(text: str) -> None:
    assert parse_address(text) is None
