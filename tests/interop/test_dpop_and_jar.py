"""DPoP proofs (RFC 9449 §10.1) and signed request objects (RFC 9101) pushed by the Node clients.

The harnesses (PAR_DPOP=1, PAR_REQUEST_OBJECT=1) use the libraries' own means: oauth4webapi's ``DPoP`` handle
(an ``ES256`` key pair from ``generateKeyPair``) and ``issueRequestObject``; openid-client's ``getDPoPHandle`` and
``buildAuthorizationUrlWithJAR`` (which call the same oauth4webapi functions). What they send, captured by the
harness as ``par_requests`` (one entry per push):

- the DPoP proof: header ``{"alg": "ES256", "typ": "dpop+jwt", "jwk": <public EC P-256 key>}``; claims ``iat``,
  ``jti``, ``htm`` = ``POST``, ``htu`` = the metadata's ``pushed_authorization_request_endpoint``, and ``nonce``
  once the server has supplied one (no ``ath``: there is no access token);
- the request object: header ``{"alg": "ES256", "typ": "oauth-authz-req+jwt", "kid": ...}``; claims = the
  authorization request parameters (``client_id`` included) plus ``iss`` = client_id, ``aud`` = the issuer,
  ``jti``, ``iat`` = ``nbf``, ``exp`` = ``iat`` + 60. The form then carries ``client_id`` and ``request``.

With a ``dpopNonceRequired`` service the first push is answered ``400 use_dpop_nonce`` with a ``DPoP-Nonce``;
oauth4webapi's handle caches it and the harness retries once (oauth4webapi's documented ``isDPoPNonceError``
pattern), openid-client retries by itself. Each test runs once per client (``oauth4webapi``, ``openid-client``
in the test ids) and database.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
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

REQUEST_OBJECT_LIFETIME = 60  # oauth4webapi's exp - iat
INSIDE_STATE = "state-inside-the-request-object"
OUTSIDE_STATE = "state-outside-the-request-object"
# tokenAuthMethod of a client that signs request objects -> (client fields, the harness's PAR_AUTH)
SIGNING_CLIENTS = {
    "CLIENT_SECRET_BASIC": ({}, "basic"),
    "PRIVATE_KEY_JWT": ({"tokenAuthMethod": "PRIVATE_KEY_JWT"}, "private_key_jwt"),
}


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True, parameters={"kid": "jar-1"})


def jwks(key: ECKey) -> str:
    """The client's ``jwks`` field: a JWKS document with the public key, as a JSON string."""
    return json.dumps({"keys": [key.as_dict(private=False)]})


def assert_pushed(harness: Harness, result: dict[str, Any]) -> str:
    """The push succeeded: 201 (oauth4webapi reports the status; openid-client only accepts 201) with a
    request_uri URN, which is returned."""
    assert result["ok"] is True, result
    request_uri: str = result["request_uri"]
    assert request_uri.startswith(REQUEST_URI_PREFIX), result
    if harness is OAUTH4WEBAPI:
        assert result["status"] == 201, result
    assert result["par_requests"][-1]["status"] == 201, result
    return request_uri


def assert_refused(result: dict[str, Any], error: str) -> None:
    """The push was answered 400 ``error``; no Authorization-header challenge, so a ResponseBodyError."""
    assert result["ok"] is False, result
    assert result["error"] == "ResponseBodyError", result
    assert result["cause"]["error"] == error, result
    assert result["cause"]["status"] == 400, result


def new_service(harness: Harness, server: LiveServer, **fields: Any) -> ServiceHandle:
    service = server.create_service(**harness.service_fields, **fields)
    for name, value in fields.items():
        assert service.body[name] == value
    return service


def runner_for(harness: Harness, node: str, server: LiveServer, service: ServiceHandle) -> HarnessRunner:
    return HarnessRunner(node, harness.script, server, service)


