"""Mutual-TLS client authentication rules (MTLS-02, MTLS-03, MTLS-04, MTLS-06)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import JWKRegistry

from app.core.errors import InvalidClient
from app.core.model import ClientRecord
from app.core.mtls import (
    MAX_CLIENT_CERTIFICATE_CHARS,
    TLS_CLIENT_AUTH_FIELD_NAMES,
    TLS_CLIENT_AUTH_METADATA,
    TlsClientAuthRegistration,
    parse_client_certificate,
    verify_self_signed_tls_client_auth,
    verify_tls_client_auth,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
P384_KEY = ec.generate_private_key(ec.SECP384R1())
ED25519_KEY = ed25519.Ed25519PrivateKey.generate()

# RFC 4514 string: "CN=client.example,O=Example,C=US" (the ASN.1 sequence is C, O, CN).
SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
        x509.NameAttribute(NameOID.COMMON_NAME, "client.example"),
    ]
)
SANS: list[x509.GeneralName] = [
    x509.DNSName("client.example.com"),
    x509.DNSName("*.wild.example.com"),
    x509.DNSName("Mixed.Example.NET"),
    x509.UniformResourceIdentifier("https://client.example.com/id"),
    x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
    x509.IPAddress(ipaddress.ip_address("::1")),
    x509.RFC822Name("client.One@Example.com"),
]


def make_cert(
    key: PrivateKey = EC_KEY,
    *,
    subject: x509.Name = SUBJECT,
    sans: Sequence[x509.GeneralName] = (),
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=365),
    serial: int = 1,
) -> x509.Certificate:
    """A self-signed certificate (issuer = subject)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def b64_der(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()


def public_jwk(key: PrivateKey, **members: Any) -> dict[str, Any]:
    spki = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return {**JWKRegistry.import_key(spki, kty_of(key)).as_dict(), **members}


def private_jwk(key: PrivateKey) -> dict[str, Any]:
    pkcs8 = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return dict(JWKRegistry.import_key(pkcs8, kty_of(key)).as_dict(private=True))


def kty_of(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    return "EC" if isinstance(key, ec.EllipticCurvePrivateKey) else "OKP"


def rejected(call: pytest.ExceptionInfo[InvalidClient]) -> str:
    """MTLS-02: every failure is invalid_client (401) without a Basic challenge; returns the description."""
    assert call.value.error == "invalid_client" and call.value.status_code == 401
    assert call.value.used_authorization_header is False
    return call.value.description


EC_CERT = make_cert()
RSA_CERT = make_cert(RSA_KEY)
SAN_CERT = make_cert(sans=SANS)

# --- parse_client_certificate (MTLS-06) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(pem, id="pem"),
        pytest.param(lambda c: "\r\n  " + pem(c).replace("\n", "\r\n") + "  ", id="pem-crlf-padded"),
        pytest.param(lambda c: f":{b64_der(c)}:", id="rfc9440"),
        pytest.param(lambda c: f":{b64_der(c).rstrip('=')}:", id="rfc9440-unpadded"),
        pytest.param(lambda c: quote(pem(c), safe=""), id="nginx-escaped-pem"),
        pytest.param(lambda c: quote(pem(c), safe="+/="), id="escaped-pem-keeping-base64"),
        # authlete-python-django forwards an RFC 9440 Client-Cert value as bare base64 DER.
        pytest.param(b64_der, id="bare-base64-der"),
        pytest.param(lambda c: b64_der(c).rstrip("="), id="bare-base64-der-unpadded"),
        pytest.param(lambda c: "".join(pem(c).splitlines(keepends=True)[1:-1]), id="pem-body-without-armour"),
    ],
)
@pytest.mark.parametrize("cert", [EC_CERT, RSA_CERT], ids=["ec", "rsa"])
def test_each_input_format_parses(encode: Any, cert: x509.Certificate) -> None:
    """MTLS-06: Authlete's PEM, RFC 9440 Client-Cert (RFC 8941 Byte Sequence), nginx's escaped PEM, and
    bare base64 DER (a PEM body without its armour)."""
    assert parse_client_certificate(encode(cert)) == cert


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("garbage", id="garbage"),
        pytest.param("::", id="empty-byte-sequence"),
        pytest.param(":!!!!:", id="byte-sequence-not-base64"),
        pytest.param(":" + base64.b64encode(b"not a certificate").decode() + ":", id="byte-sequence-not-der"),
        pytest.param(base64.b64encode(b"not a certificate").decode(), id="bare-base64-not-der"),
        pytest.param(b64_der(EC_CERT)[:-8], id="bare-base64-truncated"),
        pytest.param(b64_der(EC_CERT).replace("M", "-", 2), id="bare-base64url-alphabet"),
        pytest.param(":" + base64.urlsafe_b64encode(b"\xfb\xff" * 40).decode() + ":", id="base64url-alphabet"),
        pytest.param(pem(EC_CERT).replace("M", "*", 3), id="pem-corrupt-body"),
        pytest.param(pem(EC_CERT)[:-80] + "-----END CERTIFICATE-----\n", id="pem-truncated"),
        pytest.param(pem(EC_CERT) + pem(RSA_CERT), id="pem-two-certificates"),
        pytest.param(
            pem(EC_CERT) + EC_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode(),
            id="pem-with-private-key",
        ),
        pytest.param(pem(EC_CERT).replace("MI", "MÍ", 1), id="pem-non-ascii"),
        pytest.param("-----BEGIN%20CERTIFICATE-----%0A%C3%28", id="escaped-invalid-utf8"),
        pytest.param("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n", id="pem-public-key"),
    ],
)
def test_unparsable_certificate_is_invalid_client(value: str) -> None:
    with pytest.raises(InvalidClient) as caught:
        parse_client_certificate(value)
    assert rejected(caught) == "the client certificate cannot be parsed"


