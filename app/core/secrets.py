"""Server-generated secrets and their keyed hashes.

Client secrets and service access tokens are generated here with 256 bits of entropy, so a keyed
fast hash (HMAC-SHA256 under a pepper kept outside the database) is the right storage: RFC 6819
§5.1.4.2.2 "Use High Entropy for Secrets"; a slow password hash would cap a core at a few pushes per
second (bcrypt at its default cost spends a good part of a second on each check: bench/RESULTS.md,
"Figures behind the code's choices"). The passlib ``CryptContext`` is the one place that knows every
stored format: hashes imported from another server (bcrypt as in ORY Hydra, pbkdf2_sha256 in passlib's or
Django's format) verify, within a cost bound, and are replaced by the keyed hash on the client's first
successful authentication.

A secret a client brings along (an existing client adopting this server) is accepted only if it could
have been generated: ``client_secret_problem``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import string
import warnings
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from passlib.context import CryptContext
from passlib.exc import PasslibHashWarning
from passlib.utils import handlers

# Letters and digits only: RFC 6749 §2.3.1 clients form-encode the secret before Basic-encoding it, and
# some authorization servers forward it undecoded, so a secret must read the same either way.
CLIENT_SECRET_PREFIX = "parcs"
CLIENT_SECRET_ALPHABET = string.ascii_letters + string.digits
CLIENT_SECRET_RANDOM_CHARS = 43  # 43 * log2(62) > 256 bits
SERVICE_TOKEN_PREFIX = "par_sat_"
SECRET_ENTROPY_BYTES = 32  # 256 bits
# RFC 6819 §5.1.4.2.2 "Use High Entropy for Secrets"; 128 bits is the floor for a secret that a keyed
# fast hash may protect (FAPI 2.0 asks as much of its random values).
MIN_SECRET_ENTROPY_BITS = 128
# 32 random hex digits use fewer than 8 distinct ones with a probability below 10**-9.
MIN_DISTINCT_CHARACTERS = 8
# A run this long seen earlier in a secret is a repeat: four characters, so that 32 random hex digits
# (where a repeated run of four comes up once in 150 secrets) still reach 128 bits.
_REPEAT_RUN = 4
# Printable ASCII without the space: what survives the Basic header and form encoding of every client.
SECRET_CHARACTERS = frozenset(string.ascii_letters + string.digits + string.punctuation)
_CHARACTER_CLASSES = (
    frozenset(string.ascii_lowercase),
    frozenset(string.ascii_uppercase),
    frozenset(string.digits),
    frozenset(string.punctuation),
)
# The hash formats an imported secret may come in, by passlib scheme name.
IMPORTED_HASH_SCHEMES = ("bcrypt", "pbkdf2_sha256", "django_pbkdf2_sha256")
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
# What a client's stored hash may take (the column's width): bcrypt is 60 characters, a pbkdf2_sha256
# hash with a long salt about 100; our keyed hash 81.
MAX_STORED_HASH_LENGTH = 200
_BCRYPT_PREFIX = "$2"
_BCRYPT_IDENTS = frozenset({"$2a$", "$2b$", "$2y$"})
BCRYPT_MAX_SECRET_BYTES = 72


def _keyed_handler(pepper: bytes) -> type[handlers.StaticHandler]:
    """A passlib handler for HMAC-SHA256 under this pepper (a class per pepper, no global registry)."""

    class HmacSha256(handlers.StaticHandler):  # type: ignore[misc]
        name = "par_hmac_sha256"
        _hash_prefix = "$par-hmac-sha256$"
        checksum_chars = handlers.HEX_CHARS
        checksum_size = 64

        def _calc_checksum(self, secret: str | bytes) -> str:
            data = secret.encode() if isinstance(secret, str) else secret
            return hmac.new(pepper, data, hashlib.sha256).hexdigest()

    return HmacSha256


def client_secret_problem(secret: str, *, min_length: int, max_length: int) -> str | None:
    """Why a client secret chosen elsewhere is too weak to be protected by a keyed fast hash, or None.

    The entropy estimate credits each character with the size of the character classes the secret
    draws on (lower case, upper case, digits, punctuation), but never more than twice the number of
    distinct characters it uses, of which it needs ``MIN_DISTINCT_CHARACTERS``. Only new characters
    earn credit: one that ends a run of ``_REPEAT_RUN`` characters already seen earlier in the secret
    adds nothing, so a padded word (``Password1!aaaa...``) or a repeated pattern (``abcdefgh`` four
    times) is refused however long it is, while 32 random hex digits (128 bits) are accepted."""
    if not min_length <= len(secret) <= max_length:
        return f"the client secret must be {min_length} to {max_length} characters long"
    if not set(secret) <= SECRET_CHARACTERS:
        return "the client secret must consist of printable ASCII characters other than the space"
    alphabet = sum(len(chars) for chars in _CHARACTER_CLASSES if chars & set(secret))
    distinct = len(set(secret))
    runs = {secret[i : i + _REPEAT_RUN] for i in range(len(secret) - _REPEAT_RUN + 1)}
    new_characters = len(runs) + _REPEAT_RUN - 1
    bits = new_characters * math.log2(min(alphabet, distinct * 2))
    if bits < MIN_SECRET_ENTROPY_BITS or distinct < MIN_DISTINCT_CHARACTERS:
        return (
            f"the client secret is too predictable (about {int(bits)} bits; at least {MIN_SECRET_ENTROPY_BITS} "
            "are required): use a longer random value"
        )
    return None


class UnusableHash(ValueError):
    """An imported client secret hash this server will not store (its message says why)."""


@dataclass(frozen=True, slots=True)
class HashCostLimits:
    """The highest cost an imported hash may have: verifying it is paid on every authentication until
    the first success replaces it, and a wrong secret costs as much as a right one."""

    max_bcrypt_cost: int
    max_pbkdf2_rounds: int


class SecretHasher:
    """Hashes and verifies machine secrets; derives lookup digests for bearer tokens."""

    def __init__(self, pepper: bytes) -> None:
        if not pepper:
            raise ValueError("a pepper is required")
        # HMAC under the pepper with its key already absorbed: each verification copies it (a third cheaper).
        self._keyed = hmac.new(pepper, digestmod=hashlib.sha256)
        keyed = _keyed_handler(pepper)
        self._own_prefix: str = keyed._hash_prefix
        self._context = CryptContext(
            schemes=[keyed, *IMPORTED_HASH_SCHEMES],
            default="par_hmac_sha256",
            deprecated="auto",
        )
        # Verified against when the client is unknown, so both branches cost the same.
        self._decoy_hash = self.hash(secrets.token_urlsafe(SECRET_ENTROPY_BYTES))

    def hash(self, secret: str) -> str:
        return str(self._context.hash(secret))

    def verify(self, secret: str, stored_hash: str | None) -> bool:
        """Constant-time verification; an absent or unreadable hash verifies nothing.

        Our own format is checked here: the same HMAC as its passlib handler, without the context's
        scheme lookup and checksum parsing, which cost five times the HMAC on every push (bench/RESULTS.md,
        "What bounds it"). Every other format goes through the ``CryptContext``."""
        checked = stored_hash or self._decoy_hash  # an unknown client costs what a known one does
        if checked.startswith(self._own_prefix):
            keyed = self._keyed.copy()
            keyed.update(secret.encode())
            expected = keyed.hexdigest()
            checksum = checked[len(self._own_prefix) :].encode()
            return hmac.compare_digest(expected.encode(), checksum) and stored_hash is not None
        presented: str | bytes = secret
        if checked.startswith(_BCRYPT_PREFIX):
            # bcrypt reads 72 bytes; the server that made the hash ignored the rest (bcrypt 5 refuses it).
            presented = secret.encode()[:BCRYPT_MAX_SECRET_BYTES]
        try:
            return bool(self._context.verify(presented, checked)) and stored_hash is not None
        except (ValueError, TypeError):
            return False

    def is_keyed(self, stored_hash: str | None) -> bool:
        """Whether ``stored_hash`` is this server's own keyed hash (cheap to verify, nothing to replace)."""
        return stored_hash is None or stored_hash.startswith(self._own_prefix)

    def importable_hash(self, stored_hash: str, limits: HashCostLimits) -> str:
        """``stored_hash`` as it is to be stored for a client, or ``UnusableHash`` saying why it cannot be.

        bcrypt hashes whose salt has its unused padding bits set (which bcrypt ignores) are normalised,
        as passlib warns about each verification of them."""
        if len(stored_hash) > MAX_STORED_HASH_LENGTH:
            raise UnusableHash(f"the client secret hash must be at most {MAX_STORED_HASH_LENGTH} characters long")
        scheme = self._context.identify(stored_hash) if stored_hash.isascii() else None
        if scheme not in IMPORTED_HASH_SCHEMES:
            raise UnusableHash("the client secret hash must be a bcrypt, pbkdf2_sha256 or Django pbkdf2_sha256 hash")
        handler = self._context.handler(scheme)
        not_well_formed = UnusableHash(f"the client secret hash is not a well-formed {scheme} hash")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PasslibHashWarning)
                parsed = handler.from_string(stored_hash)
                normalised = str(handler.normhash(stored_hash)) if scheme == "bcrypt" else stored_hash
        except ValueError:
            raise not_well_formed from None
        rounds = int(parsed.rounds)
        limit = limits.max_bcrypt_cost if scheme == "bcrypt" else limits.max_pbkdf2_rounds
        if rounds > limit:
            kind = "cost" if scheme == "bcrypt" else "rounds"
            raise UnusableHash(f"the client secret hash's {kind} {rounds} exceeds the {limit} this server verifies")
        # Only the canonical form, with its checksum: what passlib would write for these values (no empty
        # checksum, no "+1000" or "1_000" rounds, no bcrypt "$2$", which nobody writes).
        if not parsed.checksum or parsed.to_string() != normalised:
            raise not_well_formed
        if scheme == "bcrypt" and parsed.ident not in _BCRYPT_IDENTS:
            raise not_well_formed
        return normalised

    def lookup_digest(self, token: str) -> str:
        """Deterministic keyed digest used to find a bearer token by its value (indexed column)."""
        keyed = self._keyed.copy()  # as ``verify``: the pepper already absorbed
        keyed.update(token.encode())
        return keyed.hexdigest()

    @staticmethod
    def generate_client_secret() -> str:
        random_part = "".join(secrets.choice(CLIENT_SECRET_ALPHABET) for _ in range(CLIENT_SECRET_RANDOM_CHARS))
        return CLIENT_SECRET_PREFIX + random_part

    @staticmethod
    def generate_service_token() -> str:
        return SERVICE_TOKEN_PREFIX + secrets.token_urlsafe(SECRET_ENTROPY_BYTES)