def verified_proof(proof: str | None, *, htu: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``proof`` is a DPoP proof as the library makes it (module docstring) for a push to ``htu``, signed with the
    key in its header: returns its header, its claims and the RFC 7638 thumbprint of that key."""
    assert proof is not None
    header = extract_compact(proof.encode()).headers()
    assert set(header) == {"alg", "typ", "jwk"}, header
    assert header["alg"] == "ES256"
    assert header["typ"] == "dpop+jwt"
    jwk = header["jwk"]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256", jwk
    assert "d" not in jwk, jwk
    key = ECKey.import_key(jwk)
    claims = jwt.decode(proof, key, algorithms=["ES256"]).claims
    assert set(claims) - {"nonce"} == {"iat", "jti", "htm", "htu"}, claims
    assert claims["htm"] == "POST"
    assert claims["htu"] == htu
    assert abs(claims["iat"] - time.time()) < 30
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 32
    return header, claims, key.thumbprint()


def verified_request_object(token: str | None, key: ECKey, *, client: ClientHandle, issuer: str) -> dict[str, Any]:
    """``token`` is a request object as the library makes it (module docstring), signed with ``key``: returns
    its claims."""
    assert token is not None
    header = extract_compact(token.encode()).headers()
    assert header == {"alg": "ES256", "typ": "oauth-authz-req+jwt", "kid": key.kid}, header
    claims = jwt.decode(token, key, algorithms=["ES256"]).claims
    assert claims["iss"] == claims["client_id"] == str(client.id)
    assert claims["aud"] == issuer  # a string
    assert claims["exp"] - claims["iat"] == REQUEST_OBJECT_LIFETIME
    assert claims["nbf"] == claims["iat"]
    assert abs(claims["iat"] - time.time()) < 30
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 32
    assert claims["response_type"] == "code"
    assert claims["redirect_uri"] == REDIRECT_URI
    assert claims["scope"] == "openid profile"
    assert claims["code_challenge_method"] == "S256"
    assert isinstance(claims["code_challenge"], str) and len(claims["code_challenge"]) == len(CODE_CHALLENGE)
    return claims


# --- DPoP (RFC 9449 §10.1) --------------------------------------------------------------------------------


def test_dpop_proof_binds_the_pushed_request(
    harness: Harness, live_server: LiveServer, service: ServiceHandle, run_harness: HarnessRunner
) -> None:
    """DPOP-02 / DPOP-03: the library's proof (htu = the published PAR endpoint) is accepted and the pushed
    request is bound to its key: the resolve API's dpopJkt is the thumbprint the library computes, and the
    one of the key in the proof. No nonce is asked for or handed out by this service."""
    client = live_server.create_client(service)
    result = run_harness(client, auth="basic", secret=client.secret, dpop=True)
    request_uri = assert_pushed(harness, result)
    assert result["dpop_retried"] is False, result
    [push] = result["par_requests"]
    par_endpoint = live_server.metadata(service)["pushed_authorization_request_endpoint"]
    assert push["url"] == par_endpoint
    _, claims, jkt = verified_proof(push["dpop"], htu=par_endpoint)
    assert "nonce" not in claims, claims
    assert push["dpop_nonce"] is None, push
    assert result["dpop_jkt"] == jkt
    assert live_server.resolve(service, client, request_uri)["dpopJkt"] == jkt


def test_dpop_nonce_retry(harness: Harness, node_harness: str, live_server: LiveServer) -> None:
    """DPOP-07 / RFC 9449 §8: a dpopNonceRequired service answers the first (nonce-less) proof with 400
    use_dpop_nonce and a DPoP-Nonce; the library's handle caches it and the retried push, whose proof carries
    that nonce, is accepted (with a fresh DPoP-Nonce) and bound to the same key."""
    service = new_service(harness, live_server, dpopNonceRequired=True)
    client = live_server.create_client(service)
    result = runner_for(harness, node_harness, live_server, service)(
        client, auth="basic", secret=client.secret, dpop=True
    )
    request_uri = assert_pushed(harness, result)
    assert result["dpop_retried"] is True, result
    first, second = result["par_requests"]
    par_endpoint = service.par_url
    assert first["status"] == 400, first
    assert first["dpop_nonce"], first
    first_header, first_claims, jkt = verified_proof(first["dpop"], htu=par_endpoint)
    assert "nonce" not in first_claims, first_claims
    second_header, second_claims, second_jkt = verified_proof(second["dpop"], htu=par_endpoint)
    assert second_claims["nonce"] == first["dpop_nonce"]
    assert second_claims["jti"] != first_claims["jti"]
    assert second_header == first_header and second_jkt == jkt  # the same key
    assert second["dpop_nonce"], second  # RFC 9449 §8.2: a nonce with the success too
    assert result["dpop_jkt"] == jkt
    assert live_server.resolve(service, client, request_uri)["dpopJkt"] == jkt


# --- Request objects (RFC 9101) ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(SIGNING_CLIENTS))
def test_signed_request_object(
    method: str,
    harness: Harness,
    ec_key: ECKey,
    live_server: LiveServer,
    service: ServiceHandle,
    run_harness: HarnessRunner,
) -> None:
    """JAR-03 / RFC 9101 §6.3: the library's request object, signed with the key the client registered in
    jwks, is accepted, and only its parameters are used: the resolved state is the one inside the object,
    not the one sent next to it in the form."""
    fields, auth = SIGNING_CLIENTS[method]
    client = live_server.create_client(service, jwks=jwks(ec_key), **fields)
    assert client.body["tokenAuthMethod"] == method
    result = run_harness(
        client,
        auth=auth,
        secret=client.secret,
        private_jwk=ec_key.as_dict(private=True),
        request_object=True,
        extra_params={"state": INSIDE_STATE},
        outer_params={"state": OUTSIDE_STATE},
    )
    request_uri = assert_pushed(harness, result)
    [push] = result["par_requests"]
    assert push["dpop"] is None
    claims = verified_request_object(push["request"], ec_key, client=client, issuer=service.issuer)
    assert claims["state"] == INSIDE_STATE
    request = live_server.resolve(service, client, request_uri)
    assert request["state"] == INSIDE_STATE, request
    assert request["signedRequestObject"] is True, request
    assert request["redirectUri"] == REDIRECT_URI, request


def test_request_object_required(harness: Harness, ec_key: ECKey, node_harness: str, live_server: LiveServer) -> None:
    """PAR-22 / RFC 9126 §2.3: a requestObjectRequired service refuses the plain push (invalid_request) and
    accepts the same client's signed request object."""
    service = new_service(harness, live_server, requestObjectRequired=True)
    run = runner_for(harness, node_harness, live_server, service)
    client = live_server.create_client(service, jwks=jwks(ec_key))
    assert_refused(run(client, auth="basic", secret=client.secret), "invalid_request")
    result = run(
        client,
        auth="basic",
        secret=client.secret,
        private_jwk=ec_key.as_dict(private=True),
        request_object=True,
        extra_params={"state": INSIDE_STATE},
    )
    request_uri = assert_pushed(harness, result)
    request = live_server.resolve(service, client, request_uri)
    assert request["state"] == INSIDE_STATE, request
    assert request["signedRequestObject"] is True, request


def test_request_object_signed_with_another_key(
    ec_key: ECKey, live_server: LiveServer, service: ServiceHandle, run_harness: HarnessRunner
) -> None:
    """RFC 9101 §6.2 / JAR-06: a request object signed with a key the client did not register (same kid, other
    key material) is invalid_request_object; the client itself authenticated (client_secret_basic)."""
    client = live_server.create_client(service, jwks=jwks(ec_key))
    assert ec_key.kid is not None
    other = ECKey.generate_key("P-256", private=True, parameters={"kid": ec_key.kid})
    result = run_harness(
        client, auth="basic", secret=client.secret, private_jwk=other.as_dict(private=True), request_object=True
    )
    assert_refused(result, "invalid_request_object")
    [push] = result["par_requests"]
    assert push["status"] == 400
    verified_request_object(push["request"], other, client=client, issuer=service.issuer)


# --- Both ---------------------------------------------------------------------------------------------------


def test_request_object_with_dpop_nonce_retry(
    harness: Harness, ec_key: ECKey, node_harness: str, live_server: LiveServer
) -> None:
    """A signed request object pushed with DPoP to a dpopNonceRequired service: the retry sends the same request
    object again (both libraries reuse the parameters) with a proof carrying the nonce, and is accepted; the
    pushed request has the object's state and is bound to the proof key."""
    service = new_service(harness, live_server, dpopNonceRequired=True, requestObjectRequired=True)
    client = live_server.create_client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=jwks(ec_key))
    result = runner_for(harness, node_harness, live_server, service)(
        client,
        auth="private_key_jwt",
        private_jwk=ec_key.as_dict(private=True),
        request_object=True,
        dpop=True,
        extra_params={"state": INSIDE_STATE},
    )
    request_uri = assert_pushed(harness, result)
    assert result["dpop_retried"] is True, result
    first, second = result["par_requests"]
    assert (first["status"], second["status"]) == (400, 201)
    assert second["request"] == first["request"]
    _, claims, jkt = verified_proof(second["dpop"], htu=service.par_url)
    assert claims["nonce"] == first["dpop_nonce"]
    request = live_server.resolve(service, client, request_uri)
    assert request["state"] == INSIDE_STATE, request
    assert request["dpopJkt"] == jkt == result["dpop_jkt"], request
