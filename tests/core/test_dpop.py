"""RFC 9449 DPoP proofs at the PAR endpoint (DPOP-01..09, DPOP-11, FAPI-11, FAPI-12, FAPI-13)."""

from __future__ import annotations

import base64
import json
import secrets
import string
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from app.core.dpop import (
    MAX_PROOF_LENGTH,
    DpopNonces,
    DpopPolicy,
    DpopProof,
    UseDpopNonce,
    replay_expires_at,
    replay_key,
    validate_dpop_jkt,
    verify_dpop_proof,
)
from app.core.errors import InvalidDpopProof, InvalidRequest
from app.core.jose import MAX_JTI_LENGTH

PAR_ENDPOINT = "https://as.example/par"
# A multiple of the nonce lifetime, so that NOW starts a nonce window.
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LIFETIME = timedelta(minutes=5)
POLICY = DpopPolicy(clock_skew=timedelta(seconds=10), max_age=timedelta(seconds=60), nonce_required=False)
NONCE_POLICY = DpopPolicy(clock_skew=timedelta(seconds=10), max_age=timedelta(seconds=60), nonce_required=True)
NONCE_KEY = b"n" * 32
NONCES = DpopNonces(NONCE_KEY, lifetime=LIFETIME)
EC_KEY = ECKey.generate_key("P-256", private=True)
RSA_KEY = RSAKey.generate_key(2048, private=True)
ED_KEY = OKPKey.generate_key("Ed25519", private=True)
OTHER_EC_KEY = ECKey.generate_key("P-256", private=True)
KEYS = [(EC_KEY, "ES256"), (RSA_KEY, "PS256"), (ED_KEY, "Ed25519")]
_DROP = object()


def make_proof(
    key: Any = EC_KEY,
    alg: str = "ES256",
    *,
    header: dict[str, Any] | None = None,
    registry: JWSRegistry | None = None,
    **claims: Any,
) -> str:
    """A proof signed with ``key``; ``header``/``claims`` override the defaults, ``_DROP`` removes one."""
    head: dict[str, Any] = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    head.update(header or {})
    body: dict[str, Any] = {
        "jti": f"p-{time.monotonic_ns()}",
        "htm": "POST",
        "htu": PAR_ENDPOINT,
        "iat": int(NOW.timestamp()),
    }
    body.update(claims)
    head = {name: value for name, value in head.items() if value is not _DROP}
    body = {name: value for name, value in body.items() if value is not _DROP}
    signer = registry or JWSRegistry(algorithms=[alg], strict_check_header=False)
    return jwt.encode(head, body, key, algorithms=[alg], registry=signer)


def segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def badly_signed(**header: Any) -> str:
    """A proof with a header joserfc would not sign and a bogus signature, for the checks made before
    the signature is verified."""
    head = {"typ": "dpop+jwt", "alg": "ES256", "jwk": EC_KEY.as_dict(private=False)} | header
    body = {"jti": "j", "htm": "POST", "htu": PAR_ENDPOINT, "iat": int(NOW.timestamp())}
    return f"{segment(head)}.{segment(body)}.c2ln"


def check(
    proof: str,
    *,
    htm: str = "POST",
    htu: str = PAR_ENDPOINT,
    policy: DpopPolicy = POLICY,
    nonces: DpopNonces = NONCES,
    now: datetime = NOW,
) -> DpopProof:
    return verify_dpop_proof(proof, htm=htm, htu=htu, policy=policy, nonces=nonces, now=now)


def refused(proof: str, match: str, **kwargs: Any) -> None:
    with pytest.raises(InvalidDpopProof, match=match) as raised:
        check(proof, **kwargs)
    assert raised.value.error == "invalid_dpop_proof"
    assert raised.value.status_code == 400


# --- a good proof ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "alg"), KEYS, ids=["ES256", "PS256", "Ed25519"])
def test_good_proof_yields_the_key_thumbprint(key: Any, alg: str) -> None:
    """DPOP-02/03, FAPI-12: a valid proof yields the RFC 7638 SHA-256 thumbprint to bind the request to."""
    verified = check(make_proof(key, alg, jti="proof-1"))
    assert verified == DpopProof(jkt=key.thumbprint(), jti="proof-1", iat=NOW)
    assert validate_dpop_jkt(verified.jkt) == verified.jkt


