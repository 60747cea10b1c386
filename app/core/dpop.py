"""DPoP proofs at the pushed authorization request endpoint (RFC 9449 §4.3, §8, §10.1; DPOP-01..11).

RFC 9449 §10.1: "the DPoP header can be added to the PAR request. In this case, the authorization
server MUST check the provided DPoP proof JWT as defined in Section 4.3. It MUST further behave as if
the contained public key's thumbprint was provided using dpop_jkt".  ``verify_dpop_proof`` is that
check and returns the thumbprint; the caller binds the pushed request to it (DPOP-03) and rejects a
``dpop_jkt`` that differs (DPOP-04): "the authorization server MUST reject the request if the JWK
Thumbprint in dpop_jkt does not match the public key in the DPoP header".

What stays with the caller, which sees the HTTP request and owns the storage:

- RFC 9449 §4.3 (1) "There is not more than one DPoP HTTP request header field."
- ``htu``: the URL the request was actually received at, so an mTLS endpoint alias is compared with
  itself (DPOP-11).
- Replay (DPOP-09): record ``replay_key(proof, htu)`` in the shared replay store until
  ``replay_expires_at(proof, policy)`` and refuse the proof when the key was already recorded.
- The ``DPoP-Nonce`` response header carrying ``UseDpopNonce.nonce`` (DPOP-07), exactly one of them.

Nonces are stateless (``DpopNonces``), so the nonce downgrade rule of RFC 9449 §11.3, "A server MUST
NOT accept any DPoP proofs without the nonce claim when a DPoP nonce has been provided to the client",
is kept by ``DpopPolicy.nonce_required``: a server that hands out nonces requires them of everyone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry, extract_compact

from app.core import jose, result_codes
from app.core.errors import InvalidDpopProof, InvalidRequest, OAuthError

DPOP_JWT_TYPE: Final = "dpop+jwt"
# The largest proof we parse. An RSA-4096 public key in the header is about 1 KiB of base64url; the
# claims of a proof at the PAR endpoint are a few hundred bytes.
MAX_PROOF_LENGTH: Final = 8 * 1024
# FAPI 2.0 Security Profile §5.4.1 (FAPI-13): "RSA keys shall have a minimum length of 2048 bits".
MIN_RSA_KEY_BITS: Final = 2048
# HMAC-SHA256 keys shorter than the hash output weaken it (RFC 2104 §3).
MIN_NONCE_KEY_BYTES: Final = 32

# RFC 7515 §7.1: BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature), which also rules
# out a JWE (five parts), whitespace, and several header values folded into one with commas.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# RFC 7638 with SHA-256: 32 bytes are 43 base64url characters; the last carries 4 bits, so its two low
# bits are zero and it is one of these 16 characters.
_JWK_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")
# RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_NONCE_LABEL = b"dpop-nonce:"
_NONCE_LENGTH = 43  # base64url of an HMAC-SHA256 output, unpadded


class UseDpopNonce(OAuthError):
    """RFC 9449 §8: "the authorization server responds to requests that do not include a nonce with an
    HTTP 400 (Bad Request) error response per Section 5.2 of [RFC6749] using use_dpop_nonce as the
    error code value. The authorization server includes a DPoP-Nonce HTTP header in the response
    supplying a nonce value to be used when sending the subsequent request. ... This same error code is
    used when supplying a new nonce value when there was a nonce mismatch."

    ``nonce`` is that ``DPoP-Nonce`` value; "there MUST NOT be more than one DPoP-Nonce header".
    """

    error = "use_dpop_nonce"
    status_code = 400
    default_result_code = result_codes.DPOP_NONCE_REQUIRED

    def __init__(self, description: str, *, nonce: str, result_code: str | None = None) -> None:
        super().__init__(description, result_code=result_code)
        self.nonce = nonce


@dataclass(frozen=True, slots=True)
class DpopPolicy:
    """The acceptance window for ``iat`` and whether server nonces are required.

    RFC 9449 §11.1: "servers MUST only accept DPoP proofs for a limited time after their creation"
    (``max_age``) and "the server MAY accept DPoP proofs that carry an iat time in the reasonably near
    future" (``clock_skew``; FAPI-11: at least 10 s, never more than 60 s).
    """

    clock_skew: timedelta
    max_age: timedelta
    nonce_required: bool


@dataclass(frozen=True, slots=True)
class DpopProof:
    """A verified proof: the RFC 7638 SHA-256 thumbprint of its key (base64url), its jti and iat."""

    jkt: str
    jti: str
    iat: datetime


class DpopNonces:
    """Server nonces that every replica issues and accepts alike, with no shared state.

    A nonce is HMAC-SHA256(key, index of the current time window), base64url: RFC 9449 §8 "Nonce
    values MUST be unpredictable", and these cannot be predicted or forged without the key. Windows
    are ``lifetime`` long and a nonce is accepted in its own window and the next, so it stays valid for
    between 1x and 2x ``lifetime`` after it is issued. Every replica sharing the key computes the same
    nonce for the same window, and all clients get the same nonce within a window; RFC 9449 §11.1:
    "it is acceptable for clients to use the same nonce multiple times and for the server to accept the
    same nonce multiple times".
    """

    __slots__ = ("_key", "_window_seconds")

    def __init__(self, key: bytes, *, lifetime: timedelta) -> None:
        if len(key) < MIN_NONCE_KEY_BYTES:
            raise ValueError(f"the DPoP nonce key must be at least {MIN_NONCE_KEY_BYTES} bytes")
        if lifetime < timedelta(seconds=1):
            raise ValueError("the DPoP nonce lifetime must be at least one second")
        self._key = key
        self._window_seconds = lifetime.total_seconds()

    def issue(self, now: datetime) -> str:
        """The nonce of the current window."""
        return self._nonce_for(self._window_index(now))

    def is_valid(self, nonce: str, now: datetime) -> bool:
        """Whether ``nonce`` is the current window's or the previous one's (compared in constant time).

        RFC 9449 §8: "If the nonce claim in the DPoP proof does not exactly match a nonce recently
        supplied by the authorization server to the client, the authorization server MUST reject the
        request."
        """
        if len(nonce) != _NONCE_LENGTH or not nonce.isascii():
            return False
        presented = nonce.encode()
        index = self._window_index(now)
        current = hmac.compare_digest(presented, self._nonce_for(index).encode())
        previous = hmac.compare_digest(presented, self._nonce_for(index - 1).encode())
        return current or previous

    def _window_index(self, now: datetime) -> int:
        return math.floor(now.timestamp() / self._window_seconds)

    def _nonce_for(self, index: int) -> str:
        message = _NONCE_LABEL + index.to_bytes(8, "big", signed=True)
        return _base64url(hmac.new(self._key, message, hashlib.sha256).digest())


class _ProofRegistry(JWSRegistry):
    """joserfc's JWS registry with room for a ``jwk`` header and open to other header parameters.

    joserfc's 512-byte default header limit is less than an RSA-2048 public key; 4 KiB also holds an
    RSA-2048 private key, so that one is refused for what it is. RFC 9449 §4.2: "A DPoP proof MAY
    contain other JOSE Header Parameters or claims as defined by extension, profile, or
    deployment-specific requirements." Unknown ``crit`` parameters are still refused (RFC 7515
    §4.1.11).
    """

    max_header_length = 4096
    max_payload_length = 4096

    def __init__(self, algorithm: str | None = None) -> None:
        super().__init__(algorithms=None if algorithm is None else [algorithm], strict_check_header=False)


def verify_dpop_proof(
    proof: str, *, htm: str, htu: str, policy: DpopPolicy, nonces: DpopNonces, now: datetime
) -> DpopProof:
    """Check a DPoP proof per RFC 9449 §4.3 (DPOP-02, DPOP-05..08); raise InvalidDpopProof or UseDpopNonce.

    RFC 9449 §4.3: "To validate a DPoP proof, the receiving server MUST ensure the following" (items 2
    to 11; item 1 is the caller's). The nonce comes last, so that ``UseDpopNonce`` means the proof was
    otherwise acceptable and a retry with the new nonce will succeed. Replay is the caller's: see
    ``replay_key``.
    """
    header = _read_header(proof)
    _check_type(header.get("typ"))
    algorithm = _check_algorithm(header["alg"])
    key = _public_key(header.get("jwk"))
    claims = _verify_signature(proof, key, algorithm)
    jti = _check_jti(claims.get("jti"))
    _check_method(claims.get("htm"), htm)
    _check_target_uri(claims.get("htu"), htu)
    issued_at = _check_issued_at(claims.get("iat"), policy, now)
    _check_nonce(claims.get("nonce"), policy, nonces, now)
    return DpopProof(jkt=key.thumbprint(), jti=jti, iat=issued_at)


def replay_key(proof: DpopProof, htu: str) -> str:
    """The key under which the caller records this proof in its replay store.

    RFC 9449 §11.1: "In the context of the target URI, servers can store the jti value of each DPoP
    proof for the time window in which the respective DPoP proof JWT would be accepted" and "a server
    that is tracking jti values should reject DPoP proof JWTs with unnecessarily large jti values or
    store only a hash thereof". Keyed by the key thumbprint too, so one client cannot use up another's
    jti values.
    """
    target = _normalise_uri(htu) or htu
    return hashlib.sha256(f"dpop:{proof.jkt}:{proof.jti}:{target}".encode()).hexdigest()


def replay_expires_at(proof: DpopProof, policy: DpopPolicy) -> datetime:
    """Until when to remember ``replay_key``: the end of "the time window in which the respective DPoP
    proof JWT would be accepted" (RFC 9449 §11.1), as ``verify_dpop_proof`` checks ``iat``."""
    return proof.iat + policy.max_age + policy.clock_skew


def validate_dpop_jkt(value: str) -> str:
    """Validate the ``dpop_jkt`` authorization request parameter (DPOP-01); raise InvalidRequest.

    RFC 9449 §10: "The value of the dpop_jkt authorization request parameter is the JWK Thumbprint
    [RFC7638] of the proof-of-possession public key using the SHA-256 hash function": 32 bytes in
    base64url, 43 characters.
    """
    if not _JWK_THUMBPRINT.fullmatch(value):
        raise InvalidRequest("dpop_jkt must be a base64url SHA-256 JWK thumbprint (RFC 7638) of 43 characters")
    return value


def _read_header(proof: str) -> dict[str, Any]:
    """RFC 9449 §4.3 (2): "The DPoP HTTP request header field value is a single and well-formed JWT",
    bounded in size before any decoding."""
    if len(proof) > MAX_PROOF_LENGTH or not _COMPACT_JWS.fullmatch(proof):
        raise InvalidDpopProof("the DPoP header must be a single well-formed JWT")
    try:
        jose.read_compact(proof)  # safe JSON (app.core.json_input) before joserfc parses it
    except jose.JoseFailure as error:
        raise InvalidDpopProof(f"the DPoP header must be a single well-formed JWT ({error})") from None
    try:
        header = dict(extract_compact(proof.encode(), registry=_ProofRegistry()).headers())
    except (JoseError, ValueError, UnicodeError) as error:
        raise InvalidDpopProof("the DPoP header must be a single well-formed JWT") from error
    if not isinstance(header.get("alg"), str):
        raise InvalidDpopProof("the DPoP proof's header has no alg")
    return header


def _check_type(value: Any) -> None:
    """RFC 9449 §4.3 (4): "The typ JOSE Header Parameter has the value dpop+jwt." (and §11.5: "to ensure
    that adversaries cannot use JWTs created for other purposes"). RFC 7515 §4.1.9: media type values
    are case insensitive and the "application/" prefix may be present."""
    if not isinstance(value, str) or jose.type_header_media_type(value) != DPOP_JWT_TYPE:
        raise InvalidDpopProof(f"the DPoP proof's typ header must be {DPOP_JWT_TYPE}")


def _check_algorithm(algorithm: str) -> str:
    """RFC 9449 §4.3 (5): "The alg JOSE Header Parameter indicates a registered asymmetric digital
    signature algorithm [IANA.JOSE.ALGS], is not none, is supported by the application, and is
    acceptable per local policy." §4.2: "It MUST NOT be none or an identifier for a symmetric algorithm
    (Message Authentication Code (MAC))."
    """
    if algorithm not in jose.ASYMMETRIC_ALGORITHMS:
        raise InvalidDpopProof(f"the DPoP proof's alg {algorithm[:20]} is not an accepted asymmetric algorithm")
    return algorithm


def _public_key(jwk: Any) -> Key:
    """RFC 9449 §4.2: "jwk: Represents the public key chosen by the client in JSON Web Key (JWK) [RFC7517]
    format ... It MUST NOT contain a private key." §4.3 (7): "The jwk JOSE Header Parameter does not
    contain a private key." Plus FAPI-13's minimum RSA key size."""
    if not isinstance(jwk, dict):
        raise InvalidDpopProof("the DPoP proof's header needs a jwk holding the public key")
    if jwk.get("kty") not in jose.ASYMMETRIC_KEY_TYPES:
        raise InvalidDpopProof("the DPoP proof's jwk must be an RSA, EC or OKP public key")
    if jose.PRIVATE_KEY_MEMBERS & jwk.keys():
        raise InvalidDpopProof("the DPoP proof's jwk must not contain a private key")
    if jwk["kty"] == "RSA" and _modulus_bits(jwk.get("n")) < MIN_RSA_KEY_BITS:
        # Checked before joserfc imports the key, which would warn about a short one.
        raise InvalidDpopProof(f"the DPoP proof's jwk must be an RSA key of at least {MIN_RSA_KEY_BITS} bits")
    try:
        return jose.import_public_jwk(jwk)
    except jose.PrivateKeyMaterial as error:
        raise InvalidDpopProof("the DPoP proof's jwk must not contain a private key") from error
    except jose.JoseFailure as error:
        raise InvalidDpopProof("the DPoP proof's jwk is not a valid public key") from error


def _modulus_bits(modulus: Any) -> int:
    """The size of an RSA JWK's ``n`` (RFC 7518 §6.3.1.1, base64urlUInt); 0 when it is none."""
    if not isinstance(modulus, str):
        return 0
    try:
        return int.from_bytes(base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))).bit_length()
    except ValueError:
        return 0


