"""RFC 9101 request objects pushed to the PAR endpoint (JAR-01..10, PAR-06, PAR-11, PAR-27..29)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwe, jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from app.core.errors import InvalidRequest
from app.core.jar import (
    InvalidRequestObject,
    RequestObjectPolicy,
    merge_with_outer,
    request_object_parameters,
    verify_request_object,
)
from app.core.model import ClientAuthMethod, ClientRecord, ClientType
from app.core.params import RequestParameters
from tests.factories import unsigned_jwt

ISSUER = "https://as.example.com"
PAR_ENDPOINT = ISSUER + "/par"
CLIENT_ID = "1234567890123"
NOW = datetime.now(UTC).replace(microsecond=0)
EC_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"})
RSA_KEY = RSAKey.generate_key(2048, private=True, parameters={"kid": "rsa-1"})
ED_KEY = OKPKey.generate_key("Ed25519", private=True, parameters={"kid": "ed-1"})
POLICY = RequestObjectPolicy(issuer=ISSUER, clock_skew=timedelta(seconds=10), max_lifetime=timedelta(minutes=10))
FAPI_POLICY = RequestObjectPolicy(
    issuer=ISSUER,
    clock_skew=timedelta(seconds=10),
    max_lifetime=timedelta(hours=2),
    require_exp_nbf=True,
    allowed_algorithms=("PS256", "ES256", "Ed25519"),
)


def client(**fields: Any) -> ClientRecord:
    values: dict[str, Any] = {
        "id": int(CLIENT_ID),
        "service_id": 1,
        "alias": "app",
        "client_type": ClientType.CONFIDENTIAL,
        "token_auth_method": ClientAuthMethod.PRIVATE_KEY_JWT,
        "secret_hash": None,
        "redirect_uris": (),
        "response_types": frozenset(),
        "grant_types": frozenset(),
        "requestable_scopes": None,
        "jwks": {
            "keys": [EC_KEY.as_dict(private=False), RSA_KEY.as_dict(private=False), ED_KEY.as_dict(private=False)]
        },
    }
    values.update(fields)
    return ClientRecord(**values)


def request_object(key: Any = EC_KEY, alg: str = "ES256", header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A signed request object; a claim given as None is left out."""
    now = int(NOW.timestamp())
    body: dict[str, Any] = {
        "iss": CLIENT_ID,
        "aud": ISSUER,
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": "https://client.example.org/cb",
        "scope": "openid",
        "state": "inside",
        "nbf": now,
        "exp": now + 300,
    }
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    head = {
        "alg": alg,
        "typ": "oauth-authz-req+jwt",
        **({"kid": key.kid} if getattr(key, "kid", None) else {}),
        **(header or {}),
    }
    head = {name: value for name, value in head.items() if value is not None}
    return jwt.encode(head, body, key, algorithms=[alg])


async def check(
    token: str,
    *,
    record: ClientRecord | None = None,
    policy: RequestObjectPolicy = POLICY,
    refreshed: dict[str, Any] | None = None,
    now: datetime = NOW,
) -> dict[str, Any]:
    record = record or client()
    fetches: list[bool] = []

    async def client_keys(_client: ClientRecord, refresh: bool) -> dict[str, Any]:
        fetches.append(refresh)
        assert fetches.count(True) <= 1, "the keys are refreshed at most once"
        return refreshed if (refreshed is not None and refresh) else (record.jwks or {"keys": []})

    return await verify_request_object(token, client=record, client_keys=client_keys, policy=policy, now=now)


async def rejected(token: str, fragment: str, **options: Any) -> None:
    with pytest.raises(InvalidRequestObject, match=fragment) as caught:
        await check(token, **options)
    error = caught.value
    assert (error.status_code, error.error, error.result_code) == (400, "invalid_request_object", "A248304")


# --- signature and header (JAR-01, JAR-05, JAR-06, JAR-08, PAR-28) ----------------------------------


async def test_valid_request_objects_ec_rsa_and_eddsa() -> None:
    claims = await check(request_object())
    assert claims["state"] == "inside" and claims["client_id"] == CLIENT_ID
    await check(request_object(RSA_KEY, "PS256", header={"typ": "JWT"}))
    await check(request_object(ED_KEY, "Ed25519"), policy=FAPI_POLICY)
    await check(request_object(iss="app", client_id="app"))  # the alias names the client too