def new_request_reference() -> str:
    """RFC 9126 §2.2: the request_uri "MUST contain some part generated using a cryptographically
    strong pseudorandom algorithm"; 256 bits here (FAPI 2.0 asks for at least 128)."""
    return secrets.token_urlsafe(SECRET_ENTROPY_BYTES)


def reference_hash(reference: str) -> str:
    """What the store keys a pushed request by: a dump of the table reveals no usable request_uri."""
    return hashlib.sha256(reference.encode()).hexdigest()


def new_numeric_id() -> int:
    """Random identifier for services and clients, like Authlete's; below 2**53 so that JSON numbers
    survive JavaScript clients, and above 10**12 so that ids have a stable length."""
    return 10**12 + secrets.randbelow(2**53 - 10**12)


def constant_time_equals(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


class SecretBox:
    """AES-256-GCM for the one secret we must read back: the HMAC key of ``client_secret_jwt`` clients
    (a one-way hash cannot give the key back; Polar keeps the same encrypted copy). Other secrets are only hashed."""

    VERSION = "v1."
    NONCE_BYTES = 12

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secret encryption key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def derived_from_pepper(cls, pepper: bytes) -> SecretBox:
        """A key separate from the HMAC key yet needing no extra setting: HKDF with its own label."""
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"par-server client secret encryption"
        ).derive(pepper)
        return cls(derived)

    def seal(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(self.NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode(), None)
        return self.VERSION + base64.urlsafe_b64encode(sealed).decode()

    def open(self, sealed: str) -> str | None:
        """The plaintext, or None when the value was sealed under another key or is damaged."""
        if not sealed.startswith(self.VERSION):
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed[len(self.VERSION) :])
            return self._aead.decrypt(raw[: self.NONCE_BYTES], raw[self.NONCE_BYTES :], None).decode()
        except (InvalidTag, ValueError):
            return None
