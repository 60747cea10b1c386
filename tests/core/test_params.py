"""Strict form parsing (GEN-01, GEN-02, PAR-01, PAR-23, RES-04)."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import InvalidRequest, RequestTooLarge
from app.core.params import ParameterBounds, RequestParameters, parse_parameters

LIMITS = ParameterBounds(max_parameters=10, max_parameter_bytes=100, max_total_bytes=500)


def test_decodes_form_encoding() -> None:
    params = parse_parameters("a=1&redirect_uri=https%3A%2F%2Fc.example%2Fcb&scope=openid+profile", LIMITS)
    assert params.get("redirect_uri") == "https://c.example/cb"
    assert params.get("scope") == "openid profile"


def test_empty_value_is_treated_as_omitted() -> None:
    """GEN-02: a parameter sent without a value is treated as omitted."""
    params = parse_parameters("state=&scope=openid", LIMITS)
    assert params.get("state") is None
    assert "state" not in params


@pytest.mark.parametrize("body", ["scope=a&scope=b", "scope=&scope=a", "client_id=1&x=2&client_id=1"])
def test_repeated_parameter_is_rejected(body: str) -> None:
    """GEN-01: "Request and response parameters MUST NOT be included more than once"."""
    with pytest.raises(InvalidRequest, match="more than once"):
        parse_parameters(body, LIMITS)


def test_resource_may_repeat() -> None:
    """RES-01/RES-04: resource is multi-valued."""
    params = parse_parameters("resource=https%3A%2F%2Fa.example&resource=https%3A%2F%2Fb.example", LIMITS)
    assert params.get_all("resource") == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize("body", ["a=%zz", "a=%4", "a%=1"])
def test_malformed_percent_encoding_is_rejected(body: str) -> None:
    with pytest.raises(InvalidRequest, match="percent-encoding"):
        parse_parameters(body, LIMITS)


@pytest.mark.parametrize("body", [b"state=\xff\xfe", "state=%C3%28"])
def test_invalid_utf8_is_rejected(body: str | bytes) -> None:
    """PAR-01: the body is UTF-8."""
    with pytest.raises(InvalidRequest, match="UTF-8"):
        parse_parameters(body, LIMITS)


def test_control_characters_are_rejected_but_json_whitespace_is_kept() -> None:
    with pytest.raises(InvalidRequest, match="control"):
        parse_parameters("state=a%00b", LIMITS)
    assert parse_parameters("authorization_details=%5B%0A%5D", LIMITS).get("authorization_details") == "[\n]"


def test_parameter_without_equals_sign_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="name=value"):
        parse_parameters("response_type", LIMITS)


def test_empty_name_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="empty name"):
        parse_parameters("=x", LIMITS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("&".join(f"p{i}=1" for i in range(11)), "more than 10 parameters"),
        ("state=" + "a" * 100, "exceeds 100 bytes"),
        ("&".join(f"p{i}=" + "a" * 90 for i in range(6)), "exceed 500 bytes"),
    ],
)
def test_limits_answer_payload_too_large(body: str, message: str) -> None:
    """PAR-23: an oversized request gets 413."""
    with pytest.raises(RequestTooLarge, match=message) as caught:
        parse_parameters(body, LIMITS)
    assert caught.value.status_code == 413


def test_without_drops_names_and_encode_round_trips() -> None:
    params = parse_parameters("client_id=1&client_secret=s&scope=a+b", LIMITS)
    stored = params.without(frozenset({"client_secret"}))
    assert stored.encode() == "client_id=1&scope=a+b"
    assert parse_parameters(stored.encode(), LIMITS) == stored


@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=12)), max_size=8, unique_by=lambda p: p[0]))
def test_encode_then_parse_is_identity(pairs: list[tuple[str, str]]) -> None:
    """Any parameters without control characters survive encoding and strict parsing unchanged."""
    from app.core.params import RequestParameters

    clean = [(k, v) for k, v in pairs if k.isprintable() and v.isprintable()]
    encoded = RequestParameters(tuple(clean)).encode()
    limits = ParameterBounds(max_parameters=100, max_parameter_bytes=10_000, max_total_bytes=100_000)
    assert parse_parameters(encoded, limits).pairs == tuple(clean)


@settings(max_examples=500)
@given(st.lists(st.tuples(st.text(), st.text()), max_size=8))
def test_encode_is_urlencode(pairs: list[tuple[str, str]]) -> None:
    """RequestParameters.encode skips escaping where there is nothing to escape; the result must be
    exactly urlencode's, which the stored parameters were written with before."""
    assert RequestParameters(tuple(pairs)).encode() == urlencode(pairs)


def _decoded_the_general_way(component: str) -> str | None:
    """What ``_decode`` answered before its shortcut for components with nothing to decode."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", component):
        return None
    try:
        decoded = unquote_plus(component, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    return None if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", decoded) else decoded


@settings(max_examples=1000)
@given(st.text(alphabet=st.sampled_from("ab%+=2F0\x01\x7f\t é"), max_size=12) | st.text(max_size=12))
def test_decoding_takes_no_shortcut_that_changes_the_answer(component: str) -> None:
    """Names and values without '%' or '+' are taken as they are: the same value or refusal as decoding."""
    value = component.replace("&", "").replace("=", "")
    body = f"name={value}"
    expected = _decoded_the_general_way(value)
    if expected is None:
        with pytest.raises(InvalidRequest):
            parse_parameters(body, LIMITS)
    else:
        assert parse_parameters(body, LIMITS).pairs == (("name", expected),)


@settings(max_examples=1000)
@given(st.text(alphabet=st.sampled_from("ab=&+%2F0ACe7~-_. /:é\x01"), max_size=24) | st.text(max_size=24))
def test_the_body_is_reused_as_the_encoding_only_where_it_is_that(body: str) -> None:
    """``encode`` answers with the parsed body itself when that is in urlencode's form; either way, it is
    what urlencode makes of the pairs."""
    limits = ParameterBounds(max_parameters=100, max_parameter_bytes=10_000, max_total_bytes=100_000)
    try:
        params = parse_parameters(body, limits)
    except InvalidRequest:
        return
    assert params.encode() == urlencode(params.pairs)


def test_a_canonical_body_is_its_own_encoding() -> None:
    body = "response_type=code&redirect_uri=https%3A%2F%2Fc.example%2Fcb&scope=openid+profile"
    assert parse_parameters(body, LIMITS).encode() is not body  # a str from the decoded bytes
    assert parse_parameters(body.encode(), LIMITS).encode() == body
    assert parse_parameters("a=%7e&b=%2f", LIMITS).encode() == "a=~&b=%2F"  # escapes urlencode would not write


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "resource"]), st.sampled_from(["", "x", "y"])), max_size=6))
def test_lookups_answer_as_a_scan_of_the_pairs(pairs: list[tuple[str, str]]) -> None:
    """``get`` is the first value (None when empty); ``in`` is whether any value is non-empty."""
    params = RequestParameters(tuple(pairs))
    for name in ("a", "b", "resource", "c"):
        assert params.get(name) == (next((value for key, value in pairs if key == name), None) or None)
        assert (name in params) == any(key == name and value for key, value in pairs)
    assert params.without(frozenset({"c"})) == params
    assert params.without(frozenset({"a"})).pairs == tuple(pair for pair in pairs if pair[0] != "a")