def test_oversized_certificate_is_refused_before_decoding() -> None:
    padded = pem(RSA_CERT) + " " * MAX_CLIENT_CERTIFICATE_CHARS
    with pytest.raises(InvalidClient) as caught:
        parse_client_certificate(padded)
    assert "larger than 16384 characters" in rejected(caught)
    assert parse_client_certificate(padded[:MAX_CLIENT_CERTIFICATE_CHARS]) == RSA_CERT


# --- verify_tls_client_auth: registration (MTLS-03) --------------------------------------------------


def test_the_metadata_names_are_defined_once() -> None:
    """RFC 8705 §2.1.2's five parameters: the record fields, the registration's, and Authlete's names."""
    assert TLS_CLIENT_AUTH_METADATA == tuple(
        name for name in ClientRecord.__dataclass_fields__ if name.startswith("tls_")
    )
    assert [f"tls_client_auth_{field.name}" for field in fields(TlsClientAuthRegistration)] == list(
        TLS_CLIENT_AUTH_METADATA
    )
    assert list(TLS_CLIENT_AUTH_FIELD_NAMES.values()) == [
        "tlsClientAuthSubjectDn",
        "tlsClientAuthSanDns",
        "tlsClientAuthSanUri",
        "tlsClientAuthSanIp",
        "tlsClientAuthSanEmail",
    ]


def test_no_registered_attribute_fails() -> None:
    """MTLS-03 / RFC 8705 §2.1.2: the client "MUST use exactly one" of the metadata parameters."""
    for registration in (TlsClientAuthRegistration(), TlsClientAuthRegistration(subject_dn=" ", san_dns="")):
        with pytest.raises(InvalidClient) as caught:
            verify_tls_client_auth(SAN_CERT, registration, now=NOW)
        assert rejected(caught) == (
            "tls_client_auth needs exactly one of tlsClientAuthSubjectDn, tlsClientAuthSanDns, tlsClientAuthSanUri, "
            "tlsClientAuthSanIp, tlsClientAuthSanEmail (RFC 8705 2.1.2); the client has none"
        )