def test_eddsa_name_is_accepted() -> None:
    """DPOP-05, FAPI-13: "EdDSA" is still accepted; joserfc warns that RFC 9864 prefers "Ed25519"."""
    with pytest.warns(SecurityWarning, match="RFC 9864"):
        proof = make_proof(ED_KEY, "EdDSA")
    with pytest.warns(SecurityWarning, match="RFC 9864"):
        verified = check(proof)
    assert verified.jkt == ED_KEY.thumbprint()


def test_large_rsa_key_fits_in_the_header() -> None:
    """DPOP-05: an RSA-4096 jwk is larger than joserfc's default 512-byte header limit."""
    key = RSAKey.generate_key(4096, private=True)
    assert check(make_proof(key, "PS256")).jkt == key.thumbprint()


def test_other_header_parameters_are_tolerated() -> None:
    """RFC 9449 §4.2: "A DPoP proof MAY contain other JOSE Header Parameters or claims"."""
    assert check(make_proof(header={"kid": "device-1", "x-vendor": "v"}, ath="x", extra=1)).jkt == EC_KEY.thumbprint()


def test_unknown_critical_header_parameter_is_refused() -> None:
    """RFC 7515 §4.1.11: a ``crit`` parameter the recipient does not understand makes the JWS invalid."""
    signer = JWSRegistry(
        algorithms=["ES256"], header_registry={"x-vendor": HeaderParameter("a vendor extension", "int")}
    )
    header = {"crit": ["x-vendor"], "x-vendor": 1}
    refused(make_proof(header=header, registry=signer), "cannot be verified")


# --- a single well-formed JWT (RFC 9449 §4.3 item 2) -------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c.d.e",
        "e30.e30.",
        "ey J.e30.sig",
        "!!!.e30.sig",
        segment(b"not json") + ".e30.c2ln",
        segment([1, 2]) + ".e30.c2ln",
        segment({"typ": "dpop+jwt"}) + ".e30.c2ln",
    ],
)
def test_malformed_proof_is_refused(value: str) -> None:
    """DPOP-05: RFC 9449 §4.3 (2) "a single and well-formed JWT"."""
    refused(value, "well-formed JWT|has no alg")


def test_two_proofs_folded_into_one_header_value_are_refused() -> None:
    """DPOP-05: one proof only; several DPoP header fields folded with a comma are not one JWT."""
    refused(f"{make_proof()}, {make_proof()}", "well-formed JWT")


def test_oversized_proof_is_refused() -> None:
    refused(make_proof(padding="x" * MAX_PROOF_LENGTH), "well-formed JWT")


def test_tampered_payload_is_refused() -> None:
    """DPOP-05: RFC 9449 §4.3 (6), the signature covers the claims."""
    head, _, signature = make_proof().split(".")
    forged = segment({"jti": "j", "htm": "POST", "htu": PAR_ENDPOINT, "iat": int(NOW.timestamp())})
    refused(f"{head}.{forged}.{signature}", "signature does not verify")


# --- typ (item 4) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", [_DROP, "JWT", "at+jwt", "dpop", "jwt+dpop"])
def test_wrong_typ_is_refused(typ: Any) -> None:
    """DPOP-05: RFC 9449 §4.3 (4) "The typ JOSE Header Parameter has the value dpop+jwt"; §11.5."""
    refused(make_proof(header={"typ": typ}), "typ header must be dpop\\+jwt")
    refused(badly_signed(typ=7), "typ header must be dpop\\+jwt")


@pytest.mark.parametrize("typ", ["DPoP+JWT", "application/dpop+jwt"])
def test_typ_is_compared_as_a_media_type(typ: str) -> None:
    """RFC 7515 §4.1.9: media types are case insensitive and may carry the "application/" prefix."""
    assert check(make_proof(header={"typ": typ})).jkt == EC_KEY.thumbprint()


# --- alg (item 5) ------------------------------------------------------------------------------------


