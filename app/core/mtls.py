"""Mutual-TLS client authentication (RFC 8705 §2): binding the presented certificate to the client.

RFC 8705 §2: "The authorization server MUST enforce the binding between client and certificate, as
described in either Section 2.1 or 2.2 below. If no certificate is presented, or that which is
presented doesn't match that which is expected for the given client_id, the authorization server
returns a normal OAuth 2.0 error response per Section 5.2 of [RFC6749] with the invalid_client error
code to indicate failed client authentication."

What this module does not do (MTLS-01, MTLS-03, MTLS-06): it does not see the TLS handshake, so it
can neither check possession of the private key nor validate the chain of a ``tls_client_auth``
certificate. Both belong to whatever terminates TLS (the proxy, or Authlete's caller), and the
certificate must reach us only from that trusted party. Here we parse what it forwards and apply the
RFC 8705 §2.1.2 / §2.2 matching rules, plus the certificate's own validity period.

Every failure is ``invalid_client`` (MTLS-02). mTLS credentials never travel in the Authorization
header, so ``used_authorization_header`` is always False. No description echoes the certificate.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final, cast
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from joserfc.errors import JoseError
from joserfc.jwk import DictKey, JWKRegistry

from app.core import jose
from app.core.errors import InvalidClient

# The largest certificate value we parse, in characters of the value as received. A leaf certificate
# with an RSA-4096 key and a dozen SANs is about 2 KiB of DER, 2.8 KiB of PEM; nginx's
# $ssl_client_escaped_cert percent-encodes about a tenth of those characters. 16 KiB leaves ample room
# while keeping base64 decoding and ASN.1 parsing of hostile input cheap (Cloudflare caps its RFC 9440
# field at 10 KiB).
MAX_CLIENT_CERTIFICATE_CHARS: Final = 16 * 1024

_UNPARSABLE = "the client certificate cannot be parsed"
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
# RFC 8941 §3.3.5: sf-binary = ":" *(base64) ":"; base64 = ALPHA / DIGIT / "+" / "/" / "="
_SF_BINARY = re.compile(r":([A-Za-z0-9+/=]*):")
_BARE_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")

# RFC 8705 §2.1.2: the client metadata of which a tls_client_auth client uses exactly one, by the RFC's
# names, which ClientRecord and the database use too. TlsClientAuthRegistration drops the prefix.
TLS_CLIENT_AUTH_METADATA: Final = (
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
)
_METADATA_PREFIX = "tls_client_auth_"


def _camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


# The same metadata as Authlete's client record names it (tlsClientAuthSubjectDn ...): what an operator
# configures, and what messages name.
TLS_CLIENT_AUTH_FIELD_NAMES: Final[Mapping[str, str]] = {name: _camel_case(name) for name in TLS_CLIENT_AUTH_METADATA}
_REGISTRATION_FIELD_NAMES: Final[Mapping[str, str]] = {
    name.removeprefix(_METADATA_PREFIX): field_name for name, field_name in TLS_CLIENT_AUTH_FIELD_NAMES.items()
}

# RFC 4514 §3 keywords (the first nine, which every parser must know) plus names that client
# certificate subjects commonly use and that OpenSSL, Java or Windows print. Matched case-insensitively.
_DN_KEYWORDS: Final[Mapping[str, x509.ObjectIdentifier]] = {
    "CN": NameOID.COMMON_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "SN": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "TITLE": NameOID.TITLE,
    "POSTALCODE": NameOID.POSTAL_CODE,
    "BUSINESSCATEGORY": NameOID.BUSINESS_CATEGORY,
    "ORGANIZATIONIDENTIFIER": NameOID.ORGANIZATION_IDENTIFIER,
    "JURISDICTIONC": NameOID.JURISDICTION_COUNTRY_NAME,
    "JURISDICTIONST": NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME,
    "JURISDICTIONL": NameOID.JURISDICTION_LOCALITY_NAME,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "E": NameOID.EMAIL_ADDRESS,
}
# RFC 4512 §1.4: numericoid = number 1*( DOT number ); number = DIGIT / ( LDIGIT 1*DIGIT )
_NUMERIC_OID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")
# RFC 4514 §2.4: after "\" comes a special character or two hex digits.
_DN_ESCAPABLE = frozenset(' "#+,;<=>\\')
# RFC 4514 §3: these must be escaped inside a value ('"' also rules out RFC 2253 quoted values).
_DN_MUST_ESCAPE = frozenset('";<>')
# RFC 4514 §2.4: "#" hexstring is the BER encoding of the value; we understand the string types.
_ASN1_STRING_CODECS: Final[Mapping[int, str]] = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString, as cryptography decodes it
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}

# A distinguished name as compared here: RDNs in RFC 4514 string order (most specific first), each a
# set of (attribute type OID, normalised value).
_Rdn = frozenset[tuple[str, str]]
_Dn = tuple[_Rdn, ...]


def _invalid_client(description: str) -> InvalidClient:
    return InvalidClient(description, used_authorization_header=False)


def parse_client_certificate(value: str) -> x509.Certificate:
    """Parse the client certificate the TLS terminator forwarded (MTLS-06).

    Accepted forms, told apart by their first character:

    - PEM, as Authlete's backend API field ``clientCertificate`` carries it;
    - PEM percent-encoded, as nginx's ``$ssl_client_escaped_cert`` produces it (``%`` is never part
      of PEM, so its presence means percent-encoding; ``+`` stays ``+``: nginx encodes it as ``%2B``);
    - an RFC 9440 ``Client-Cert`` value: the DER certificate as a Structured Field Byte Sequence,
      ``:BASE64:``. RFC 8941 §3.3.5: "parsers SHOULD NOT fail when "=" padding is not present";
    - bare base64 DER, as authlete-python-django forwards an RFC 9440 value, or a PEM body without its
      armour (line breaks allowed).

    The value must hold exactly one certificate. Values over ``MAX_CLIENT_CERTIFICATE_CHARS`` are
    refused before any decoding. Extensions are parsed here so that a malformed one fails now, as an
    unparsable certificate, rather than later in a matching rule.
    """
    if len(value) > MAX_CLIENT_CERTIFICATE_CHARS:
        raise _invalid_client(f"the client certificate is larger than {MAX_CLIENT_CERTIFICATE_CHARS} characters")
    text = value.strip()
    try:
        if "%" in text:
            text = unquote(text, errors="strict").strip()
        if text.startswith(_PEM_BEGIN) and text.count("-----BEGIN") == 1:
            certificate = x509.load_pem_x509_certificate(text.encode("ascii"))
        elif (match := _SF_BINARY.fullmatch(text)) is not None:
            certificate = x509.load_der_x509_certificate(_base64_decoded(match.group(1)))
        elif _BARE_BASE64.fullmatch(text) is not None:
            certificate = x509.load_der_x509_certificate(_base64_decoded("".join(text.split())))
        else:
            raise _invalid_client(_UNPARSABLE)
        certificate.subject  # noqa: B018 - cryptography parses these lazily; force it here
        certificate.extensions  # noqa: B018
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        # binascii.Error, UnicodeError and cryptography's parse errors are all ValueErrors.
        raise _invalid_client(_UNPARSABLE) from None
    return certificate


def _base64_decoded(encoded: str) -> bytes:
    """Standard base64, padding optional (RFC 8941 §3.3.5)."""
    unpadded = encoded.rstrip("=")
    return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)


@dataclass(frozen=True, slots=True)
class TlsClientAuthRegistration:
    """The RFC 8705 §2.1.2 client metadata of a ``tls_client_auth`` client: ``TLS_CLIENT_AUTH_METADATA``,
    named without their common prefix. An empty or blank string counts as unset."""

    subject_dn: str | None = None
    san_dns: str | None = None
    san_uri: str | None = None
    san_ip: str | None = None
    san_email: str | None = None


def verify_tls_client_auth(cert: x509.Certificate, registration: TlsClientAuthRegistration, *, now: datetime) -> None:
    """Check a ``tls_client_auth`` (PKI) certificate against the client's registration (MTLS-02, MTLS-03).

    RFC 8705 §2.1.2: "A client using the tls_client_auth authentication method MUST use exactly one of
    the below metadata parameters to indicate the certificate subject value that the authorization
    server is to expect when authenticating the respective client." A registration with none or
    several is refused as misconfigured rather than guessed at.

    Chain validation (RFC 8705 §2.1: "It relies on a validated certificate chain [RFC5280]") is the TLS
    terminator's job; see the module docstring. Here: the validity period, then the one attribute.

    - ``subject_dn``: see ``_verify_subject_dn`` for the comparison and what the registered order means.
    - ``san_dns``: "an expected dNSName SAN entry", compared ASCII case-insensitively (DNS names are,
      RFC 4343) and literally: a registered ``*.example.com`` matches only a ``*.example.com`` entry.
    - ``san_uri``: "an expected uniformResourceIdentifier SAN entry", compared exactly (RFC 3986 §6.2.1
      simple string comparison).
    - ``san_ip``: "Per Section 8 of [RFC5952], the IP address comparison of the value in this parameter
      and the SAN entry in the certificate is to be done in binary format." So ``::1`` equals
      ``0:0:0:0:0:0:0:1``; an IPv4 address does not equal its IPv4-mapped IPv6 form.
    - ``san_email``: "an expected rfc822Name SAN entry"; the domain compares case-insensitively, the
      local part exactly (RFC 5280 §7.5 treats the local part as case-sensitive).
    """
    chosen = [(f.name, v) for f in fields(registration) if (v := getattr(registration, f.name)) and v.strip()]
    if len(chosen) != 1:
        names = ", ".join(_REGISTRATION_FIELD_NAMES[name] for name, _ in chosen) or "none"
        raise _invalid_client(
            f"tls_client_auth needs exactly one of {', '.join(TLS_CLIENT_AUTH_FIELD_NAMES.values())} "
            f"(RFC 8705 2.1.2); the client has {names}"
        )
    _require_validity_period(cert, now)
    name, expected = chosen[0]
    field_name = _REGISTRATION_FIELD_NAMES[name]
    if name == "subject_dn":
        _verify_subject_dn(cert, expected)
        return
    san = _subject_alternative_name(cert)
    if san is None:
        raise _invalid_client(f"the client certificate has no subjectAltName extension to match {field_name}")
    if name == "san_dns":
        wanted = expected.strip().lower()
        matched = any(entry.lower() == wanted for entry in san.get_values_for_type(x509.DNSName))
    elif name == "san_uri":
        matched = expected.strip() in san.get_values_for_type(x509.UniformResourceIdentifier)
    elif name == "san_ip":
        try:
            address = ipaddress.ip_address(expected.strip())
        except ValueError:
            raise _invalid_client("tlsClientAuthSanIp is not an IPv4 or IPv6 address") from None
        matched = address in san.get_values_for_type(x509.IPAddress)
    else:
        wanted_email = _email_key(expected.strip())
        matched = any(_email_key(entry) == wanted_email for entry in san.get_values_for_type(x509.RFC822Name))
    if not matched:
        raise _invalid_client(f"no subjectAltName entry of the client certificate matches {field_name}")


def verify_self_signed_tls_client_auth(cert: x509.Certificate, jwks: dict[str, Any], *, now: datetime) -> None:
    """Check a ``self_signed_tls_client_auth`` certificate against the client's JWK Set (MTLS-02, MTLS-04).

    RFC 8705 §2.2: "In contrast to the PKI method, the client's certificate chain is not validated by
    the server in this case. The client is successfully authenticated if the certificate that it
    presented during the handshake matches one of the certificates configured or registered for that
    particular client." ``jwks`` is the registered ``jwks``, or the document ``jwks_uri`` pointed to.

    A JWK matches if its ``x5c[0]`` is the presented certificate (same DER), or if its public key is
    the certificate's public key (same SubjectPublicKeyInfo). The second lets a client renew a
    self-signed certificate for the same key pair without re-registering; the TLS handshake proved
    possession of that key, which is what either form of match establishes.

    Entries are skipped, not fatal: those of another key type than the certificate's; those with
    private key members (a client's JWK Set holds public keys only, so a private member is a
    registration error and the entry is not trusted); those joserfc cannot import; and those whose
    ``x5c[0]`` is unparsable or carries another key than the JWK's own members (RFC 7517 §4.7: "The key
    in the first certificate MUST match the public key represented by other members of the JWK.").
    """
    _require_validity_period(cert, now)
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise _invalid_client("the client's registered JWK Set has no keys array")
    try:
        cert_key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        raise _invalid_client("the client certificate's public key algorithm is not supported") from None
    kty = _jwk_key_type(cert_key)
    cert_spki = _spki(cert_key)
    if kty is None or cert_spki is None:
        raise _invalid_client("the client certificate's key is not RSA, EC or EdDSA, so no JWK can match it")
    cert_der = cert.public_bytes(Encoding.DER)
    candidates = unusable = 0
    for entry in keys:
        if not isinstance(entry, dict) or entry.get("kty") != kty:
            continue
        candidates += 1
        match = _jwk_matches(entry, cert_der, cert_spki)
        if match is None:
            unusable += 1
        elif match:
            return
    detail = f" ({unusable} of them unusable: private, malformed or inconsistent)" if unusable else ""
    raise _invalid_client(
        f"the client certificate matches none of the {candidates} {kty} keys in the client's JWK Set{detail}"
    )


def _jwk_matches(entry: dict[str, Any], cert_der: bytes, cert_spki: bytes) -> bool | None:
    """Whether one JWK matches the certificate; None if the JWK is unusable (see the caller)."""
    if jose.PRIVATE_KEY_MEMBERS & entry.keys():
        return None
    try:
        key_spki = _spki(JWKRegistry.import_key(cast(DictKey, entry)).public_key)
        first_der = _x5c_leaf_der(entry)
        if first_der is not None and _spki(x509.load_der_x509_certificate(first_der).public_key()) != key_spki:
            return None
    except (JoseError, UnsupportedAlgorithm, ValueError, TypeError, KeyError):  # KeyError: an unknown "crv"
        return None
    if key_spki is None:
        return None
    return first_der == cert_der or key_spki == cert_spki


def _require_validity_period(cert: x509.Certificate, now: datetime) -> None:
    """RFC 5280 §4.1.2.5: "The validity period for a certificate is the period of time from notBefore
    through notAfter, inclusive." Checked for both methods: a self-signed certificate has no chain
    validation that would catch expiry."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if now < cert.not_valid_before_utc:
        raise _invalid_client(
            f"the client certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
    if now > cert.not_valid_after_utc:
        raise _invalid_client(f"the client certificate expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


def _verify_subject_dn(cert: x509.Certificate, registered: str) -> None:
    """Match ``tlsClientAuthSubjectDn`` against the certificate's subject (MTLS-03).

    RFC 8705 §2.1.2: tls_client_auth_subject_dn is "A string representation -- as defined in
    [RFC4514] -- of the expected subject distinguished name of the certificate".

    What the registered string means: an RFC 4514 string, so RDNs in RFC 4514 §2.1 order: "starting
    with the last element of the sequence and moving backwards toward the first" -- the most specific
    RDN first, ``CN=client.example,O=Example,C=US``, which is what ``Name.rfc4514_string()`` (and
    Java's ``X500Principal.getName()``) print. Order is significant: DNs are ordered sequences, so
    ``C=US,O=Example,CN=client.example`` (the order ``openssl x509 -subject`` prints) names a
    different DN and does not match; the error says so, because that mistake is common.

    How the comparison works: ``cryptography``'s own parser is strict about spelling (upper-case
    keywords, no spaces), so a small RFC 4514 parser (``_parse_dn``) reads the registered string,
    and both sides become sequences of RDNs, each a set of (attribute OID, normalised value):

    - attribute types: keywords case-insensitively (``cn``, ``CN``), or dotted OIDs (``2.5.4.3``);
    - values: RFC 4514 escapes (``\\,``, ``\\C3\\BC``) and ``#`` BER hex strings are decoded, then
      RFC 4518-style preparation: NFKC, case folding, insignificant spaces removed (leading and
      trailing dropped, inner runs collapsed to one). Every attribute usual in a subject DN has a
      caseIgnore equality rule (RFC 4519, RFC 2985 for emailAddress), so case-insensitive is right;
    - multi-valued RDNs (``CN=a+UID=b``) compare as sets, in any order;
    - spaces around ``=``, ``,`` and ``+`` are tolerated (RFC 2253-era and OpenSSL output).

    The exact ``rfc4514_string()`` of the subject always matches, also for values the parser does not
    model (BIT STRING attributes).
    """
    if registered.strip() == cert.subject.rfc4514_string():
        return
    expected = _parse_dn(registered)
    if expected is None:
        raise _invalid_client("tlsClientAuthSubjectDn is not a valid RFC 4514 distinguished name")
    presented: _Dn = tuple(
        frozenset((attribute.oid.dotted_string, _normalise_dn_value(attribute.value)) for attribute in rdn)
        for rdn in reversed(cert.subject.rdns)
    )
    if expected == presented:
        return
    if len(expected) > 1 and expected == presented[::-1]:
        raise _invalid_client(
            "tlsClientAuthSubjectDn lists the RDNs in reverse order: RFC 4514 strings start with the most "
            "specific one, e.g. CN=...,O=...,C=..."
        )
    raise _invalid_client("the client certificate's subject DN does not match tlsClientAuthSubjectDn")


def _parse_dn(text: str) -> _Dn | None:
    """Parse an RFC 4514 string into RDNs in string order; None when it is not one (see above)."""
    rdns: list[_Rdn] = []
    attributes: list[tuple[str, str]] = []
    position = 0
    while True:
        equals = text.find("=", position)
        if equals < 0:
            return None
        attribute_type = text[position:equals].strip()
        if _NUMERIC_OID.fullmatch(attribute_type):
            oid = attribute_type
        elif (known := _DN_KEYWORDS.get(attribute_type.upper())) is not None:
            oid = known.dotted_string
        else:
            return None
        parsed = _parse_dn_value(text, equals + 1)
        if parsed is None:
            return None
        value, position = parsed
        attributes.append((oid, _normalise_dn_value(value)))
        if position == len(text) or text[position] == ",":
            rdns.append(frozenset(attributes))
            attributes = []
            if position == len(text):
                return tuple(rdns)
        position += 1  # past the "," or "+"


def _parse_dn_value(text: str, start: int) -> tuple[str, int] | None:
    """Read one attribute value from ``start``; return it and the index of the "," / "+" / end after it."""
    position = start
    while position < len(text) and text[position] == " ":
        position += 1
    if position < len(text) and text[position] == "#":
        end = position + 1
        while end < len(text) and text[end] not in ",+":
            end += 1
        decoded = _decode_ber_string(text[position + 1 : end].rstrip(" "))
        return None if decoded is None else (decoded, end)
    raw = bytearray()
    while position < len(text) and text[position] not in ",+":
        char = text[position]
        if char == "\\":
            pair = text[position + 1 : position + 3]
            if pair[:1] and pair[0] in _DN_ESCAPABLE:
                raw += pair[0].encode()
                position += 2
            elif len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                raw.append(int(pair, 16))
                position += 3
            else:
                return None
            continue
        if char in _DN_MUST_ESCAPE:
            return None
        raw += char.encode("utf-8", errors="surrogatepass")
        position += 1
    try:
        return raw.decode("utf-8"), position
    except UnicodeDecodeError:
        return None


def _decode_ber_string(hex_digits: str) -> str | None:
    """RFC 4514 §2.4: "#" followed by "the hexadecimal encoding of each of the octets of the BER
    encoding of the X.500 AttributeValue". Only the ASN.1 string types, in definite-length form."""
    try:
        octets = bytes.fromhex(hex_digits)
    except ValueError:
        return None
    if len(octets) < 2 or octets[0] not in _ASN1_STRING_CODECS:
        return None
    length, offset = octets[1], 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 2 or len(octets) < 2 + size:
            return None
        length, offset = int.from_bytes(octets[2 : 2 + size], "big"), 2 + size
    if len(octets) != offset + length:
        return None
    try:
        return octets[offset:].decode(_ASN1_STRING_CODECS[octets[0]])
    except UnicodeDecodeError:
        return None


def _normalise_dn_value(value: str | bytes) -> str:
    """RFC 4518 §2 string preparation, as far as it matters here: NFKC, case folding, insignificant
    space handling. BIT STRING values (bytes) are kept as ``#`` and their hex digits."""
    if isinstance(value, bytes):
        return "#" + value.hex()
    return " ".join(unicodedata.normalize("NFKC", value.casefold()).split())


def _subject_alternative_name(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _email_key(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain.lower()


def _jwk_key_type(key: object) -> str | None:
    """The RFC 7518 / RFC 8037 ``kty`` a JWK for this certificate key would have."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "OKP"
    return None


def _spki(key: object) -> bytes | None:
    """The DER SubjectPublicKeyInfo of a signature public key (equal iff the keys are); None for others."""
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return None


def _x5c_leaf_der(entry: Mapping[str, Any]) -> bytes | None:
    """RFC 7517 §4.7: x5c is "a JSON array of certificate value strings. Each string in the array is a
    base64-encoded (Section 4 of [RFC4648] -- not base64url-encoded) DER [ITU.X690.2008] PKIX
    certificate value." The first is the key's own certificate. Raises ValueError if malformed."""
    chain = entry.get("x5c")
    if chain is None:
        return None
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise ValueError("x5c must be a non-empty array of strings")
    return base64.b64decode(chain[0], validate=True)
