"""JWT client authentication (private_key_jwt, client_secret_jwt) at the PAR endpoint, as the Node clients do it.

The harnesses (PAR_AUTH=private_key_jwt / client_secret_jwt) authenticate with the libraries' own
``PrivateKeyJwt`` / ``ClientSecretJwt``: openid-client's are oauth4webapi's, so both send the same
assertion. What they send, captured by the harness as the ``client_assertion`` of its JSON line:

- header: ``{"alg": <from the key: ES256, PS256, ...>, "kid": <the key's kid>}`` for private_key_jwt
  (no kid when the key has none), ``{"alg": "HS256"}`` for client_secret_jwt; no ``typ``;
- claims: ``jti`` (random), ``aud`` = the issuer identifier as a string, ``exp`` = ``iat`` + 60,
  ``iat`` = ``nbf`` = now, ``iss`` = ``sub`` = client_id.

So the assertion suits both audience policies (an issuer string is also what FAPI2 requires). The keys
are made with joserfc: the private JWK goes to the harness (PAR_PRIVATE_JWK), the public one into the
client's ``jwks``. Each test runs once per client (``oauth4webapi``, ``openid-client`` in the test ids).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from joserfc.jws import extract_compact

from tests.factories import CODE_CHALLENGE, REDIRECT_URI, ClientHandle, ServiceHandle
from tests.interop.conftest import (
    HARNESSES,
    OAUTH4WEBAPI,
    REQUEST_URI_PREFIX,
    Harness,
    HarnessRunner,
    LiveServer,
)

pytestmark = [pytest.mark.interop, pytest.mark.parametrize("harness", HARNESSES)]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60  # oauth4webapi's exp - iat
CLAIMS = {"jti", "aud", "exp", "iat", "nbf", "iss", "sub"}


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True, parameters={"kid": "k1"})


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, private=True, parameters={"kid": "r1"})


def jwks(*keys: ECKey | RSAKey) -> str:
    """The client's ``jwks`` field: a JWKS document with the public keys, as a JSON string."""
    return json.dumps({"keys": [key.as_dict(private=False) for key in keys]})


def issuer_of(server: LiveServer, service: ServiceHandle) -> str:
    """The service's issuer identifier: the harness's PAR_ISSUER, checked by discovery (META-01)."""
    issuer = f"{server.base_url}/services/{service.id}"
    assert service.body["issuer"] == issuer
    return issuer


def par_form(client: ClientHandle, assertion: str) -> dict[str, str]:
    """A valid PAR body authenticated with ``assertion``."""
    return {
        "client_id": str(client.id),
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": CODE_CHALLENGE,
        "code_challenge_method": "S256",
    }


def assert_pushed(harness: Harness, result: dict[str, Any]) -> None:
    """The push succeeded: 201 (oauth4webapi reports the status; openid-client only accepts 201) with a
    request_uri URN."""
    assert result["ok"] is True, result
    assert result["request_uri"].startswith(REQUEST_URI_PREFIX), result
    if harness is OAUTH4WEBAPI:
        assert result["status"] == 201, result


def assert_invalid_client(result: dict[str, Any]) -> None:
    """GEN-05: a failed client assertion is 401 invalid_client; no Authorization header was used, so there
    is no WWW-Authenticate challenge and both clients report a ResponseBodyError."""
    assert result["ok"] is False, result
    assert result["error"] == "ResponseBodyError", result
    assert result["cause"]["error"] == "invalid_client", result
    assert result["cause"]["status"] == 401, result


def assert_library_assertion(
    token: str | None, key: Any, *, alg: str, kid: str | None, client: ClientHandle, issuer: str
) -> None:
    """``token`` is the assertion oauth4webapi makes (module docstring), signed with ``key``."""
    assert token is not None
    header = extract_compact(token.encode()).headers()
    assert header == ({"alg": alg} if kid is None else {"alg": alg, "kid": kid})
    claims = jwt.decode(token, key, algorithms=[alg]).claims
    assert set(claims) == CLAIMS, claims
    assert claims["iss"] == claims["sub"] == str(client.id)
    assert claims["aud"] == issuer  # a string, not an array
    assert claims["exp"] - claims["iat"] == ASSERTION_LIFETIME
    assert claims["nbf"] == claims["iat"]
    assert abs(claims["iat"] - time.time()) < 30
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 32


def test_private_key_jwt_es256(
    harness: Harness,
    ec_key: ECKey,
    live_server: LiveServer,
    service: ServiceHandle,
    run_harness: HarnessRunner,
) -> None:
    """private_key_jwt with an EC P-256 key: the library signs ES256 with the key's kid, the client has
    the public key in jwks (no tokenAuthSignAlg, so any asymmetric alg is accepted)."""
    client = live_server.create_client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=jwks(ec_key))
    assert client.body["tokenAuthMethod"] == "PRIVATE_KEY_JWT"
    assert client.secret is None
    result = run_harness(client, auth="private_key_jwt", private_jwk=ec_key.as_dict(private=True))
    assert_pushed(harness, result)
    assert_library_assertion(
        result["client_assertion"],
        ec_key,
        alg="ES256",
        kid="k1",
        client=client,
        issuer=issuer_of(live_server, service),
    )