async def test_wrong_key_is_rejected() -> None:
    """JAR-06: …-ensure-request-object-with-invalid-signature-fails."""
    impostor = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"})
    await rejected(request_object(impostor), "signature")


async def test_unknown_kid_refetches_the_jwks_once() -> None:
    """RFC 9101 §6.2: the key must be the client's; a rotated jwks_uri key gets one refresh."""
    rotated = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-2"})
    record = client(jwks=None, jwks_uri="https://client.example/jwks")
    claims = await check(request_object(rotated), record=record, refreshed={"keys": [rotated.as_dict(private=False)]})
    assert claims["iss"] == CLIENT_ID
    await rejected(request_object(rotated), "kid", record=record, refreshed={"keys": []})
    await rejected(request_object(rotated), "kid")  # registered jwks: nothing to refresh


async def test_alg_none_is_refused() -> None:
    """JAR-01: …-ensure-request-object-signature-algorithm-is-not-none."""
    now = int(NOW.timestamp())
    token = unsigned_jwt({"iss": CLIENT_ID, "aud": ISSUER, "client_id": CLIENT_ID, "exp": now + 60})
    await rejected(token, "alg none is not allowed")


async def test_mac_algorithms_are_refused() -> None:
    """JAR-01: request objects are verified with the client's public keys, never with a shared secret."""
    await rejected(request_object(OctKey.import_key(b"k" * 64), "HS256"), "alg HS256 is not allowed")


async def test_policy_narrows_algorithms() -> None:
    """JAR-01 / FAPI: …-ensure-signed-request-object-with-RS256-fails."""
    await rejected(request_object(RSA_KEY, "RS256"), "alg RS256 is not allowed", policy=FAPI_POLICY)
    await check(request_object(RSA_KEY, "RS256"))


