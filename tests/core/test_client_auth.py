"""Client authentication rules (PAR-07, PAR-09, GEN-03, GEN-04, GEN-05)."""

from __future__ import annotations

import asyncio
import base64

import pytest

from app.core.client_auth import (
    BasicCredentials,
    Presented,
    SlowHashChecks,
    claimed_client_id,
    parse_basic_authorization,
    presented_credentials,
)
from app.core.errors import InvalidClient, InvalidRequest, TemporarilyUnavailable
from app.core.params import ParameterBounds, parse_parameters

LIMITS = ParameterBounds(max_parameters=20, max_parameter_bytes=1000, max_total_bytes=5000)


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


def test_basic_credentials_are_form_decoded() -> None:
    """GEN-04 / RFC 6749 §2.3.1: id and secret are form-encoded before base64 (oauth4webapi encodes '-')."""
    assert parse_basic_authorization(basic("client%2D1:s%3Ac+r%C3%A9t")) == BasicCredentials("client-1", "s:c rét")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!",
        basic("no-colon"),
        basic(":secret-without-id"),
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
    ],
)
def test_malformed_basic_header_is_invalid_client_with_challenge(header: str) -> None:
    """GEN-05: failures of the Authorization header answer 401 with WWW-Authenticate."""
    with pytest.raises(InvalidClient) as caught:
        parse_basic_authorization(header)
    assert caught.value.used_authorization_header and caught.value.status_code == 401


def test_client_id_must_match_basic_credentials() -> None:
    """PAR-09: client_id, when present, names the authenticated client."""
    params = parse_parameters("client_id=other", LIMITS)
    with pytest.raises(InvalidRequest, match="does not match"):
        claimed_client_id(params, BasicCredentials("me", "secret"))
    assert claimed_client_id(parse_parameters("", LIMITS), BasicCredentials("me", "s")) == "me"


def test_client_id_is_required_without_basic() -> None:
    with pytest.raises(InvalidRequest, match="client_id parameter is required"):
        claimed_client_id(parse_parameters("scope=openid", LIMITS), None)


@pytest.mark.parametrize(
    ("body", "with_basic", "expected"),
    [
        ("client_id=1", False, Presented.NOTHING),
        ("client_id=1", True, Presented.BASIC),
        ("client_id=1&client_secret=s", False, Presented.POST),
        ("client_assertion=x&client_assertion_type=y", False, Presented.ASSERTION),
    ],
)
def test_presented_method(body: str, with_basic: bool, expected: Presented) -> None:
    credentials = BasicCredentials("1", "s") if with_basic else None
    assert presented_credentials(parse_parameters(body, LIMITS), credentials) is expected


@pytest.mark.parametrize(
    ("body", "with_basic"),
    [("client_secret=s", True), ("client_secret=s&client_assertion=a", False), ("client_assertion=a", True)],
)
def test_more_than_one_method_is_invalid_request(body: str, with_basic: bool) -> None:
    """GEN-03: "The client MUST NOT use more than one authentication method in each request"."""
    with pytest.raises(InvalidRequest, match="more than one client authentication method"):
        presented_credentials(parse_parameters(body, LIMITS), BasicCredentials("1", "s") if with_basic else None)


async def test_slow_hash_checks_run_so_many_at_once_and_refuse_beyond_the_waiting() -> None:
    checks = SlowHashChecks(in_flight=1, waiting=1)
    release = asyncio.Event()
    running: list[int] = []

    async def check(number: int) -> None:
        async with checks.turn():
            running.append(number)
            await release.wait()

    first, second = asyncio.create_task(check(1)), asyncio.create_task(check(2))
    await asyncio.sleep(0)
    assert running == [1]  # the second waits its turn
    with pytest.raises(TemporarilyUnavailable):
        async with checks.turn():
            pass
    release.set()
    await asyncio.gather(first, second)
    assert running == [1, 2]
    async with checks.turn():  # room again once they are done
        pass
