"""The joserfc layer: which JWKs count as a client's public keys (RFC 7591 §2, RFC 7517)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from app.core import jose

EC_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"})


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(EC_KEY.as_dict(private=True), id="private"),
        pytest.param(OctKey.generate_key(256).as_dict(), id="oct"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, id="off-curve"),
        pytest.param(["not", "a", "key"], id="not-an-object"),
    ],
)
def test_import_public_jwk_refuses_what_is_not_a_public_key(entry: Any) -> None:
    with pytest.raises(jose.JoseFailure):
        jose.import_public_jwk(entry)


def test_import_public_jwk_imports_a_public_key() -> None:
    key = jose.import_public_jwk(EC_KEY.as_dict(private=False))
    assert not key.is_private
    assert key.thumbprint() == EC_KEY.thumbprint()


def test_a_private_key_in_a_fetched_set_is_never_a_verification_key() -> None:
    """A JWKS fetched from ``jwks_uri`` is not checked at registration: entries holding private key
    material are left out of the verification keys, and the others still work."""
    other = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-2"})
    token = jwt.encode({"alg": "ES256", "kid": "ec-1"}, {"iss": "c"}, EC_KEY, algorithms=["ES256"])
    only_private = jose.public_key_set({"keys": [EC_KEY.as_dict(private=True)]})
    assert only_private.keys == []
    with pytest.raises(jose.JoseFailure):
        jose.verify(token, only_private, "ES256")
    mixed = jose.public_key_set({"keys": [EC_KEY.as_dict(private=False), other.as_dict(private=True)]})
    assert [key.kid for key in mixed.keys] == ["ec-1"]
    assert jose.verify(token, mixed, "ES256").claims == {"iss": "c"}


@pytest.mark.parametrize(
    "entry", [EC_KEY.as_dict(private=True), {**EC_KEY.as_dict(private=False), "d": "AA"}], ids=["imported", "member"]
)
def test_private_key_material_is_told_apart(entry: dict[str, Any]) -> None:
    """Callers with their own message for a private key (DPoP) can tell it from other failures."""
    with pytest.raises(jose.PrivateKeyMaterial, match="holds private key material"):
        jose.import_public_jwk(entry)


@pytest.mark.parametrize(
    ("typ", "media_type"),
    [("dpop+jwt", "dpop+jwt"), ("application/DPoP+JWT", "dpop+jwt"), ("JWT", "jwt"), ("text/jwt", "text/jwt")],
)
def test_type_header_media_type(typ: str, media_type: str) -> None:
    """RFC 7515 §4.1.9: the "application/" prefix is optional; media types are case insensitive."""
    assert jose.type_header_media_type(typ) == media_type


def test_jti_value() -> None:
    assert jose.jti_value("j" * jose.MAX_JTI_LENGTH) == "j" * jose.MAX_JTI_LENGTH
    for refused in ("", "j" * (jose.MAX_JTI_LENGTH + 1), 7, None, ["j"]):
        assert jose.jti_value(refused) is None


NOW = datetime(2026, 1, 1, tzinfo=UTC)
SKEW = timedelta(seconds=10)


def times(claims: dict[str, Any], **options: Any) -> jose.ValidityTimes:
    return jose.check_validity_times(claims, subject="the token", now=NOW, clock_skew=SKEW, **options)


def test_validity_times_are_read() -> None:
    now = NOW.timestamp()
    assert times({"exp": now + 60, "iat": now, "nbf": now - 1}) == jose.ValidityTimes(now + 60, now - 1, now)
    assert times({"exp": now - 9}) == jose.ValidityTimes(now - 9, None, None)  # within the skew


@pytest.mark.parametrize(
    ("claims", "options", "message", "malformed"),
    [
        ({}, {}, "the token needs an exp claim", True),
        ({"exp": 1e12}, {"require_nbf": True}, "the token needs an nbf claim", True),
        ({"exp": "soon"}, {}, "the token's exp claim must be a number", True),
        ({"exp": 1e12, "iat": True, "nbf": "x"}, {}, "the token's nbf claim must be a number", True),
        (
            {"exp": 1e12, "iat": True, "nbf": "x"},
            {"order": ("iat", "nbf")},
            "the token's iat claim must be a number",
            True,
        ),
        ({"exp": NOW.timestamp() - 10}, {}, "the token has expired", False),
        ({"exp": 1e12, "iat": 1e11, "nbf": 1e11}, {}, "the token's nbf is in the future", False),
        ({"exp": 1e12, "iat": 1e11, "nbf": 1e11}, {"order": ("iat", "nbf")}, "the token's iat is in the future", False),
    ],
)
def test_validity_times_failures(
    claims: dict[str, Any], options: dict[str, Any], message: str, malformed: bool
) -> None:
    """RFC 7519 §4.1.4, §4.1.5: exp passed or nbf (iat) ahead beyond the skew; ``order`` decides which is named."""
    with pytest.raises(jose.TimeClaimFailure) as caught:
        times(claims, **options)
    assert str(caught.value) == message
    assert caught.value.malformed is malformed
