"""RFC 7523 client assertions (CA-01..07, PAR-08, FAPI-10, FAPI-11, NOTE-01)."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from app.core.client_assertion import CLIENT_ASSERTION_TYPE, AssertionPolicy, verify_client_assertion
from app.core.errors import InvalidClient
from app.core.model import AudiencePolicy, ClientAuthMethod, ClientRecord, ClientType
from tests.core.ports import MemoryReplayStore
from tests.factories import unsigned_jwt

ISSUER = "https://as.example.com"
PAR_ENDPOINT = ISSUER + "/par"
TOKEN_ENDPOINT = ISSUER + "/token"
NOW = datetime.now(UTC).replace(microsecond=0)
SECRET = "par_cs_" + "s" * 43
EC_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"})
RSA_KEY = RSAKey.generate_key(2048, private=True, parameters={"kid": "rsa-1"})


def client(method: ClientAuthMethod = ClientAuthMethod.PRIVATE_KEY_JWT, **fields: Any) -> ClientRecord:
    values: dict[str, Any] = {
        "id": 1234567890123,
        "service_id": 1,
        "alias": "app",
        "client_type": ClientType.CONFIDENTIAL,
        "token_auth_method": method,
        "secret_hash": None,
        "redirect_uris": (),
        "response_types": frozenset(),
        "grant_types": frozenset(),
        "requestable_scopes": None,
        "jwks": {"keys": [EC_KEY.as_dict(private=False), RSA_KEY.as_dict(private=False)]},
    }
    values.update(fields)
    return ClientRecord(**values)


def assertion(key: Any = EC_KEY, alg: str = "ES256", header: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(NOW.timestamp())
    body = {
        "iss": "1234567890123",
        "sub": "1234567890123",
        "aud": ISSUER,
        "jti": f"jti-{time.monotonic_ns()}",
        "iat": now,
        "exp": now + 60,
    }
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    head = {"alg": alg, **({"kid": key.kid} if getattr(key, "kid", None) else {}), **(header or {})}
    return jwt.encode(head, body, key, algorithms=[alg])


async def check(
    token: str,
    *,
    record: ClientRecord | None = None,
    policy: AudiencePolicy = AudiencePolicy.RFC9126,
    replay: MemoryReplayStore | None = None,
    assertion_type: str = CLIENT_ASSERTION_TYPE,
    keys: dict[str, Any] | None = None,
    now: datetime = NOW,
) -> None:
    record = record or client()

    async def client_keys(_client: ClientRecord, refresh: bool) -> dict[str, Any]:
        return keys if (keys is not None and refresh) else (record.jwks or {"keys": []})

    await verify_client_assertion(
        token,
        assertion_type,
        client=record,
        client_identifiers=record.identifiers,
        client_keys=client_keys,
        client_secret=SECRET,
        replay_store=replay or MemoryReplayStore(),
        now=now,
        policy=AssertionPolicy(
            audience_policy=policy,
            issuer=ISSUER,
            token_endpoint=TOKEN_ENDPOINT,
            par_endpoint=PAR_ENDPOINT,
            clock_skew=timedelta(seconds=10),
            max_lifetime=timedelta(seconds=300),
        ),
    )


async def rejected(token: str, fragment: str, **options: Any) -> None:
    with pytest.raises(InvalidClient, match=fragment) as caught:
        await check(token, **options)
    assert caught.value.status_code == 401


async def test_valid_private_key_jwt_ec_and_rsa() -> None:
    await check(assertion())
    await check(assertion(RSA_KEY, "PS256"))
    await check(assertion(iss="app", sub="app"))  # the alias names the client too


async def test_client_secret_jwt() -> None:
    record = client(ClientAuthMethod.CLIENT_SECRET_JWT, jwks=None)
    await check(assertion(OctKey.import_key(SECRET.encode()), "HS256"), record=record)
    await rejected(assertion(OctKey.import_key(b"w" * 50), "HS256"), "signature", record=record)


async def test_wrong_key_is_rejected() -> None:
    other = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"})
    await rejected(assertion(other), "signature")


@pytest.mark.parametrize(("alg", "key"), [("HS256", OctKey.import_key(SECRET.encode())), ("none", None)])
async def test_symmetric_and_none_are_refused_for_private_key_jwt(alg: str, key: Any) -> None:
    """CA-06 / FAPI-13: never alg none; never a MAC for private_key_jwt."""
    token = assertion(key, alg) if key else _unsigned()
    await rejected(token, "not allowed")


def _unsigned() -> str:
    now = int(NOW.timestamp())
    return unsigned_jwt({"iss": "1234567890123", "sub": "1234567890123", "aud": ISSUER, "jti": "x", "exp": now + 60})


async def test_registered_signing_algorithm_is_enforced() -> None:
    record = client(token_auth_sign_alg="PS256")
    await rejected(assertion(), "registered tokenAuthSignAlg", record=record)
    await check(assertion(RSA_KEY, "PS256"), record=record)


async def test_assertion_type_must_be_exact() -> None:
    """CA-01."""
    await rejected(
        assertion(), "client_assertion_type", assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    )


@pytest.mark.parametrize("claims", [{"iss": "other"}, {"sub": "other"}, {"sub": None}, {"iss": None}])
async def test_iss_and_sub_must_be_the_client(claims: dict[str, Any]) -> None:
    """CA-02."""
    await rejected(assertion(**claims), "claim must be the client_id")


@pytest.mark.parametrize("aud", [ISSUER, PAR_ENDPOINT, TOKEN_ENDPOINT, [ISSUER], ["https://x.example", PAR_ENDPOINT]])
async def test_rfc9126_policy_accepts_issuer_token_and_par_endpoints(aud: Any) -> None:
    """PAR-08: issuer, token endpoint or PAR endpoint, as a string or in an array."""
    await check(assertion(aud=aud))


@pytest.mark.parametrize("aud", ["https://other.example", ["https://other.example"], None, 5])
async def test_rfc9126_policy_rejects_other_audiences(aud: Any) -> None:
    await rejected(assertion(aud=aud), "aud")


@pytest.mark.parametrize("aud", [PAR_ENDPOINT, TOKEN_ENDPOINT, [ISSUER]])
async def test_fapi2_policy_accepts_only_the_issuer_as_a_string(aud: Any) -> None:
    """FAPI-10: …-par-test-par-endpoint-url-as-audience-fails, …-token-endpoint…, …-array-as-audience-fails."""
    await rejected(assertion(aud=aud), "issuer identifier, as a string", policy=AudiencePolicy.FAPI2)
    await check(assertion(aud=ISSUER), policy=AudiencePolicy.FAPI2)


async def test_times() -> None:
    """CA-04 / FAPI-11: exp required; expired refused; iat/nbf 8 s ahead accepted, 61 s ahead refused."""
    now = int(NOW.timestamp())
    await rejected(assertion(exp=None), "needs an exp")
    await rejected(assertion(exp=now - 11, iat=now - 70), "expired")
    await check(assertion(exp=now - 5, iat=now - 60))  # within the 10 s skew
    await check(assertion(iat=now + 8, nbf=now + 8, exp=now + 68))
    await rejected(assertion(iat=now + 61, exp=now + 120), "iat is in the future")
    await rejected(assertion(nbf=now + 61, exp=now + 120), "nbf is in the future")
    await rejected(assertion(exp=now + 3600), "lives longer than 300 s")
    await rejected(assertion(exp="soon"), "must be a number")


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"iat": float("nan")}, "holds NaN"),  # skipped the lifetime bound: a year-long assertion passed
        ({"exp": float("nan")}, "holds NaN"),
        ({"exp": 1e300, "iat": float("nan")}, "holds NaN"),
        ({"exp": float("inf")}, "holds Infinity"),
        ({"exp": 10**400}, "too large"),
        ({"x": functools.reduce(lambda inner, _: [inner], range(40), cast(Any, []))}, "deeper than"),
        ({"iss": ["1234567890123"]}, "iss claim must be the client_id"),  # a list is not hashable
        ({"sub": {"a": 1}}, "sub claim must be the client_id"),
    ],
)
async def test_claims_json_cannot_hold_or_python_cannot_compare(claims: dict[str, Any], fragment: str) -> None:
    await rejected(assertion(**claims), fragment)


async def test_jti_is_required_and_single_use() -> None:
    """CA-05: replayed jti refused; jti required and bounded."""
    replay = MemoryReplayStore()
    token = assertion(jti="once")
    await check(token, replay=replay)
    await rejected(token, "already used", replay=replay)
    await rejected(assertion(jti=None), "jti")
    await rejected(assertion(jti="j" * 257), "jti")
    [expiry] = replay.seen.values()
    assert expiry >= NOW + timedelta(seconds=60)  # kept until the assertion could no longer be valid


async def test_unknown_kid_refetches_the_jwks_once() -> None:
    """A rotated jwks_uri key: the unknown kid triggers one refresh of the client's keys."""
    rotated = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-2"})
    record = client(jwks=None, jwks_uri="https://client.example/jwks")
    fresh = {"keys": [rotated.as_dict(private=False)]}
    await check(assertion(rotated), record=record, keys=fresh)
    await rejected(assertion(rotated), "kid", record=record, keys={"keys": []})


async def test_malformed_assertion() -> None:
    await rejected("not-a-jwt", "malformed")


async def test_assertion_without_kid_is_checked_against_each_key() -> None:
    keyless = ECKey.generate_key("P-256", private=True)
    record = client(
        jwks={"keys": [EC_KEY.as_dict(private=False), keyless.as_dict(private=False), RSA_KEY.as_dict(private=False)]}
    )
    await check(assertion(keyless), record=record)
    await rejected(assertion(ECKey.generate_key("P-256", private=True)), "any of the client's keys", record=record)
