"""Machine secrets and their keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

import pytest
from passlib.exc import PasslibHashWarning
from passlib.hash import bcrypt, django_pbkdf2_sha256, pbkdf2_sha256

from app.core.secrets import (
    HashCostLimits,
    SecretHasher,
    UnusableHash,
    client_secret_problem,
    new_numeric_id,
    new_request_reference,
    reference_hash,
)

HASHER = SecretHasher(b"pepper-one-0123456789abcdefghijklmnop")


def test_hash_verifies_only_the_same_secret() -> None:
    secret = HASHER.generate_client_secret()
    stored = HASHER.hash(secret)
    assert stored.startswith("$par-hmac-sha256$") and secret not in stored
    assert HASHER.verify(secret, stored)
    assert not HASHER.verify(secret + "x", stored)


def test_hash_depends_on_the_pepper() -> None:
    """A database dump without the pepper verifies nothing."""
    secret = HASHER.generate_client_secret()
    other = SecretHasher(b"pepper-two-0123456789abcdefghijklmnop")
    assert not other.verify(secret, HASHER.hash(secret))
    assert HASHER.lookup_digest("t") != other.lookup_digest("t")


@pytest.mark.parametrize("token", ["", "par_sat_0123", "é\u2028" * 40])
def test_a_token_lookup_digest_is_hmac_sha256_under_the_pepper(token: str) -> None:
    """The digests stored for issued tokens stay the ones a lookup computes."""
    expected = hmac.new(b"pepper-one-0123456789abcdefghijklmnop", token.encode(), hashlib.sha256).hexdigest()
    assert HASHER.lookup_digest(token) == expected
    assert HASHER.lookup_digest(token) == expected  # the keyed prototype is copied, never consumed


def test_absent_or_garbage_hash_verifies_nothing() -> None:
    assert not HASHER.verify("anything", None)
    assert not HASHER.verify("anything", "not-a-hash")


@pytest.mark.parametrize(
    "secret",
    ["", "s", "parcs" + "A" * 43, "ünïcødé secret", "x" * 4000, "with\x00nul"],
    ids=["empty", "one", "generated", "non-ascii", "long", "nul"],
)
def test_own_format_check_agrees_with_its_passlib_handler(secret: str) -> None:
    """SecretHasher.verify checks our format itself; it must accept and refuse exactly what the
    CryptContext's handler does."""
    stored = HASHER.hash(secret)
    context_verdict = HASHER._context.verify
    for candidate, hashed in [(secret, stored), (secret + "x", stored), (secret, stored[:-1] + "0")]:
        assert HASHER.verify(candidate, hashed) == context_verdict(candidate, hashed)
    for damaged in [stored[:-1], stored + "0", stored.upper(), "$par-hmac-sha256$", "$par-hmac-sha256$ü" * 3]:
        assert not HASHER.verify(secret, damaged)


def test_legacy_slow_hash_still_verifies() -> None:
    """The CryptContext knows older formats, so migrated secrets keep working."""
    assert HASHER.verify("legacy-secret", pbkdf2_sha256.hash("legacy-secret"))


def test_generated_values_have_256_bits_and_prefixes() -> None:
    """PAR-14 / FAPI-14: at least 128 bits; we use 256."""
    secret, token, reference = (
        HASHER.generate_client_secret(),
        HASHER.generate_service_token(),
        new_request_reference(),
    )
    assert re.fullmatch(r"parcs[A-Za-z0-9]{43}", secret)
    assert re.fullmatch(r"par_sat_[A-Za-z0-9_-]{43}", token)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", reference)
    assert len({new_request_reference() for _ in range(1000)}) == 1000


def test_reference_hash_is_stable_and_hides_the_reference() -> None:
    reference = new_request_reference()
    assert reference_hash(reference) == reference_hash(reference)
    assert reference not in reference_hash(reference)


def test_numeric_ids_are_json_safe() -> None:
    ids = [new_numeric_id() for _ in range(1000)]
    assert all(10**12 <= value < 2**53 for value in ids)


IMPORT_LIMITS = HashCostLimits(max_bcrypt_cost=12, max_pbkdf2_rounds=1_000_000)
ADOPTED = "adopted-" + "Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA"


@pytest.mark.parametrize(
    "make_hash",
    [
        lambda secret: bcrypt.using(rounds=4).hash(secret),
        lambda secret: "$2a$" + bcrypt.using(rounds=4).hash(secret)[4:],  # Go's bcrypt (ORY Hydra)
        lambda secret: pbkdf2_sha256.using(rounds=1000).hash(secret),
        lambda secret: django_pbkdf2_sha256.using(rounds=1000).hash(secret),  # django-oauth-toolkit
    ],
    ids=["bcrypt-2b", "bcrypt-2a", "pbkdf2_sha256", "django_pbkdf2_sha256"],
)
def test_imported_hashes_verify_and_are_not_keyed(make_hash: Any) -> None:
    imported = make_hash(ADOPTED)
    assert HASHER.importable_hash(imported, IMPORT_LIMITS) == imported
    assert not HASHER.is_keyed(imported)
    assert HASHER.verify(ADOPTED, imported)
    assert not HASHER.verify(ADOPTED + "x", imported)
    assert HASHER.is_keyed(HASHER.hash(ADOPTED))


