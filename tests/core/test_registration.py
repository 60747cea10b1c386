"""Registration rules: the URIs and key sets a service or client may register (RFC 3986, RFC 6749
§3.1.2, RFC 7591 §2, RFC 8414 §2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from app.core.errors import ApiBadRequest
from app.core.registration import (
    MAX_URI_LENGTH,
    validate_endpoint_url,
    validate_issuer,
    validate_jwks,
    validate_redirect_uri,
)

EC_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"})
RSA_KEY = RSAKey.generate_key(2048, private=True, parameters={"kid": "rsa-1"})
SECRET_MARKER = "s3cr3t-key-material"

# Not RFC 3986 URIs: controls, CR/LF, spaces, non-ASCII, a lone "%", an unparseable authority.
NOT_URIS = [
    pytest.param("https://a.example/c\u0001", id="control"),
    pytest.param("https://a.example/c\r\nSet-Cookie: x=1", id="crlf"),
    pytest.param("https://a.example/c\n", id="trailing-newline"),
    pytest.param("https://a.example/c\x00", id="nul"),
    pytest.param("https://a.example/c d", id="space"),
    pytest.param("https://éx.example/cb", id="non-ascii-host"),
    pytest.param("https://a.example/\u2028", id="line-separator"),
    pytest.param("https://a.example/caf%", id="lone-percent"),
    pytest.param("https://a.example/%zz", id="bad-percent-escape"),
    pytest.param("https://[::1/cb", id="broken-ip-literal"),
    pytest.param("https://a.example:99999/cb", id="port-out-of-range"),
    pytest.param("https://a.example:port/cb", id="port-not-a-number"),
    pytest.param("https://a.example/" + "a" * MAX_URI_LENGTH, id="too-long"),
    pytest.param("1https://a.example/cb", id="bad-scheme"),
]


@pytest.mark.parametrize("uri", NOT_URIS)
def test_redirect_uri_must_be_an_rfc3986_uri(uri: str) -> None:
    with pytest.raises(ApiBadRequest) as raised:
        validate_redirect_uri(uri)
    assert "redirectUris" in raised.value.description
    assert uri not in raised.value.description


@pytest.mark.parametrize("uri", NOT_URIS)
def test_issuer_must_be_an_rfc3986_uri(uri: str) -> None:
    with pytest.raises(ApiBadRequest, match="issuer"):
        validate_issuer(uri)


@pytest.mark.parametrize("uri", NOT_URIS)
def test_endpoint_url_must_be_an_rfc3986_uri(uri: str) -> None:
    with pytest.raises(ApiBadRequest, match="jwksUri"):
        validate_endpoint_url("jwksUri", uri)


def test_issuer_has_no_query_even_an_empty_one() -> None:
    """RFC 8414 §2: the issuer "has no query or fragment components"; a bare "?" is an empty query."""
    with pytest.raises(ApiBadRequest, match="issuer"):
        validate_issuer("https://as.example.com/a?")


@pytest.mark.parametrize(
    "uri",
    [
        "https://client.example.org/cb",
        "https://client.example.org/cb?a=1&b=%C3%A9",
        "http://127.0.0.1:8000/cb",
        "http://[::1]:8080/cb",
        "com.example.app:/oauth2redirect",  # RFC 8252 §7.1 private-use scheme
        "https://xn--x-9ia.example/cb",  # an IDN host in its ASCII (punycode) form
    ],
)
def test_valid_redirect_uris_are_kept(uri: str) -> None:
    assert validate_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    ("issuer", "stored"),
    [
        ("http://127.0.0.1:8000/services/1", "http://127.0.0.1:8000/services/1"),
        ("https://as.example.com/a/", "https://as.example.com/a"),
        ("https://as.example.com:8443", "https://as.example.com:8443"),
    ],
)
def test_valid_issuers_are_kept(issuer: str, stored: str) -> None:
    assert validate_issuer(issuer) == stored


def jwks_of(*entries: Any) -> str:
    return json.dumps({"keys": list(entries)})


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        pytest.param(EC_KEY.as_dict(private=True), "private key material (d)", id="ec-private"),
        pytest.param(RSA_KEY.as_dict(private=True), "private key material (d, dp, dq, p, q, qi)", id="rsa-private"),
        pytest.param({**RSA_KEY.as_dict(private=False), "oth": []}, "private key material (oth)", id="rsa-oth"),
        pytest.param({**EC_KEY.as_dict(private=False), "p": "AA"}, "private key material (p)", id="stray-p"),
        pytest.param(
            OKPKey.generate_key("Ed25519").as_dict(private=True), "private key material (d)", id="okp-private"
        ),
        pytest.param(OctKey.import_key(SECRET_MARKER * 4).as_dict(), "symmetric (oct) key", id="oct"),
        pytest.param({"kty": "oct"}, "symmetric (oct) key", id="oct-without-k"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "not a valid", id="ec-off-curve"),
        pytest.param({"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA"}, "not a valid", id="ec-unknown-curve"),
        pytest.param({"kty": "EC", "crv": "P-256"}, "not a valid", id="ec-without-point"),
        pytest.param({"kty": "RSA", "n": "AA", "e": "AQAB"}, "not a valid", id="rsa-tiny-modulus"),
        pytest.param({"kty": "OKP", "crv": "Ed25519", "x": "AA"}, "not a valid", id="okp-short"),
        pytest.param({"kty": "AKP", "alg": "ML-DSA-44"}, "not a valid", id="unknown-kty"),
        pytest.param({"n": "AA"}, "not a valid", id="no-kty"),
        pytest.param({"kty": 7}, "not a valid", id="kty-not-a-string"),
        pytest.param("a string", "not a JSON object", id="not-an-object"),
    ],
)
def test_jwks_refuses_what_is_not_a_public_key(entry: Any, reason: str) -> None:
    """RFC 7591 §2: jwks "contains the client's public keys". The message names the entry by index and
    kid and never carries key material."""
    good = EC_KEY.as_dict(private=False)
    with pytest.raises(ApiBadRequest) as raised:
        validate_jwks(jwks_of(good, entry))
    message = raised.value.description
    assert message.startswith("jwks key 1")
    assert reason in message
    for name, value in entry.items() if isinstance(entry, dict) else [("", entry)]:
        if name != "kid" and isinstance(value, str) and len(value) > 3:
            assert value not in message
    assert SECRET_MARKER not in message


def test_jwks_refusal_names_the_kid() -> None:
    with pytest.raises(ApiBadRequest, match="jwks key 0 \\(kid 'ec-1'\\) holds private key material"):
        validate_jwks(jwks_of(EC_KEY.as_dict(private=True)))


def test_jwks_refusal_does_not_echo_an_unprintable_kid() -> None:
    entry = {**EC_KEY.as_dict(private=True), "kid": "a\nb"}
    with pytest.raises(ApiBadRequest) as raised:
        validate_jwks(jwks_of(entry))
    assert raised.value.description.startswith("jwks key 0 holds")


def test_jwks_keeps_valid_public_keys_the_server_does_not_sign_with() -> None:
    """An encryption key (X25519, or ``"use": "enc"``) is a valid public key of the client: kept."""
    document = jwks_of(
        EC_KEY.as_dict(private=False),
        RSA_KEY.as_dict(private=False),
        OKPKey.generate_key("Ed25519").as_dict(private=False),
        OKPKey.generate_key("X25519").as_dict(private=False),
        {**ECKey.generate_key("P-384").as_dict(private=False), "use": "enc"},
    )
    assert validate_jwks(document) == document
    assert validate_jwks('{"keys": []}') == '{"keys": []}'