def test_alg_none_is_refused() -> None:
    """DPOP-05: RFC 9449 §4.2 alg "MUST NOT be none"; §11.6 "the algorithm none MUST NOT be allowed"."""
    refused(badly_signed(alg="none").removesuffix("c2ln"), "well-formed JWT")  # RFC 7519 §6: empty signature
    refused(badly_signed(alg="none"), "alg none is not an accepted asymmetric algorithm")


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_mac_alg_is_refused(alg: str) -> None:
    """DPOP-05: RFC 9449 §4.2 alg MUST NOT be "an identifier for a symmetric algorithm (MAC)"."""
    secret = OctKey.import_key(secrets.token_bytes(64))
    token = jwt.encode(
        {"typ": "dpop+jwt", "alg": alg, "jwk": EC_KEY.as_dict(private=False)},
        {"jti": "j", "htm": "POST", "htu": PAR_ENDPOINT, "iat": int(NOW.timestamp())},
        secret,
        algorithms=[alg],
    )
    refused(token, f"alg {alg} is not an accepted asymmetric algorithm")


def test_alg_not_matching_the_key_type_is_refused() -> None:
    """DPOP-05: verified with exactly the header alg, which an EC key cannot satisfy for PS256."""
    token = make_proof(RSA_KEY, "PS256", header={"jwk": EC_KEY.as_dict(private=False)})
    refused(token, "cannot be verified with its jwk and alg")


# --- jwk (items 6 and 7) -----------------------------------------------------------------------------


def test_missing_jwk_is_refused() -> None:
    """DPOP-05: RFC 9449 §4.2 the header "MUST contain" jwk."""
    refused(make_proof(header={"jwk": _DROP}), "needs a jwk")
    refused(badly_signed(jwk="not-a-jwk"), "needs a jwk")


def test_symmetric_jwk_is_refused() -> None:
    jwk = {"kty": "oct", "k": segment(b"s" * 32)}
    refused(make_proof(header={"jwk": jwk}), "must be an RSA, EC or OKP public key")


@pytest.mark.parametrize(("key", "alg"), KEYS, ids=["ES256", "PS256", "Ed25519"])
def test_jwk_with_private_key_material_is_refused(key: Any, alg: str) -> None:
    """DPOP-05: RFC 9449 §4.3 (7) "The jwk JOSE Header Parameter does not contain a private key"."""
    refused(make_proof(key, alg, header={"jwk": key.as_dict(private=True)}), "must not contain a private key")


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth"])
def test_any_private_member_is_refused(member: str) -> None:
    jwk = RSA_KEY.as_dict(private=False) | {member: "AQAB"}
    refused(make_proof(RSA_KEY, "PS256", header={"jwk": jwk}), "must not contain a private key")


def test_invalid_jwk_is_refused() -> None:
    refused(make_proof(header={"jwk": {"kty": "EC", "crv": "P-256", "x": "abc"}}), "not a valid public key")


def test_short_rsa_key_is_refused() -> None:
    """FAPI-13: "RSA keys shall have a minimum length of 2048 bits"."""
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - to be refused
    numbers = short.public_key().public_numbers()
    jwk = {"kty": "RSA", "n": segment(numbers.n.to_bytes(128, "big")), "e": "AQAB"}
    refused(make_proof(RSA_KEY, "PS256", header={"jwk": jwk}), "at least 2048 bits")


def test_signature_by_another_key_is_refused() -> None:
    """DPOP-05: RFC 9449 §4.3 (6) "The JWT signature verifies with the public key contained in the jwk"."""
    token = make_proof(OTHER_EC_KEY, "ES256", header={"jwk": EC_KEY.as_dict(private=False)})
    refused(token, "signature does not verify with its jwk")


# --- jti (item 3) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("jti", [_DROP, "", 42, None])
def test_missing_or_malformed_jti_is_refused(jti: Any) -> None:
    """DPOP-05: RFC 9449 §4.3 (3) "All required claims per Section 4.2 are contained in the JWT"."""
    refused(make_proof(jti=jti), "needs a jti claim")