def _verify_signature(proof: str, key: Key, algorithm: str) -> dict[str, Any]:
    """RFC 9449 §4.3 (6): "The JWT signature verifies with the public key contained in the jwk JOSE
    Header Parameter." Verified with exactly the header's ``alg``, already checked against policy."""
    try:
        token = jwt.decode(proof, key, algorithms=[algorithm], registry=_ProofRegistry(algorithm))
    except BadSignatureError as error:
        raise InvalidDpopProof("the DPoP proof's signature does not verify with its jwk") from error
    except (JoseError, ValueError, TypeError) as error:
        raise InvalidDpopProof("the DPoP proof cannot be verified with its jwk and alg") from error
    return dict(token.claims)


def _check_jti(jti: Any) -> str:
    """RFC 9449 §4.3 (3): "All required claims per Section 4.2 are contained in the JWT"; §4.2: "jti:
    Unique identifier for the DPoP proof JWT"; §11.1: "reject DPoP proof JWTs with unnecessarily large
    jti values"."""
    value = jose.jti_value(jti)
    if value is None:
        raise InvalidDpopProof(f"the DPoP proof needs a jti claim of 1 to {jose.MAX_JTI_LENGTH} characters")
    return value


def _check_method(claimed: Any, htm: str) -> None:
    """RFC 9449 §4.3 (8): "The htm claim matches the HTTP method of the current request." HTTP methods
    are case sensitive (RFC 9110 §9.1)."""
    if claimed != htm:
        raise InvalidDpopProof(f"the DPoP proof's htm claim must be {htm}")


