"""A thin layer over joserfc: the algorithms we accept and the verification calls we make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import JWKRegistry, Key, KeySet, OctKey
from joserfc.util import urlsafe_b64decode

from app.core import json_input

# RFC 7518 §3.1 minus "none"; EdDSA (RFC 8037) and its fully specified Ed25519 name (RFC 9864).
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)
SYMMETRIC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
# RFC 7518 §6.2.2, §6.3.2, §6.4 and RFC 8037 §2: the JWK members that hold private or secret key material.
PRIVATE_KEY_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class JoseFailure(Exception):
    """A token that cannot be read or verified; the message is safe to show."""


class UnknownKeyId(JoseFailure):
    """The token names a ``kid`` the key set does not have (the client may have rotated its keys)."""


@dataclass(frozen=True, slots=True)
class VerifiedJwt:
    header: dict[str, Any]
    claims: dict[str, Any]


def read_compact(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWT, read with ``app.core.json_input`` (no NaN, NUL, unpaired
    surrogate or deep nesting) before joserfc parses the same text: RFC 7519 §7.2 (3)-(4), (9)-(10):
    the decoded header and claims "MUST be ... completely valid JSON"."""
    parts = token.split(".")
    if len(parts) != 3:  # RFC 7515 §7.1; five parts would be a JWE, which we never decrypt
        raise JoseFailure("the JWT is malformed")
    header_segment, payload_segment, _ = parts
    try:
        header = json_input.loads(urlsafe_b64decode(header_segment.encode("ascii")))
        claims = json_input.loads(urlsafe_b64decode(payload_segment.encode("ascii")))
    except json_input.JsonInputError as error:
        raise JoseFailure(f"the JWT is malformed: {error}") from error
    except ValueError as error:  # binascii.Error and UnicodeError are ValueErrors
        raise JoseFailure("the JWT is malformed") from error
    if not isinstance(header, dict):
        raise JoseFailure("the JWT header is not a JSON object")
    if not isinstance(claims, dict):
        raise JoseFailure("the JWT claims are not a JSON object")
    return header, claims


def unverified_header(token: str) -> dict[str, Any]:
    header, _ = read_compact(token)
    if not isinstance(header.get("alg"), str):
        raise JoseFailure("the JWT header has no alg")
    return header


def unverified_claims(token: str) -> dict[str, Any]:
    """Claims read before verification, only to find out which client's keys to verify with."""
    return read_compact(token)[1]


def numeric_date(value: Any) -> float | None:
    """A JWT time claim as seconds, or None when it is none. RFC 7519 §2: "NumericDate: A JSON numeric
    value representing the number of seconds from 1970-01-01T00:00:00Z UTC": a number (not a boolean),
    finite and within the range of a double (``NaN``, ``1e400`` or a 400-digit integer is not a time)."""
    return json_input.finite_number(value)


def import_public_jwk(entry: Any) -> Key:
    """One JWK of a client's key set as a public key. RFC 7591 §2: "jwks: Client's JSON Web Key Set
    [RFC7517] document value, which contains the client's public keys": a symmetric key, private key
    material or a key that does not import (a point off its curve, a missing member, an unknown ``kty``)
    is refused. The message never quotes key material."""
    if not isinstance(entry, dict):
        raise JoseFailure("is not a JSON object")
    if entry.get("kty") == "oct":
        raise JoseFailure("is a symmetric (oct) key, not a public key")
    private = sorted(PRIVATE_KEY_MEMBERS & entry.keys())
    if private:
        raise JoseFailure(f"holds private key material ({', '.join(private)})")
    try:
        key = JWKRegistry.import_key(entry)
    except (JoseError, ValueError, TypeError, LookupError) as error:
        raise JoseFailure("is not a valid RSA, EC or OKP public key") from error
    if key.is_private:
        raise JoseFailure("holds private key material")
    return key


def public_key_set(jwks: dict[str, Any]) -> KeySet:
    """The asymmetric public keys of a client's JWKS. Entries that ``import_public_jwk`` refuses (which
    a JWKS fetched from ``jwks_uri`` may still hold) are not the client's public keys and are left out,
    so one bad entry does not disable the others."""
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise JoseFailure("the client's JWKS has no keys array")
    keys = []
    for entry in entries:
        try:
            keys.append(import_public_jwk(entry))
        except JoseFailure:
            continue
    return KeySet(keys)


MAX_KEYS_TRIED = 10
_KEY_TYPE_BY_ALGORITHM_PREFIX = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def verify(token: str, key: KeySet | OctKey, algorithm: str) -> VerifiedJwt:
    """Verify the signature with exactly ``algorithm`` (chosen by policy, never by the token alone).

    Without a ``kid``, each key of the algorithm's type is tried in turn (at most ``MAX_KEYS_TRIED``),
    since a client with several keys need not name the one it used.
    """
    header = unverified_header(token)  # joserfc then parses text already known to be safe JSON
    if isinstance(key, KeySet) and "kid" not in header and len(key.keys) > 1:
        key_type = _KEY_TYPE_BY_ALGORITHM_PREFIX.get(algorithm[:2])
        for candidate in [k for k in key.keys if k.key_type == key_type][:MAX_KEYS_TRIED]:
            try:
                return _verify_with(token, candidate, algorithm)
            except JoseFailure:
                continue
        raise JoseFailure("the JWT signature does not verify with any of the client's keys")
    return _verify_with(token, key, algorithm)


def _verify_with(token: str, key: Any, algorithm: str) -> VerifiedJwt:
    try:
        decoded = jwt.decode(token, key, algorithms=[algorithm])
    except InvalidKeyIdError as error:
        raise UnknownKeyId("no key of the client matches the JWT's kid") from error
    except BadSignatureError as error:
        raise JoseFailure("the JWT signature is invalid") from error
    except (JoseError, ValueError, TypeError) as error:
        raise JoseFailure("the JWT cannot be verified with the client's keys") from error
    return VerifiedJwt(header=dict(decoded.header), claims=dict(decoded.claims))


def symmetric_key(secret: str) -> OctKey:
    return OctKey.import_key(secret.encode())