@pytest.mark.parametrize("algorithms", [("none",), ("HS256",), ("ES256", "none"), ()])
def test_policy_cannot_allow_none_or_macs(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        RequestObjectPolicy(ISSUER, timedelta(seconds=10), timedelta(minutes=10), allowed_algorithms=algorithms)


async def test_encrypted_request_objects_are_refused() -> None:
    """JAR-05 / PAR-28: we publish no encryption keys, so a JWE cannot be decrypted: invalid_request_object."""
    registry = jwe.JWERegistry(algorithms=["RSA-OAEP-256", "A256GCM"])
    protected = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"}
    encrypted = jwe.encrypt_compact(protected, request_object(), RSA_KEY, registry=registry)
    assert encrypted.count(".") == 4
    await rejected(encrypted, "encrypted request objects are not supported")


async def test_malformed_request_object() -> None:
    await rejected("not-a-jwt", "malformed")


@pytest.mark.parametrize("typ", ["oauth-authz-req+jwt", "application/oauth-authz-req+jwt", "JWT", "jwt", None])
async def test_accepted_types(typ: str | None) -> None:
    """JAR-08: explicitly typed, generically typed (most existing clients) or untyped."""
    await check(request_object(header={"typ": typ}))


@pytest.mark.parametrize("typ", ["dpop+jwt", "client-authentication+jwt", "at+jwt", "application/json"])
async def test_other_types_are_refused(typ: Any) -> None:
    """JAR-08 (RFC 9101 §10.8): another kind of JWT is not accepted as a request object."""
    await rejected(request_object(header={"typ": typ}), "typ")


# --- claims (JAR-02, JAR-04, JAR-07, PAR-11, PAR-29) ------------------------------------------------


@pytest.mark.parametrize("iss", ["other", None, 1234567890123])
async def test_iss_must_be_the_client(iss: Any) -> None:
    """JAR-07 / PAR-29: iss = client_id, required at this server."""
    await rejected(request_object(iss=iss), "iss claim must be the client_id")


@pytest.mark.parametrize("aud", [None, PAR_ENDPOINT, [PAR_ENDPOINT], "https://other.example", 7, [7]])
async def test_aud_must_name_the_issuer(aud: Any) -> None:
    """JAR-07: fapi1-advanced-final-par-pushed-authorization-url-as-audience-in-request-object."""
    await rejected(request_object(aud=aud), "aud claim must contain the issuer")


@pytest.mark.parametrize("aud", [ISSUER, [ISSUER], [PAR_ENDPOINT, ISSUER]])
async def test_aud_as_issuer_string_or_in_an_array(aud: Any) -> None:
    """JAR-07: …-ensure-request-object-with-multiple-aud-succeeds."""
    await check(request_object(aud=aud))


@pytest.mark.parametrize("client_id", ["987", None, 1234567890123])
async def test_client_id_claim_must_be_the_authenticated_client(client_id: Any) -> None:
    """JAR-04 / PAR-29: the authenticated client_id must match the client_id claim."""
    await rejected(request_object(client_id=client_id), "client_id claim must be the authenticated client")


@pytest.mark.parametrize("name", ["request_uri", "request"])
async def test_nested_request_claims_are_refused(name: str) -> None:
    """JAR-02 / PAR-11: …-par-authorization-request-containing-request_uri."""
    nested: dict[str, Any] = {name: "urn:ietf:params:oauth:request_uri:abc" if name == "request_uri" else "eyJ.x.y"}
    await rejected(request_object(**nested), f"must not contain a {name} claim")


async def test_claims_must_be_usable_as_parameters() -> None:
    now = int(NOW.timestamp())
    await rejected(request_object(max_age=float("nan")), "holds NaN")  # app.core.json_input
    await rejected(request_object(exp=float("nan")), "holds NaN")
    await rejected(request_object(login_hint="a\x00b"), "NUL character")
    await rejected(request_object(login_hint="a\x01b"), "control characters")
    await rejected(request_object(resource=["https://rs.example", 1]), "resource claim must hold strings")
    null_prompt = {"iss": CLIENT_ID, "aud": ISSUER, "client_id": CLIENT_ID, "exp": now + 300, "prompt": None}
    await rejected(jwt.encode({"alg": "ES256", "kid": "ec-1"}, null_prompt, EC_KEY), "prompt claim must not be null")


# --- times (JAR-07) ---------------------------------------------------------------------------------


async def test_times() -> None:
    """exp required and not passed; nbf/iat not in the future beyond the skew; bounded lifetime."""
    now = int(NOW.timestamp())
    await rejected(request_object(exp=None), "needs an exp claim")
    await rejected(request_object(exp="soon"), "exp claim must be a number")
    await rejected(request_object(nbf=now - 70, exp=now - 11), "expired")
    await check(request_object(nbf=now - 60, exp=now - 5))  # within the 10 s skew
    await check(request_object(nbf=now + 8, exp=now + 68))
    await rejected(request_object(nbf=now + 61, exp=now + 120), "nbf is in the future")
    await rejected(request_object(nbf=None, iat=now + 61, exp=now + 120), "iat is in the future")
    await rejected(request_object(exp=now + 3600), "lives longer than 600 s")
    await rejected(request_object(nbf=None, iat=now, exp=now + 601), "lives longer than 600 s")
    await check(request_object(nbf=None, exp=now + 600))  # no nbf or iat: measured from now


async def test_fapi_requires_exp_and_nbf_within_60_minutes() -> None:
    """JAR-07 (FAPI): …-request-object-without-nbf-fails, …-exp-over-60-fails, …-nbf-over-60-fails,
    …-nbf-8-seconds-in-the-future-is-accepted."""
    now = int(NOW.timestamp())
    await rejected(request_object(nbf=None, iat=now), "needs an nbf claim", policy=FAPI_POLICY)
    await rejected(request_object(exp=None), "needs an exp claim", policy=FAPI_POLICY)
    await rejected(request_object(nbf=now, exp=now + 61 * 60), "at most 60 minutes after its nbf", policy=FAPI_POLICY)
    await check(request_object(nbf=now, exp=now + 60 * 60), policy=FAPI_POLICY)
    await rejected(
        request_object(nbf=now - 61 * 60, exp=now + 60), "at most 60 minutes in the past", policy=FAPI_POLICY
    )
    await check(request_object(nbf=now + 8, exp=now + 300), policy=FAPI_POLICY)


# --- parameters (JAR-03, PAR-27) --------------------------------------------------------------------


def test_claims_become_parameters() -> None:
    details = [{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "123.50"}}]
    claims = {
        "iss": CLIENT_ID,
        "aud": ISSUER,
        "exp": 1,
        "nbf": 0,
        "iat": 0,
        "jti": "x",
        "client_id": CLIENT_ID,
        "scope": "openid payments",
        "authorization_details": details,
        "resource": ["https://rs1.example", "https://rs2.example"],
        "max_age": 600,
        "ratio": 1.5,
        "include_granted_scopes": True,
        "flag": False,
        "claims": {"id_token": {"acr": {"essential": True, "values": ["urn:a"]}, "email": None}},
        "ui_locales": "fr-CA ä",
    }
    params = request_object_parameters(claims)
    assert params.pairs == (
        ("client_id", CLIENT_ID),
        ("scope", "openid payments"),
        (
            "authorization_details",
            '[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"123.50"}}]',
        ),
        ("resource", "https://rs1.example"),
        ("resource", "https://rs2.example"),
        ("max_age", "600"),
        ("ratio", "1.5"),
        ("include_granted_scopes", "true"),
        ("flag", "false"),
        ("claims", '{"id_token":{"acr":{"essential":true,"values":["urn:a"]},"email":null}}'),
        ("ui_locales", "fr-CA ä"),
    )
    assert json.loads(params.get("authorization_details") or "") == details
    assert request_object_parameters({"resource": "https://rs.example"}).get_all("resource") == ["https://rs.example"]


