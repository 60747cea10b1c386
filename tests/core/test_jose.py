"""The joserfc layer: which JWKs count as a client's public keys (RFC 7591 §2, RFC 7517)."""

from __future__ import annotations

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