def test_two_registered_attributes_fail_even_if_both_match() -> None:
    registration = TlsClientAuthRegistration(subject_dn=SUBJECT.rfc4514_string(), san_dns="client.example.com")
    with pytest.raises(InvalidClient) as caught:
        verify_tls_client_auth(SAN_CERT, registration, now=NOW)
    assert rejected(caught).endswith("the client has tlsClientAuthSubjectDn, tlsClientAuthSanDns")


def test_blank_attributes_do_not_count() -> None:
    verify_tls_client_auth(SAN_CERT, TlsClientAuthRegistration(subject_dn="", san_dns="client.example.com"), now=NOW)


# --- verify_tls_client_auth: subject DN (MTLS-03) ----------------------------------------------------


def test_registered_dn_order_is_rfc4514_order() -> None:
    """The RFC 4514 string lists the last RDN of the ASN.1 sequence first."""
    assert SUBJECT.rfc4514_string() == "CN=client.example,O=Example,C=US"


@pytest.mark.parametrize(
    "registered",
    [
        "CN=client.example,O=Example,C=US",
        "CN=client.example, O=Example, C=US",
        "  CN = client.example ,  O = Example , C = US  ",
        "cn=Client.Example,o=EXAMPLE,c=us",
        "CN=client.example,O=  Example ,C=US",
        "2.5.4.3=client.example,2.5.4.10=Example,2.5.4.6=US",
        "CN=#0c0e636c69656e742e6578616d706c65,O=Example,C=#13025553",
        "CN=client\\2Eexample,O=\\45xample,C=US",
    ],
)
def test_subject_dn_matches_despite_spelling(registered: str) -> None:
    """MTLS-03: keywords case-insensitively, values caseIgnore with insignificant spaces, OIDs, hex, escapes."""
    verify_tls_client_auth(EC_CERT, TlsClientAuthRegistration(subject_dn=registered), now=NOW)


def test_subject_dn_with_escapes_multivalued_rdn_and_non_ascii() -> None:
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.LOCALITY_NAME, "München")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc.")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "Ops@Example.com")]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COMMON_NAME, "client  one"), x509.NameAttribute(NameOID.USER_ID, "42")]
            ),
        ]
    )
    cert = make_cert(subject=subject)
    for registered in (
        subject.rfc4514_string(),
        "UID=42+CN=Client One, emailAddress=ops@example.com, O=Example\\, Inc., L=M\\C3\\BCnchen, C=DE",
        "cn=client one+uid=42,E=OPS@EXAMPLE.COM,O=Example\\2C Inc.,L=MÜNCHEN,C=de",
    ):
        verify_tls_client_auth(cert, TlsClientAuthRegistration(subject_dn=registered), now=NOW)


@pytest.mark.parametrize(
    "registered",
    [
        "CN=other.example,O=Example,C=US",
        "CN=client.example,O=Example",
        "CN=client.example,OU=Dev,O=Example,C=US",
        "CN=client.example+O=Example,C=US",
        "CN=client.example,O=Example,C=GB",
        "CN=client.example,O=Example Inc,C=US",
    ],
)
def test_subject_dn_mismatch_fails(registered: str) -> None:
    with pytest.raises(InvalidClient) as caught:
        verify_tls_client_auth(EC_CERT, TlsClientAuthRegistration(subject_dn=registered), now=NOW)
    assert rejected(caught) == "the client certificate's subject DN does not match tlsClientAuthSubjectDn"


def test_subject_dn_in_reverse_order_fails_with_a_hint() -> None:
    """Order is significant; `openssl x509 -subject` prints C first, which names a different DN."""
    with pytest.raises(InvalidClient) as caught:
        verify_tls_client_auth(
            EC_CERT, TlsClientAuthRegistration(subject_dn="C = US, O = Example, CN = client.example"), now=NOW
        )
    assert "reverse order" in rejected(caught)