async def test_verified_claims_round_trip_to_parameters() -> None:
    claims = await check(request_object(authorization_details=[{"type": "account_information"}], max_age=0))
    params = request_object_parameters(claims)
    assert params.get("authorization_details") == '[{"type":"account_information"}]'
    assert params.get_all("max_age") == ["0"]
    assert "iss" not in params and "exp" not in params and "aud" not in params


def test_only_the_request_object_parameters_are_used() -> None:
    """JAR-03 / PAR-27: …-ensure-different-state-inside-and-outside-request-object and
    …-state-only-outside-request-object-not-used; client authentication stays in the form."""
    outer = RequestParameters(
        (
            ("client_id", CLIENT_ID),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", "eyJ.assertion"),
            ("request", "eyJ.request.object"),
            ("state", "outside"),
            ("scope", "admin"),
            ("nonce", "outside-only"),
        )
    )
    inner = RequestParameters(
        (("client_id", CLIENT_ID), ("scope", "openid"), ("state", "inside"), ("client_secret", "smuggled"))
    )
    merged = merge_with_outer(outer, inner)
    assert merged.pairs == (
        ("client_id", CLIENT_ID),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", "eyJ.assertion"),
        ("scope", "openid"),
        ("state", "inside"),
    )
    assert "nonce" not in merged and "request" not in merged


def test_outer_client_id_must_be_identical() -> None:
    """JAR-04 (RFC 9101 §6.3): identical strings; an alias for the same client is not identical."""
    inner = RequestParameters((("client_id", CLIENT_ID), ("scope", "openid")))
    with pytest.raises(InvalidRequestObject, match="must be identical") as caught:
        merge_with_outer(RequestParameters((("client_id", "app"),)), inner)
    assert caught.value.error == "invalid_request_object"
    # Basic authentication may leave client_id out of the form; the request object supplies it.
    assert merge_with_outer(RequestParameters(()), inner).get("client_id") == CLIENT_ID
    assert merge_with_outer(RequestParameters((("client_id", "app"),)), RequestParameters(())).pairs == (
        ("client_id", "app"),
    )


def test_outer_request_uri_is_refused_not_ignored() -> None:
    """PAR-11 (RFC 9126 §2.1): a request_uri in the form is refused even next to a request object."""
    outer = RequestParameters((("client_id", CLIENT_ID), ("request", "eyJ.x.y"), ("request_uri", "urn:x")))
    with pytest.raises(InvalidRequest, match="request_uri") as caught:
        merge_with_outer(outer, RequestParameters((("client_id", CLIENT_ID),)))
    assert (caught.value.error, caught.value.result_code) == ("invalid_request", "A248301")