def test_oversized_jti_is_refused() -> None:
    """DPOP-09: RFC 9449 §11.1 "reject DPoP proof JWTs with unnecessarily large jti values"."""
    assert check(make_proof(jti="j" * MAX_JTI_LENGTH)).jti == "j" * MAX_JTI_LENGTH
    refused(make_proof(jti="j" * (MAX_JTI_LENGTH + 1)), "needs a jti claim")


# --- htm (item 8) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("htm", ["GET", "post", "PUT", _DROP, None])
def test_htm_mismatch_is_refused(htm: Any) -> None:
    """DPOP-02: RFC 9449 §4.3 (8) "The htm claim matches the HTTP method of the current request"."""
    refused(make_proof(htm=htm), "htm claim must be POST")


# --- htu (item 9) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "htu",
    [
        "https://as.example/other",
        "https://as.example/par/",
        "https://as.example/PAR",
        "https://other.example/par",
        "http://as.example/par",
        "https://as.example:8443/par",
        "https://user@as.example/par",
    ],
)
def test_htu_mismatch_is_refused(htu: str) -> None:
    """DPOP-02: RFC 9449 §4.3 (9) "The htu claim matches the HTTP URI value for the HTTP request"."""
    refused(make_proof(htu=htu), "htu claim does not match")


@pytest.mark.parametrize("htu", [_DROP, None, 42, "/par", "as.example/par", "urn:x:par", "https://as.example/p\nar"])
def test_htu_that_is_no_absolute_uri_is_refused(htu: Any) -> None:
    refused(make_proof(htu=htu), "needs an htu claim")


@pytest.mark.parametrize(
    "htu",
    [
        "https://AS.example:443/par?x=1#f",
        "HTTPS://as.EXAMPLE/par",
        "https://as.example/par?",
        "https://as.example/par#",
        "https://as.example/%70ar",
        "https://as.example/./x/../par",
    ],
)
def test_htu_is_normalised_before_comparing(htu: str) -> None:
    """DPOP-02: "ignoring any query and fragment parts", with RFC 3986 syntax- and scheme-based
    normalisation (RFC 9449 §4.3)."""
    assert check(make_proof(htu=htu)).jkt == EC_KEY.thumbprint()


def test_request_uri_is_normalised_too() -> None:
    """DPOP-11: the caller passes the URL it was actually called at, query and default port included."""
    assert check(make_proof(), htu="https://as.example:443/par?debug=1").jkt == EC_KEY.thumbprint()
    assert check(make_proof(htu="https://mtls.as.example/par"), htu="https://mtls.as.example/par")
    refused(make_proof(), "htu claim does not match", htu="https://mtls.as.example/par")


@pytest.mark.parametrize(
    ("claim", "request_uri"),
    [
        ("https://as.example/a%2fb", "https://as.example/a%2Fb"),
        ("https://[2001:DB8::1]:443/par", "https://[2001:db8::1]/par"),
        ("http://as.example:80/par", "http://as.example/par"),
        ("https://as.example", "https://as.example/"),
        ("https://as.example/a/b/..", "https://as.example/a/"),
    ],
)
def test_htu_normalisation_cases(claim: str, request_uri: str) -> None:
    assert check(make_proof(htu=claim), htu=request_uri).jkt == EC_KEY.thumbprint()


# --- iat (item 11) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-70, -30, 0, 5, 10])
def test_iat_within_the_window_is_accepted(offset: int) -> None:
    """DPOP-09, FAPI-11: iat up to max_age + skew in the past and up to the skew (10 s) in the future
    (``…-ensure-dpopproof-with-iat-10seconds-after-succeeds``)."""
    iat = int(NOW.timestamp()) + offset
    assert check(make_proof(iat=iat)).iat == datetime.fromtimestamp(iat, tz=UTC)


@pytest.mark.parametrize("offset", [11, 61, 3600])
def test_iat_too_new_is_refused(offset: int) -> None:
    """FAPI-11: reject iat more than the skew in the future (and always beyond 60 s)."""
    refused(make_proof(iat=int(NOW.timestamp()) + offset), "iat is in the future")


