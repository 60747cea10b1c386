"""PKCE at push time (PKCE-01..05)."""

from __future__ import annotations

import pytest

from app.core.errors import InvalidRequest
from app.core.pkce import CodeChallenge, PkcePolicy, validate_code_challenge

S256 = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
OPTIONAL = PkcePolicy(required=False, s256_required=False)
REQUIRED = PkcePolicy(required=True, s256_required=False)
S256_ONLY = PkcePolicy(required=False, s256_required=True)


def test_s256_challenge_is_kept() -> None:
    assert validate_code_challenge(S256, "S256", REQUIRED) == CodeChallenge(S256, "S256")


def test_absent_challenge_is_fine_when_optional() -> None:
    assert validate_code_challenge(None, None, OPTIONAL) is None


@pytest.mark.parametrize("policy", [REQUIRED, S256_ONLY])
def test_missing_challenge_is_invalid_request_when_required(policy: PkcePolicy) -> None:
    """PKCE-03: missing code_challenge under a PKCE requirement is invalid_request."""
    with pytest.raises(InvalidRequest, match="code_challenge is required"):
        validate_code_challenge(None, None, policy)


def test_method_defaults_to_plain_and_plain_is_refused_when_s256_required() -> None:
    """PKCE-04: an absent method means plain, which a S256 policy refuses (PKCE-02)."""
    assert validate_code_challenge("a" * 43, None, OPTIONAL) == CodeChallenge("a" * 43, "plain")
    with pytest.raises(InvalidRequest, match="S256 is required"):
        validate_code_challenge("a" * 43, None, S256_ONLY)
    with pytest.raises(InvalidRequest, match="S256 is required"):
        validate_code_challenge("a" * 43, "plain", S256_ONLY)


@pytest.mark.parametrize(
    ("challenge", "method"),
    [
        ("short", "S256"),
        (S256 + "A", "S256"),
        ("a" * 42, "plain"),
        ("a" * 129, "plain"),
        ("a" * 42 + "!", "plain"),
        (S256[:-1] + "=", "S256"),
    ],
)
def test_malformed_challenge_is_refused(challenge: str, method: str) -> None:
    """PKCE-05: 43-128 unreserved characters; S256 is exactly 43 base64url characters."""
    with pytest.raises(InvalidRequest, match="malformed"):
        validate_code_challenge(challenge, method, OPTIONAL)


def test_unknown_method_and_orphan_method_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="S256 or plain"):
        validate_code_challenge(S256, "S512", OPTIONAL)
    with pytest.raises(InvalidRequest, match="without code_challenge"):
        validate_code_challenge(None, "S256", OPTIONAL)