@pytest.mark.parametrize(
    "registered",
    [
        "client.example",
        "XX=client.example,O=Example,C=US",
        'CN="client.example",O=Example,C=US',
        "CN=client.example;O=Example;C=US",
        "CN=client.example,O=Example,C=US,",
        "CN=client\\zzexample,O=Example,C=US",
        "CN=client.example\\",
        "CN=#zz,O=Example,C=US",
        "CN=#0c05ab,O=Example,C=US",
        "CN=#0302ff00,O=Example,C=US",
        "CN=\\C3\\28,O=Example,C=US",
        "=client.example",
        "01.2=x",
    ],
)
def test_malformed_registered_dn_fails(registered: str) -> None:
    with pytest.raises(InvalidClient) as caught:
        verify_tls_client_auth(EC_CERT, TlsClientAuthRegistration(subject_dn=registered), now=NOW)
    assert rejected(caught) == "tlsClientAuthSubjectDn is not a valid RFC 4514 distinguished name"


@given(st.text(min_size=1, max_size=24))
def test_any_organization_survives_rfc4514_escaping(organization: str) -> None:
    """MTLS-03: the parser reads back whatever cryptography's RFC 4514 writer escapes (lower-case
    keywords keep the exact-string shortcut out of the way)."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization), x509.NameAttribute(NameOID.COMMON_NAME, "c")]
    )
    cert = make_cert(subject=subject)
    registered = subject.rfc4514_string({NameOID.ORGANIZATION_NAME: "o", NameOID.COMMON_NAME: "cn"})
    verify_tls_client_auth(cert, TlsClientAuthRegistration(subject_dn=registered), now=NOW)


# --- verify_tls_client_auth: subject alternative names (MTLS-03) --------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("san_dns", "client.example.com"),
        ("san_dns", "CLIENT.Example.COM"),
        ("san_dns", "*.wild.example.com"),
        ("san_dns", "mixed.example.net"),
        ("san_uri", "https://client.example.com/id"),
        ("san_ip", "192.0.2.10"),
        ("san_ip", "::1"),
        ("san_ip", "0:0:0:0:0:0:0:1"),
        ("san_email", "client.One@example.COM"),
    ],
)
def test_san_match(attribute: str, value: str) -> None:
    """MTLS-03: DNS case-insensitive, URI exact, IP in binary (RFC 5952 §8), email domain case-insensitive."""
    verify_tls_client_auth(SAN_CERT, TlsClientAuthRegistration(**{attribute: value}), now=NOW)


@pytest.mark.parametrize(
    ("attribute", "value", "field"),
    [
        ("san_dns", "other.example.com", "tlsClientAuthSanDns"),
        ("san_dns", "a.wild.example.com", "tlsClientAuthSanDns"),
        ("san_dns", "example.com", "tlsClientAuthSanDns"),
        ("san_dns", "https://client.example.com/id", "tlsClientAuthSanDns"),
        ("san_uri", "https://client.example.com/ID", "tlsClientAuthSanUri"),
        ("san_uri", "https://client.example.com/id/", "tlsClientAuthSanUri"),
        ("san_uri", "client.example.com", "tlsClientAuthSanUri"),
        ("san_ip", "192.0.2.11", "tlsClientAuthSanIp"),
        ("san_ip", "::ffff:192.0.2.10", "tlsClientAuthSanIp"),
        ("san_ip", "::2", "tlsClientAuthSanIp"),
        ("san_email", "Client.one@example.com", "tlsClientAuthSanEmail"),
        ("san_email", "client.One@example.org", "tlsClientAuthSanEmail"),
    ],
)
def test_san_mismatch_fails(attribute: str, value: str, field: str) -> None:
    with pytest.raises(InvalidClient) as caught:
        verify_tls_client_auth(SAN_CERT, TlsClientAuthRegistration(**{attribute: value}), now=NOW)
    assert rejected(caught) == f"no subjectAltName entry of the client certificate matches {field}"


def test_registered_san_ip_must_be_an_address() -> None:
    with pytest.raises(InvalidClient) as caught:
        verify_tls_client_auth(SAN_CERT, TlsClientAuthRegistration(san_ip="client.example.com"), now=NOW)
    assert rejected(caught) == "tlsClientAuthSanIp is not an IPv4 or IPv6 address"


def test_certificate_without_san_extension_fails_san_registration() -> None:
    with pytest.raises(InvalidClient) as caught:
        verify_tls_client_auth(EC_CERT, TlsClientAuthRegistration(san_dns="client.example.com"), now=NOW)
    assert "has no subjectAltName extension to match tlsClientAuthSanDns" in rejected(caught)


# --- validity period (both methods) -------------------------------------------------------------------

EXPIRED = make_cert(not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(seconds=1), sans=SANS)
NOT_YET_VALID = make_cert(not_before=NOW + timedelta(seconds=1), not_after=NOW + timedelta(days=30), sans=SANS)


@pytest.mark.parametrize(
    ("cert", "message"),
    [(EXPIRED, "expired at 2030-06-01T11:59:59Z"), (NOT_YET_VALID, "not valid before 2030-06-01T12:00:01Z")],
    ids=["expired", "not-yet-valid"],
)
def test_certificate_outside_validity_period_fails(cert: x509.Certificate, message: str) -> None:
    """RFC 5280 §4.1.2.5, for tls_client_auth and for self_signed_tls_client_auth alike."""
    with pytest.raises(InvalidClient) as caught:
        verify_tls_client_auth(cert, TlsClientAuthRegistration(san_dns="client.example.com"), now=NOW)
    assert message in rejected(caught)
    with pytest.raises(InvalidClient) as caught:
        verify_self_signed_tls_client_auth(cert, {"keys": [public_jwk(EC_KEY)]}, now=NOW)
    assert message in rejected(caught)


def test_validity_period_is_inclusive() -> None:
    cert = make_cert(not_before=NOW, not_after=NOW + timedelta(hours=1), sans=SANS)
    registration = TlsClientAuthRegistration(san_dns="client.example.com")
    verify_tls_client_auth(cert, registration, now=NOW)
    verify_tls_client_auth(cert, registration, now=NOW + timedelta(hours=1))


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_tls_client_auth(
            SAN_CERT, TlsClientAuthRegistration(san_dns="client.example.com"), now=datetime(2030, 1, 1)
        )


# --- verify_self_signed_tls_client_auth (MTLS-04) -----------------------------------------------------


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["rsa", "ec"])
def test_self_signed_matches_via_x5c(key: PrivateKey) -> None:
    """MTLS-04 / RFC 8705 §2.2: the certificate "matches one of the certificates ... registered"."""
    cert = make_cert(key)
    verify_self_signed_tls_client_auth(cert, {"keys": [public_jwk(key, x5c=[b64_der(cert)])]}, now=NOW)


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY, ED25519_KEY], ids=["rsa", "ec", "ed25519"])
def test_self_signed_matches_via_bare_public_key(key: PrivateKey) -> None:
    verify_self_signed_tls_client_auth(make_cert(key), {"keys": [public_jwk(key)]}, now=NOW)


@pytest.mark.parametrize(
    "unusable",
    [{"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA"}, {"kty": "OKP", "crv": "X9", "x": "AA"}],
    ids=["ec-unknown-curve", "okp-unknown-curve"],
)
def test_a_key_of_an_unknown_curve_is_skipped_not_a_crash(unusable: dict[str, str]) -> None:
    """A fetched JWKS is not refused as a whole: an entry joserfc cannot import is skipped."""
    cert = make_cert(EC_KEY)
    verify_self_signed_tls_client_auth(cert, {"keys": [unusable, public_jwk(EC_KEY)]}, now=NOW)
    with pytest.raises(InvalidClient):
        verify_self_signed_tls_client_auth(cert, {"keys": [unusable]}, now=NOW)


def test_renewed_certificate_for_the_same_key_still_matches() -> None:
    """The registered x5c is the old certificate; the key is the same, which TLS proved possession of."""
    old = make_cert(serial=1, not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=35))
    renewed = make_cert(serial=2)
    verify_self_signed_tls_client_auth(renewed, {"keys": [public_jwk(EC_KEY, x5c=[b64_der(old)])]}, now=NOW)


def test_mismatching_key_fails_without_echoing_the_certificate() -> None:
    jwks = {"keys": [public_jwk(OTHER_EC_KEY, kid="k1"), public_jwk(RSA_KEY, kid="k2")]}
    with pytest.raises(InvalidClient) as caught:
        verify_self_signed_tls_client_auth(EC_CERT, jwks, now=NOW)
    description = rejected(caught)
    assert description == "the client certificate matches none of the 1 EC keys in the client's JWK Set"
    assert b64_der(EC_CERT)[20:40] not in description and "client.example" not in description


def test_same_curve_name_but_other_curve_fails() -> None:
    with pytest.raises(InvalidClient):
        verify_self_signed_tls_client_auth(EC_CERT, {"keys": [public_jwk(P384_KEY)]}, now=NOW)


def test_jwk_with_private_key_members_is_not_trusted() -> None:
    """A client's JWK Set is public; an entry with "d" is a registration error and is skipped."""
    with pytest.raises(InvalidClient) as caught:
        verify_self_signed_tls_client_auth(EC_CERT, {"keys": [private_jwk(EC_KEY)]}, now=NOW)
    assert "(1 of them unusable: private, malformed or inconsistent)" in rejected(caught)
    with pytest.raises(InvalidClient):
        verify_self_signed_tls_client_auth(RSA_CERT, {"keys": [private_jwk(RSA_KEY)]}, now=NOW)


