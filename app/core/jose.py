"""A thin layer over joserfc: the algorithms we accept and the verification calls we make."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
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
# RFC 9449 §11.1: "reject DPoP proof JWTs with unnecessarily large jti values"; the same bound serves every
# single-use JWT we remember (client assertions, DPoP proofs).
MAX_JTI_LENGTH = 256
_MEDIA_TYPE_PREFIX = "application/"  # see type_header_media_type


class JoseFailure(Exception):
    """A token that cannot be read or verified; the message is safe to show."""


class UnknownKeyId(JoseFailure):
    """The token names a ``kid`` the key set does not have (the client may have rotated its keys)."""


class PrivateKeyMaterial(JoseFailure):
    """A JWK that should be a public key holds private or secret key material."""


class TimeClaimFailure(JoseFailure):
    """A JWT whose time claims are ``malformed`` (missing or not a number), or whose validity window does
    not contain the current time."""

    def __init__(self, description: str, *, malformed: bool) -> None:
        super().__init__(description)
        self.malformed = malformed


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


def type_header_media_type(typ: str) -> str:
    """The media type a JWT's ``typ`` header names, lower-case and without the ``application/`` prefix, for
    comparison with an explicit type (RFC 8725 §3.11, "Use Explicit Typing"). RFC 7515 §4.1.9: "A
    recipient using the media type value MUST treat it as if "application/" were prepended to any "typ"
    value not containing a '/'"; media types compare case-insensitively."""
    media_type = typ.lower()
    return media_type[len(_MEDIA_TYPE_PREFIX) :] if media_type.startswith(_MEDIA_TYPE_PREFIX) else media_type


def jti_value(jti: Any) -> str | None:
    """The ``jti`` claim of a single-use JWT, or None when it is not a string of 1 to ``MAX_JTI_LENGTH``
    characters. RFC 7519 §4.1.7: "The "jti" (JWT ID) claim provides a unique identifier for the JWT"."""
    return jti if isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_LENGTH else None


def numeric_date(value: Any) -> float | None:
    """A JWT time claim as seconds, or None when it is none. RFC 7519 §2: "NumericDate: A JSON numeric
    value representing the number of seconds from 1970-01-01T00:00:00Z UTC": a number (not a boolean),
    finite and within the range of a double (``NaN``, ``1e400`` or a 400-digit integer is not a time)."""
    return json_input.finite_number(value)


@dataclass(frozen=True, slots=True)
class ValidityTimes:
    """The time claims of a JWT, as seconds since the epoch."""

    exp: float
    nbf: float | None
    iat: float | None


def check_validity_times(
    claims: dict[str, Any],
    *,
    subject: str,
    now: datetime,
    clock_skew: timedelta,
    order: tuple[str, str] = ("nbf", "iat"),
    require_nbf: bool = False,
) -> ValidityTimes:
    """Check ``exp`` (required), ``nbf`` (required with ``require_nbf``) and ``iat``; raise TimeClaimFailure.

    RFC 7519 §4.1.4: "The processing of the "exp" claim requires that the current date/time MUST be before
    the expiration date/time listed in the "exp" claim." §4.1.5: "The processing of the "nbf" claim
    requires that the current date/time MUST be after or equal to the not-before date/time listed in the
    "nbf" claim." Both: "Implementers MAY provide for some small leeway, usually no more than a few
    minutes, to account for clock skew" (``clock_skew``). An ``iat`` in the future is refused likewise.

    ``subject`` names the JWT in the messages ("the client assertion"); ``order`` is the order in which
    ``nbf`` and ``iat`` are read and checked, so it decides which one a message names when both fail.
    Bounds on the lifetime differ per kind of JWT and are the caller's.
    """
    skew = clock_skew.total_seconds()
    current = now.timestamp()
    times: dict[str, float] = {}
    for claim in ("exp", *order):
        value = claims.get(claim)
        if value is None:
            continue
        number = numeric_date(value)
        if number is None:
            raise TimeClaimFailure(f"{subject}'s {claim} claim must be a number", malformed=True)
        times[claim] = number
    for claim in ("exp", "nbf") if require_nbf else ("exp",):
        if claim not in times:
            raise TimeClaimFailure(f"{subject} needs an {claim} claim", malformed=True)
    if times["exp"] <= current - skew:
        raise TimeClaimFailure(f"{subject} has expired", malformed=False)
    for claim in order:
        if claim in times and times[claim] > current + skew:
            raise TimeClaimFailure(f"{subject}'s {claim} is in the future", malformed=False)
    return ValidityTimes(exp=times["exp"], nbf=times.get("nbf"), iat=times.get("iat"))


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
        raise PrivateKeyMaterial(f"holds private key material ({', '.join(private)})")
    try:
        key = JWKRegistry.import_key(entry)
    except (JoseError, ValueError, TypeError, LookupError) as error:
        raise JoseFailure("is not a valid RSA, EC or OKP public key") from error
    if key.is_private:
        raise PrivateKeyMaterial("holds private key material")
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
