"""A thin layer over joserfc: the algorithms we accept and the verification calls we make."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import JWKRegistry, KeySet, OctKey
from joserfc.jws import extract_compact

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
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class JoseFailure(Exception):
    """A token that cannot be read or verified; the message is safe to show."""


class UnknownKeyId(JoseFailure):
    """The token names a ``kid`` the key set does not have (the client may have rotated its keys)."""


@dataclass(frozen=True, slots=True)
class VerifiedJwt:
    header: dict[str, Any]
    claims: dict[str, Any]


def unverified_header(token: str) -> dict[str, Any]:
    try:
        header = extract_compact(token.encode()).headers()
    except (JoseError, ValueError, UnicodeError) as error:
        raise JoseFailure("the JWT is malformed") from error
    if not isinstance(header.get("alg"), str):
        raise JoseFailure("the JWT header has no alg")
    return dict(header)


def unverified_claims(token: str) -> dict[str, Any]:
    """Claims read before verification, only to find out which client's keys to verify with."""
    try:
        claims = json.loads(extract_compact(token.encode()).payload)
    except (JoseError, ValueError, UnicodeError) as error:
        raise JoseFailure("the JWT is malformed") from error
    if not isinstance(claims, dict):
        raise JoseFailure("the JWT claims are not a JSON object")
    return claims


def public_key_set(jwks: dict[str, Any]) -> KeySet:
    """The asymmetric public keys of a client's JWKS. Symmetric keys and entries carrying private key
    material are not the client's public keys and are left out."""
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise JoseFailure("the client's JWKS has no keys array")
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ASYMMETRIC_KEY_TYPES or _PRIVATE_MEMBERS & set(entry):
            continue
        try:
            keys.append(JWKRegistry.import_key(entry))
        except (JoseError, ValueError, TypeError):
            continue  # one bad entry does not disable the others
    return KeySet(keys)


MAX_KEYS_TRIED = 10
_KEY_TYPE_BY_ALGORITHM_PREFIX = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def verify(token: str, key: KeySet | OctKey, algorithm: str) -> VerifiedJwt:
    """Verify the signature with exactly ``algorithm`` (chosen by policy, never by the token alone).

    Without a ``kid``, each key of the algorithm's type is tried in turn (at most ``MAX_KEYS_TRIED``),
    since a client with several keys need not name the one it used.
    """
    if isinstance(key, KeySet) and "kid" not in unverified_header(token) and len(key.keys) > 1:
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