@pytest.mark.parametrize("offset", [71, 3600])
def test_iat_too_old_is_refused(offset: int) -> None:
    """DPOP-09: RFC 9449 §11.1 "servers MUST only accept DPoP proofs for a limited time after their creation"."""
    refused(make_proof(iat=int(NOW.timestamp()) - offset), "too old")


@pytest.mark.parametrize("iat", [_DROP, None, "1700000000", True, [1]])
def test_missing_or_malformed_iat_is_refused(iat: Any) -> None:
    refused(make_proof(iat=iat), "needs an iat claim")


def test_non_finite_iat_is_refused() -> None:
    """NaN compares false with everything, so it must not slip through the window check."""
    for literal in ("NaN", "Infinity", "-Infinity"):
        head, _, _ = make_proof().split(".")
        payload = f'{{"jti":"j","htm":"POST","htu":"{PAR_ENDPOINT}","iat":{literal}}}'.encode()
        token = f"{head}.{segment(payload)}.c2ln"
        with pytest.raises(InvalidDpopProof):
            check(token)
    refused(make_proof(iat=10**400), "too large for a double")


# --- nonce (item 10, §8) -----------------------------------------------------------------------------


def test_required_nonce_missing_gets_use_dpop_nonce_then_retry_succeeds() -> None:
    """DPOP-07: RFC 9449 §8, HTTP 400 use_dpop_nonce carrying a nonce that the retry then uses."""
    with pytest.raises(UseDpopNonce) as raised:
        check(make_proof(), policy=NONCE_POLICY)
    error = raised.value
    assert (error.error, error.status_code, error.result_code) == ("use_dpop_nonce", 400, "A350308")
    assert error.to_body() == {
        "error": "use_dpop_nonce",
        "error_description": "Authorization server requires nonce in DPoP proof",
    }
    assert NONCES.is_valid(error.nonce, NOW)
    assert check(make_proof(nonce=error.nonce), policy=NONCE_POLICY).jkt == EC_KEY.thumbprint()


@pytest.mark.parametrize("policy", [POLICY, NONCE_POLICY], ids=["optional", "required"])
def test_stale_or_forged_nonce_gets_a_new_one(policy: DpopPolicy) -> None:
    """DPOP-08: a nonce that does not match "MUST reject"; sent even when not required, it is still checked."""
    for bad in ("forged", segment(secrets.token_bytes(32)), NONCES.issue(NOW - 3 * LIFETIME)):
        with pytest.raises(UseDpopNonce, match="not a current nonce") as raised:
            check(make_proof(nonce=bad), policy=policy)
        assert raised.value.nonce == NONCES.issue(NOW)


def test_valid_nonce_is_accepted_when_not_required() -> None:
    assert check(make_proof(nonce=NONCES.issue(NOW))).jkt == EC_KEY.thumbprint()


def test_non_string_nonce_is_refused() -> None:
    refused(make_proof(nonce=12345), "nonce claim must be a string", policy=NONCE_POLICY)


def test_nonce_is_checked_last() -> None:
    """UseDpopNonce means the proof is otherwise acceptable: other failures come first."""
    refused(make_proof(htm="GET"), "htm", policy=NONCE_POLICY)
    refused(make_proof(iat=int(NOW.timestamp()) - 3600), "too old", policy=NONCE_POLICY)


# --- DpopNonces ---------------------------------------------------------------------------------------


def test_nonce_windows() -> None:
    """DPOP-07: accepted in its window and the next (1x to 2x lifetime), refused after."""
    nonce = NONCES.issue(NOW)
    assert len(nonce) == 43 and set(nonce) <= set(string.ascii_letters + string.digits + "-_")
    assert NONCES.issue(NOW + LIFETIME - timedelta(microseconds=1)) == nonce
    assert NONCES.issue(NOW + LIFETIME) != nonce
    assert NONCES.is_valid(nonce, NOW + LIFETIME)  # previous window
    assert NONCES.is_valid(nonce, NOW + 2 * LIFETIME - timedelta(microseconds=1))
    assert not NONCES.is_valid(nonce, NOW + 2 * LIFETIME)
    assert not NONCES.is_valid(nonce, NOW + 3 * LIFETIME)
    assert not NONCES.is_valid(NONCES.issue(NOW - 3 * LIFETIME), NOW)
    assert not NONCES.is_valid(NONCES.issue(NOW + LIFETIME), NOW)  # not yet issued