def test_bcrypt_checks_the_first_72_bytes_as_the_server_that_made_the_hash_did() -> None:
    """bcrypt reads 72 bytes: a longer secret was hashed (by Go's bcrypt before 2023, Spring, PHP) as its
    first 72, and is checked the same way here, though bcrypt 5 itself refuses more than 72."""
    long_secret = secrets.token_urlsafe(75)  # 100 characters
    imported = bcrypt.using(rounds=4).hash(long_secret[:72])
    assert HASHER.verify(long_secret, imported)
    assert not HASHER.verify(long_secret[:71] + "#" + long_secret[72:], imported)
    assert not HASHER.verify(ADOPTED + "x" * 80, bcrypt.using(rounds=4).hash(ADOPTED))


@pytest.mark.parametrize(
    ("stored", "fragment"),
    [
        ("$2b$13$" + bcrypt.using(rounds=4).hash(ADOPTED)[7:], "cost 13 exceeds the 12"),
        ("$pbkdf2-sha256$1000001$c2FsdHNhbHQ$" + "a" * 43, "rounds 1000001 exceeds"),
        ("$2b$12$short", "well-formed"),
        ("$2$04$" + bcrypt.using(rounds=4).hash(ADOPTED)[7:], "well-formed"),  # a bcrypt variant nobody writes
        ("pbkdf2_sha256$1000$abc$", "well-formed"),  # no checksum
        (django_pbkdf2_sha256.using(rounds=1000).hash(ADOPTED).replace("$1000$", "$+1000$"), "well-formed"),
        (django_pbkdf2_sha256.using(rounds=1000).hash(ADOPTED).replace("$1000$", "$1_000$"), "well-formed"),
        ("plain text", "must be a bcrypt"),
        ("$par-hmac-sha256$" + "0" * 64, "must be a bcrypt"),  # our own format is never imported
        ("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "must be a bcrypt"),
        ("\udcff", "must be a bcrypt"),
    ],
)
def test_imported_hash_problems(stored: str, fragment: str) -> None:
    with pytest.raises(UnusableHash, match=re.escape(fragment)):
        HASHER.importable_hash(stored, IMPORT_LIMITS)


def test_bcrypt_salt_padding_bits_are_normalised_at_import() -> None:
    """bcrypt ignores the salt's last padding bits; passlib warns about every verification of a hash
    that sets them, so the stored form is the normalised one, which verifies the same secret."""
    made = bcrypt.using(rounds=4).hash(ADOPTED)
    salt_end = 7 + 21  # the 22nd salt character holds 2 bits of padding
    padded = made[:salt_end] + {".": "/", "O": "P", "e": "f", "u": "v"}[made[salt_end]] + made[salt_end + 1 :]
    with pytest.warns(PasslibHashWarning):
        assert HASHER.verify(ADOPTED, padded)
    stored = HASHER.importable_hash(padded, IMPORT_LIMITS)
    assert HASHER.verify(ADOPTED, stored)


@pytest.mark.parametrize(
    "secret",
    [
        "9f86d081884c7d659a2feaa0c55ad015",  # 32 random hex digits: 128 bits
        "par_cs_" + "A1b2C3d4E5f6G7h8J9k0L1m2N3p4Q5r6S7t8U9v0W1x",
        "Correct-Horse-Battery-Staple-2026!!",
    ],
)
def test_strong_client_secrets(secret: str) -> None:
    assert client_secret_problem(secret, min_length=32, max_length=128) is None


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        ("Zq8vN3xR7mK2pL9wT4bY6cJ1", "32 to 128 characters"),
        ("Zq8vN3xR7mK2pL9wT4bY6cJ1" * 6, "32 to 128 characters"),
        ("a" * 100, "too predictable"),
        ("ab" * 50, "too predictable"),
        ("0123456789" * 3 + "01", "too predictable"),
        ("0123456789abcdef" * 2, "too predictable"),  # every hex digit, but a pattern
        ("Password1!" + "a" * 22, "too predictable"),  # a word padded out
        ("Summer2024!" + "1" * 21, "too predictable"),
        ("WEAKSECRETVALUE-" + "a" * 20, "too predictable"),
        ("1234567890" * 4, "too predictable"),
        ("abcdefgh" * 4, "too predictable"),
        ("Zq8vN3xR7mK2pL9wT4bY6cJ1 hF5sD0gAx", "printable ASCII"),
        ("Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gAé", "printable ASCII"),
        ("Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA\x7f", "printable ASCII"),
    ],
)
def test_weak_client_secrets(secret: str, fragment: str) -> None:
    problem = client_secret_problem(secret, min_length=32, max_length=128)
    assert problem is not None and fragment in problem and secret not in problem
