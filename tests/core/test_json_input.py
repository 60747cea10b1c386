"""The reader of JSON from outside (app/core/json_input.py)."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import jose, json_input
from app.core.errors import ApiBadRequest
from app.core.json_input import JsonInputError
from app.core.registration import validate_jwks
from tests.hostile_json import hostile_json, object_with

FUZZ = settings(max_examples=400, deadline=None, database=None)


@pytest.fixture
def depth_limit() -> Iterator[None]:
    """Tests that set the limit leave the default behind."""
    yield
    json_input.set_max_depth(json_input.DEFAULT_MAX_DEPTH)


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "[Infinity]",
        '{"a": -Infinity}',
        "1e400",
        "-1e400",
        "[1" + "0" * 400 + "]",
        '"\\u0000"',
        '{"a\\u0000": 1}',
        '"\\ud800"',
        '"\\uDFFF"',
        '{"\\udc00": 1}',
        '"\\udc00\\ud800"',
        "[" * 33 + "]" * 33,
        "[" * 5000 + "]" * 5000,
        '{"a":' * 40 + "1" + "}" * 40,
        '"unterminated',
        "\ufeff{}",
        b"\xff\xfe",
        b"\xed\xa0\x80",  # a surrogate in UTF-8 (not valid UTF-8)
        "\ud800",
        '"\ud800"',  # a raw surrogate in a str
    ],
)
def test_refused(text: str | bytes) -> None:
    with pytest.raises(JsonInputError):
        json_input.loads(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": [1, 2.5, -0.0, 1.5e308, "x"]}', {"a": [1, 2.5, -0.0, 1.5e308, "x"]}),
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one character
        ('"\\\\u0000"', "\\u0000"),  # a backslash, then "u0000": no NUL
        ('"\\\\ud800"', "\\ud800"),
        ('"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["', "[" * 42),  # brackets in strings are not nesting
        ("[" * 32 + "]" * 32, json.loads("[" * 32 + "]" * 32)),
        ("1" + "0" * 300, 10**300),
        (b'{"a": "\xc3\xa9"}', {"a": "é"}),
        ("1e-400", 0.0),
    ],
)
def test_accepted(text: str | bytes, value: Any) -> None:
    assert json_input.loads(text) == value


# Texts over the bracket bound whose strings never close: the string scan before the depth count must
# read them once. With a scan that restarted at every quote of an unclosed run of ``\"``, the first took
# minutes of the event loop for a 256 KiB /api body (PAR_MAX_API_BODY_BYTES), freezing every tenant.
UNCLOSED_STRINGS = {
    "escaped quotes": "[" * 33 + '"' + '\\"' * 131_000,
    "escaped backslashes": "[" * 33 + '"' + "\\\\" * 131_000,
    "lone backslash at the end": "[" * 33 + '"' + "a" * 262_000 + "\\",
    "quotes only": "[" * 33 + '"' * 262_000,
}


@pytest.mark.parametrize("text", UNCLOSED_STRINGS.values(), ids=UNCLOSED_STRINGS)
def test_unclosed_strings_are_refused_in_one_pass(text: str) -> None:
    """Run in a child process with a generous bound, so that a scan gone quadratic fails the test (its
    minutes would otherwise hang the suite) rather than a speed being asserted."""
    program = (
        "import sys\n"
        "from app.core import json_input\n"
        "try:\n"
        "    json_input.loads(sys.stdin.read())\n"
        "except json_input.JsonInputError:\n"
        "    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], input=text, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "refused\n"


def test_the_depth_limit_is_the_setting(depth_limit: None) -> None:
    del depth_limit
    json_input.set_max_depth(3)
    assert json_input.loads("[[[1]]]") == [[[1]]]
    with pytest.raises(JsonInputError, match="deeper than 3"):
        json_input.loads("[[[[1]]]]")
    with pytest.raises(JsonInputError, match="deeper than 3"):
        json_input.check([[[[1]]]])


@pytest.mark.parametrize(
    "value",
    [float("nan"), [float("inf")], {"a": -math.inf}, 10**400, "a\x00", {"\ud800": 1}, ["\udfff"], [[[[[]]]]] * 1],
)
def test_check_refuses_parsed_values(value: Any, depth_limit: None) -> None:
    del depth_limit
    json_input.set_max_depth(4)
    with pytest.raises(JsonInputError):
        json_input.check(value)


@pytest.mark.parametrize(
    ("value", "number"),
    [(0, 0.0), (1.5, 1.5), (10**300, 1e300), (float("nan"), None), (math.inf, None), (10**400, None), (True, None)],
)
def test_numeric_date(value: Any, number: float | None) -> None:
    """RFC 7519 §2 NumericDate, one check for client assertions, request objects and DPoP proofs."""
    assert jose.numeric_date(value) == number
    assert jose.numeric_date("1") is None


def assert_safe(value: Any) -> None:
    """What is accepted can be stored and sent: strict JSON, UTF-8, within the depth limit."""
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert "\x00" not in json.dumps(value, ensure_ascii=False).replace("\\u0000", "")
    json_input.check(value)


@FUZZ
@given(hostile_json)
def test_any_json_text_is_parsed_safely_or_refused(text: str) -> None:
    try:
        value = json_input.loads(text)
    except JsonInputError:
        return
    assert_safe(value)
    assert value == json.loads(text)  # what is accepted means what json.loads would make of it


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(st.characters(exclude_categories=()), max_size=200)))
def test_any_bytes_or_text_are_parsed_safely_or_refused(text: str | bytes) -> None:
    try:
        value = json_input.loads(text)
    except JsonInputError:
        return
    assert_safe(value)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).rstrip(b"=").decode()


@FUZZ
@given(object_with("alg"), object_with("iss"))
def test_any_jwt_header_and_claims_are_read_safely_or_refused(header: str, claims: str) -> None:
    try:
        read_header, read_claims = jose.read_compact(f"{b64(header)}.{b64(claims)}.c2ln")
    except jose.JoseFailure:
        return
    assert_safe(read_header)
    assert_safe(read_claims)


@FUZZ
@given(object_with("keys"))
def test_any_jwks_is_registered_safely_or_refused(jwks: str) -> None:
    try:
        validate_jwks(jwks)
    except ApiBadRequest as error:
        assert error.status_code == 400
        return
    assert_safe(json_input.loads(jwks))