def _check_target_uri(claimed: Any, htu: str) -> None:
    """RFC 9449 §4.3 (9): "The htu claim matches the HTTP URI value for the HTTP request in which the JWT
    was received, ignoring any query and fragment parts." and "servers SHOULD employ syntax-based
    normalization (Section 6.2.2 of [RFC3986]) and scheme-based normalization (Section 6.2.3 of
    [RFC3986]) before comparing the htu claim"."""
    normalised = _normalise_uri(claimed) if isinstance(claimed, str) else None
    if normalised is None:
        raise InvalidDpopProof("the DPoP proof needs an htu claim holding an absolute http(s) URI")
    if normalised != _normalise_uri(htu):
        raise InvalidDpopProof("the DPoP proof's htu claim does not match the URI of this request")


def _check_issued_at(iat: Any, policy: DpopPolicy, now: datetime) -> datetime:
    """RFC 9449 §4.3 (11): "The creation time of the JWT, as determined by either the iat claim or a
    server managed timestamp via the nonce claim, is within an acceptable window (see Section 11.1)."
    The window is [now - max_age - clock_skew, now + clock_skew] (DPOP-09, FAPI-11)."""
    issued = jose.numeric_date(iat)
    if issued is None:
        raise InvalidDpopProof("the DPoP proof needs an iat claim holding a number")
    current = now.timestamp()
    skew = policy.clock_skew.total_seconds()
    if issued > current + skew:
        raise InvalidDpopProof("the DPoP proof's iat is in the future")
    if issued < current - policy.max_age.total_seconds() - skew:
        raise InvalidDpopProof("the DPoP proof is too old (iat)")
    return datetime.fromtimestamp(issued, tz=now.tzinfo)


