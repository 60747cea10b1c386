"""Machine secrets and their keyed hashes."""

from __future__ import annotations

import re

import pytest
from passlib.hash import pbkdf2_sha256

from app.core.secrets import SecretHasher, new_numeric_id, new_request_reference, reference_hash

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