def test_private_key_jwt_ps256(
    harness: Harness,
    rsa_key: RSAKey,
    live_server: LiveServer,
    service: ServiceHandle,
    run_harness: HarnessRunner,
) -> None:
    """private_key_jwt with an RSA key imported as RSA-PSS SHA-256: PS256, the registered tokenAuthSignAlg."""
    client = live_server.create_client(
        service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=jwks(rsa_key), tokenAuthSignAlg="PS256"
    )
    assert client.body["tokenAuthSignAlg"] == "PS256"
    result = run_harness(client, auth="private_key_jwt", private_jwk=rsa_key.as_dict(private=True), signing_alg="PS256")
    assert_pushed(harness, result)
    assert_library_assertion(
        result["client_assertion"],
        rsa_key,
        alg="PS256",
        kid="r1",
        client=client,
        issuer=issuer_of(live_server, service),
    )


def test_private_key_jwt_other_alg_than_registered(
    rsa_key: RSAKey, live_server: LiveServer, service: ServiceHandle, run_harness: HarnessRunner
) -> None:
    """FAPI-13 / RFC 7523 §3 (9): with tokenAuthSignAlg PS256 registered, an RS256 assertion made with the
    same (registered) key is invalid_client."""
    client = live_server.create_client(
        service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=jwks(rsa_key), tokenAuthSignAlg="PS256"
    )
    result = run_harness(client, auth="private_key_jwt", private_jwk=rsa_key.as_dict(private=True), signing_alg="RS256")
    assert_invalid_client(result)
    header = extract_compact(result["client_assertion"].encode()).headers()
    assert header["alg"] == "RS256"


def test_private_key_jwt_with_another_key(
    ec_key: ECKey, live_server: LiveServer, service: ServiceHandle, run_harness: HarnessRunner
) -> None:
    """An assertion signed with a key the client did not register (same kid, other key material) does
    not verify: invalid_client."""
    client = live_server.create_client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=jwks(ec_key))
    other = ECKey.generate_key("P-256", private=True, parameters={"kid": "k1"})
    result = run_harness(client, auth="private_key_jwt", private_jwk=other.as_dict(private=True))
    assert_invalid_client(result)
    assert result["client_assertion"] is not None, result


@pytest.mark.parametrize("sign_alg", [None, "HS256"])
def test_client_secret_jwt(
    sign_alg: str | None,
    harness: Harness,
    live_server: LiveServer,
    service: ServiceHandle,
    run_harness: HarnessRunner,
) -> None:
    """client_secret_jwt: the library makes an HS256 assertion (no kid) keyed with the secret from the
    create answer, which the server verifies with its own copy."""
    fields = {"tokenAuthMethod": "CLIENT_SECRET_JWT"}
    if sign_alg is not None:
        fields["tokenAuthSignAlg"] = sign_alg
    client = live_server.create_client(service, **fields)
    assert client.body["tokenAuthMethod"] == "CLIENT_SECRET_JWT"
    assert client.secret
    result = run_harness(client, auth="client_secret_jwt", secret=client.secret)
    assert_pushed(harness, result)
    assert_library_assertion(
        result["client_assertion"],
        OctKey.import_key(client.secret.encode()),
        alg="HS256",
        kid=None,
        client=client,
        issuer=issuer_of(live_server, service),
    )


def test_client_secret_jwt_with_wrong_secret(
    live_server: LiveServer, service: ServiceHandle, run_harness: HarnessRunner
) -> None:
    """An HS256 assertion keyed with another secret is invalid_client."""
    client = live_server.create_client(service, tokenAuthMethod="CLIENT_SECRET_JWT")
    result = run_harness(client, auth="client_secret_jwt", secret=f"wrong-{client.secret}")
    assert_invalid_client(result)


def test_fapi2_audience_policy_accepts_the_library_assertion(
    harness: Harness, ec_key: ECKey, node_harness: str, live_server: LiveServer
) -> None:
    """A service with clientAssertionAudiencePolicy FAPI2 accepts only the issuer identifier, as a string,
    as aud: which is what the library sends. (An aud array holding the issuer, accepted under RFC9126,
    is refused there: the policy is in force.)"""
    service = live_server.create_service(**harness.service_fields, clientAssertionAudiencePolicy="FAPI2")
    assert service.body["clientAssertionAudiencePolicy"] == "FAPI2"
    issuer = issuer_of(live_server, service)
    run = HarnessRunner(node_harness, harness.script, live_server, service)
    client = live_server.create_client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=jwks(ec_key))
    result = run(client, auth="private_key_jwt", private_jwk=ec_key.as_dict(private=True))
    assert_pushed(harness, result)
    claims = jwt.decode(result["client_assertion"], ec_key, algorithms=["ES256"]).claims
    assert claims["aud"] == issuer

    now = int(time.time())
    array_aud = {**claims, "aud": [issuer], "jti": f"array-aud-{now}", "iat": now, "nbf": now, "exp": now + 60}
    token = jwt.encode({"alg": "ES256", "kid": "k1"}, array_aud, ec_key)
    refused = live_server.http.post(service.par_path, data=par_form(client, token))
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_client", refused.text
    assert "aud" in refused.json()["error_description"], refused.text


def test_library_assertion_cannot_be_replayed(
    harness: Harness, ec_key: ECKey, live_server: LiveServer, service: ServiceHandle, run_harness: HarnessRunner
) -> None:
    """OIDC Core §9: the assertion the library sent (accepted once) is refused when sent again, with an
    otherwise valid request: jti is single-use."""
    client = live_server.create_client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=jwks(ec_key))
    result = run_harness(client, auth="private_key_jwt", private_jwk=ec_key.as_dict(private=True))
    assert_pushed(harness, result)
    replayed = live_server.http.post(service.par_path, data=par_form(client, result["client_assertion"]))
    assert replayed.status_code == 401, replayed.text
    assert replayed.json()["error"] == "invalid_client", replayed.text
    assert "jti" in replayed.json()["error_description"], replayed.text