def test_x5c_inconsistent_with_the_jwk_key_is_not_trusted() -> None:
    """RFC 7517 §4.7: the x5c[0] key MUST match the JWK's own members; a JWK that breaks this is skipped,
    so an x5c copied next to someone else's key does not authenticate the certificate's holder."""
    presented = make_cert(OTHER_EC_KEY)
    with pytest.raises(InvalidClient) as caught:
        verify_self_signed_tls_client_auth(presented, {"keys": [public_jwk(EC_KEY, x5c=[b64_der(presented)])]}, now=NOW)
    assert "1 of them unusable" in rejected(caught)


@pytest.mark.parametrize(
    "bad_entry",
    [
        public_jwk(EC_KEY, x5c=["!!!not base64!!!"]),
        public_jwk(EC_KEY, x5c=[base64.b64encode(b"not der").decode()]),
        public_jwk(EC_KEY, x5c=[]),
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "P-256"},
    ],
)
def test_malformed_jwk_is_skipped(bad_entry: dict[str, Any]) -> None:
    with pytest.raises(InvalidClient) as caught:
        verify_self_signed_tls_client_auth(EC_CERT, {"keys": [bad_entry]}, now=NOW)
    assert "1 of them unusable" in rejected(caught)


def test_usable_key_is_found_among_unusable_ones() -> None:
    jwks = {
        "keys": [
            "not an object",
            {"kty": "oct", "k": "c2VjcmV0"},
            private_jwk(EC_KEY),
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            public_jwk(P384_KEY),
            public_jwk(RSA_KEY),
            public_jwk(EC_KEY, use="sig", kid="current"),
        ]
    }
    verify_self_signed_tls_client_auth(EC_CERT, jwks, now=NOW)


@pytest.mark.parametrize("jwks", [{}, {"keys": "none"}, {"keys": {"kty": "EC"}}])
def test_jwks_without_keys_array_fails(jwks: dict[str, Any]) -> None:
    with pytest.raises(InvalidClient) as caught:
        verify_self_signed_tls_client_auth(EC_CERT, jwks, now=NOW)
    assert rejected(caught) == "the client's registered JWK Set has no keys array"