def _check_nonce(nonce: Any, policy: DpopPolicy, nonces: DpopNonces, now: datetime) -> None:
    """RFC 9449 §4.3 (10): "If the server provided a nonce value to the client, the nonce claim matches
    the server-provided nonce value." §8: "the authorization server responds to requests that do not
    include a nonce with an HTTP 400 (Bad Request) error response ... using use_dpop_nonce" and "If the
    nonce claim in the DPoP proof does not exactly match a nonce recently supplied by the authorization
    server to the client, the authorization server MUST reject the request. The rejection response MAY
    include a DPoP-Nonce HTTP header providing a new nonce value". A nonce the client sends is checked
    even when none is required (DPOP-08)."""
    if nonce is None:
        if policy.nonce_required:
            raise UseDpopNonce("Authorization server requires nonce in DPoP proof", nonce=nonces.issue(now))
        return
    if not isinstance(nonce, str):
        raise InvalidDpopProof("the DPoP proof's nonce claim must be a string")
    if not nonces.is_valid(nonce, now):
        raise UseDpopNonce("the DPoP proof's nonce is not a current nonce of this server", nonce=nonces.issue(now))


def _normalise_uri(uri: str) -> str | None:
    """``uri`` without query and fragment, after RFC 3986 §6.2.2 syntax-based normalisation (case of the
    scheme, host and percent-encodings; decoding of unreserved characters; dot segments) and §6.2.3
    scheme-based normalisation (default port, empty path); None when it is no absolute http(s) URI."""
    if not uri.isascii() or any(char <= " " or char == "\x7f" for char in uri):
        return None  # urlsplit would silently drop tabs and newlines
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    authority = (userinfo + "@" if userinfo else "") + (f"[{host}]" if ":" in host else host)
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        authority += f":{port}"
    path = _remove_dot_segments(_PERCENT_ENCODED.sub(_normalise_percent_encoding, parts.path)) or "/"
    return f"{scheme}://{authority}{path}"


def _normalise_percent_encoding(match: re.Match[str]) -> str:
    """RFC 3986 §6.2.2.1 uppercase hexadecimal digits and §6.2.2.2 decoded unreserved characters."""
    character = chr(int(match.group(1), 16))
    return character if character in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 (by way of §6.2.2.3): "." and ".." segments resolved. ``path`` follows an
    authority, so it is empty or starts with "/"."""
    if not path:
        return path
    segments = path.split("/")[1:]
    output: list[str] = []
    for segment in segments:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if segments[-1] in (".", ".."):
        output.append("")  # "/a/b/.." is "/a/"
    return "/" + "/".join(output)


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