@given(st.integers(min_value=0, max_value=10**9), st.floats(min_value=0, max_value=1))
def test_nonce_lives_between_one_and_two_lifetimes(issued: int, fraction: float) -> None:
    """DPOP-07: whenever issued, a nonce is valid for at least one lifetime and less than two."""
    issued_at = datetime.fromtimestamp(issued, tz=UTC)
    nonce = NONCES.issue(issued_at)
    assert NONCES.is_valid(nonce, issued_at + LIFETIME * fraction)
    assert not NONCES.is_valid(nonce, issued_at + 2 * LIFETIME)


def test_nonces_are_shared_by_replicas_and_unforgeable_without_the_key() -> None:
    """DPOP-07: another instance with the same key accepts the nonce; one with another key does not."""
    nonce = NONCES.issue(NOW)
    replica = DpopNonces(NONCE_KEY, lifetime=LIFETIME)
    assert replica.issue(NOW) == nonce and replica.is_valid(nonce, NOW)
    stranger = DpopNonces(b"x" * 32, lifetime=LIFETIME)
    assert stranger.issue(NOW) != nonce and not stranger.is_valid(nonce, NOW)
    assert check(make_proof(nonce=nonce), policy=NONCE_POLICY, nonces=replica)
    with pytest.raises(UseDpopNonce):
        check(make_proof(nonce=nonce), policy=NONCE_POLICY, nonces=stranger)


@pytest.mark.parametrize("value", ["", "x" * 43, "é" * 43, "x" * 44, " " + NONCES.issue(NOW)[1:]])
def test_malformed_nonces_are_invalid(value: str) -> None:
    assert not NONCES.is_valid(value, NOW)


def test_nonce_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        DpopNonces(b"short", lifetime=LIFETIME)
    with pytest.raises(ValueError, match="at least one second"):
        DpopNonces(NONCE_KEY, lifetime=timedelta(0))


# --- replay (DPOP-09) ----------------------------------------------------------------------------------


def test_replay_key_is_per_key_jti_and_target_uri() -> None:
    """DPOP-09: RFC 9449 §11.1 jti are tracked "In the context of the target URI"; only a hash is stored."""
    proof = check(make_proof(jti="j-1"))
    key = replay_key(proof, PAR_ENDPOINT)
    assert len(key) == 64 and "j-1" not in key
    assert replay_key(proof, "https://AS.example:443/par?x=1") == key
    assert replay_key(proof, "https://as.example/token") != key
    assert replay_key(check(make_proof(jti="j-2")), PAR_ENDPOINT) != key
    assert replay_key(check(make_proof(OTHER_EC_KEY, jti="j-1")), PAR_ENDPOINT) != key


def test_replay_is_remembered_for_the_whole_acceptance_window() -> None:
    """DPOP-09: until the last instant ``verify_dpop_proof`` would accept the proof."""
    proof = check(make_proof())
    expires_at = replay_expires_at(proof, POLICY)
    assert expires_at == NOW + POLICY.max_age + POLICY.clock_skew
    assert check(make_proof(jti=proof.jti), now=expires_at)
    refused(make_proof(jti=proof.jti), "too old", now=expires_at + timedelta(seconds=1))


# --- dpop_jkt (DPOP-01) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", EC_KEY.thumbprint(), RSA_KEY.thumbprint()]
)
def test_dpop_jkt_is_accepted(value: str) -> None:
    """DPOP-01: RFC 9449 §10, the SHA-256 JWK thumbprint (the first is RFC 9449 Figure 25's)."""
    assert validate_dpop_jkt(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-thumbprint",
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs=",
        "NzbLsXh8uDCcd+6MNwXF4W/7noWXFZAfHkxZsRGC9Xs",
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X",
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xt",  # non-canonical: the last 2 bits are not zero
        "a" * 64,
    ],
)
def test_malformed_dpop_jkt_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="dpop_jkt must be a base64url SHA-256 JWK thumbprint"):
        validate_dpop_jkt(value)
