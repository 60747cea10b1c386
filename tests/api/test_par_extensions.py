"""DPoP, request objects, rich authorization requests, resources and PAR enforcement at the push."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from joserfc.jwk import ECKey, OctKey

from tests.factories import (
    CODE_CHALLENGE,
    REDIRECT_URI,
    ClientHandle,
    Factory,
    ServiceHandle,
    client_assertion,
    dpop_proof,
    par_params,
    public_jwks,
    push,
    request_object,
)

DPOP_KEY = ECKey.generate_key("P-256", private=True)
SIGNING_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "sig-1"})


async def resolved_request(
    http: httpx.AsyncClient, service: ServiceHandle, client: ClientHandle, request_uri: str
) -> dict[str, Any]:
    answer = (
        await http.post(
            f"/api/{service.id}/pushed_auth_req/resolve",
            headers=service.bearer,
            json={"parameters": urlencode({"client_id": str(client.id), "request_uri": request_uri})},
        )
    ).json()
    assert answer["action"] == "OK", answer
    return dict(answer["request"])


def error_of(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"])


# --- DPoP (RFC 9449 §10.1) --------------------------------------------------------------------------------


async def test_dpop_proof_binds_the_request(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """DPOP-02 / DPOP-03: the proof's key thumbprint is stored as if sent as dpop_jkt."""
    response = await push(client, service, basic_client, headers={"DPoP": dpop_proof(DPOP_KEY, htu=service.par_url)})
    assert response.status_code == 201, response.text
    request = await resolved_request(client, service, basic_client, response.json()["request_uri"])
    assert request["dpopJkt"] == DPOP_KEY.thumbprint()


async def test_dpop_jkt_must_match_the_proof(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """DPOP-04 / …-ensure-mismatched-dpop-jkt-fails."""
    other = ECKey.generate_key("P-256", private=True)
    headers = {"DPoP": dpop_proof(DPOP_KEY, htu=service.par_url)}
    assert (
        error_of(await push(client, service, basic_client, headers=headers, dpop_jkt=other.thumbprint()))
        == "invalid_request"
    )
    headers = {"DPoP": dpop_proof(DPOP_KEY, htu=service.par_url)}
    assert (
        await push(client, service, basic_client, headers=headers, dpop_jkt=DPOP_KEY.thumbprint())
    ).status_code == 201


@pytest.mark.parametrize("problem", ["replayed", "wrong-htu", "wrong-htm", "symmetric", "wrong-typ", "old"])
async def test_bad_dpop_proofs(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, problem: str
) -> None:
    """DPOP-05 / DPOP-09: each check of RFC 9449 §4.3."""
    url = service.par_url
    proofs = {
        "wrong-htu": lambda: dpop_proof(DPOP_KEY, htu=url + "/other"),
        "wrong-htm": lambda: dpop_proof(DPOP_KEY, htu=url, htm="GET"),
        "wrong-typ": lambda: dpop_proof(DPOP_KEY, htu=url, typ="JWT"),
        "old": lambda: dpop_proof(DPOP_KEY, htu=url, iat=int(time.time()) - 600),
        "symmetric": lambda: _symmetric_proof(url),
    }
    if problem == "replayed":
        proof = dpop_proof(DPOP_KEY, htu=url)
        assert (await push(client, service, basic_client, headers={"DPoP": proof})).status_code == 201
    else:
        proof = proofs[problem]()
    assert error_of(await push(client, service, basic_client, headers={"DPoP": proof})) == "invalid_dpop_proof"


def _symmetric_proof(url: str) -> str:
    from joserfc import jwt

    key = OctKey.import_key(b"k" * 32)
    return jwt.encode(
        {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "a2tr"}},
        {"jti": "s", "htm": "POST", "htu": url, "iat": int(time.time())},
        key,
        algorithms=["HS256"],
    )


async def test_two_dpop_headers_are_refused(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    proof = dpop_proof(DPOP_KEY, htu=service.par_url)
    response = await client.post(
        service.par_path,
        data=par_params(basic_client),
        headers=[*basic_client.basic().items(), ("DPoP", proof), ("DPoP", proof)],
    )
    assert error_of(response) == "invalid_dpop_proof"


async def test_server_nonce_retry(client: httpx.AsyncClient, factory: Factory) -> None:
    """DPOP-07 / DPOP-08: use_dpop_nonce with a DPoP-Nonce header and no other challenge; the retry passes."""
    service = await factory.service(dpopNonceRequired=True)
    par_client = await factory.client(service)
    first = await push(client, service, par_client, headers={"DPoP": dpop_proof(DPOP_KEY, htu=service.par_url)})
    assert error_of(first) == "use_dpop_nonce"
    assert "www-authenticate" not in first.headers
    nonce = first.headers["dpop-nonce"]
    retry = await push(
        client, service, par_client, headers={"DPoP": dpop_proof(DPOP_KEY, htu=service.par_url, nonce=nonce)}
    )
    assert retry.status_code == 201, retry.text
    assert retry.headers["dpop-nonce"]
    forged = await push(
        client, service, par_client, headers={"DPoP": dpop_proof(DPOP_KEY, htu=service.par_url, nonce="forged")}
    )
    assert error_of(forged) == "use_dpop_nonce"


async def test_nonce_of_one_service_is_useless_at_another(client: httpx.AsyncClient, factory: Factory) -> None:
    first_service = await factory.service(dpopNonceRequired=True)
    other_service = await factory.service(dpopNonceRequired=True)
    first_client = await factory.client(first_service)
    other_client = await factory.client(other_service)
    nonce = (
        await push(
            client, first_service, first_client, headers={"DPoP": dpop_proof(DPOP_KEY, htu=first_service.par_url)}
        )
    ).headers["dpop-nonce"]
    response = await push(
        client,
        other_service,
        other_client,
        headers={"DPoP": dpop_proof(DPOP_KEY, htu=other_service.par_url, nonce=nonce)},
    )
    assert error_of(response) == "use_dpop_nonce"


async def test_backend_dpop_fields(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Authlete's dpop, htm, htu and dpopNonceRequired; dpopNonce in the answer."""
    htu = "https://as.example/par"

    async def call(**fields: Any) -> dict[str, Any]:
        body = {
            "parameters": urlencode(par_params(basic_client)),
            "clientId": str(basic_client.id),
            "clientSecret": basic_client.secret,
            "htu": htu,
            **fields,
        }
        response = await client.post(f"/api/{service.id}/pushed_auth_req", headers=service.bearer, json=body)
        return dict(response.json())

    challenged = await call(dpop=dpop_proof(DPOP_KEY, htu=htu), dpopNonceRequired=True)
    assert (
        challenged["action"] == "BAD_REQUEST" and json.loads(challenged["responseContent"])["error"] == "use_dpop_nonce"
    )
    created = await call(dpop=dpop_proof(DPOP_KEY, htu=htu, nonce=challenged["dpopNonce"]), dpopNonceRequired=True)
    assert created["action"] == "CREATED" and created["dpopNonce"]
    assert (await call(dpop=dpop_proof(DPOP_KEY, htu=service.par_url)))["action"] == "BAD_REQUEST"  # htu is given


async def test_dpop_required_client(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    bound = await factory.client(service, dpopRequired=True)
    assert error_of(await push(client, service, bound)) == "invalid_request"
    assert (await push(client, service, bound, dpop_jkt=DPOP_KEY.thumbprint())).status_code == 201
    proof = dpop_proof(DPOP_KEY, htu=service.par_url)
    assert (await push(client, service, bound, headers={"DPoP": proof})).status_code == 201


# --- request objects (RFC 9101 at PAR) ----------------------------------------------------------------------


@pytest.fixture
async def jar_client(factory: Factory, service: ServiceHandle) -> ClientHandle:
    return await factory.client(service, jwks=public_jwks(SIGNING_KEY))


def signed_request(client: ClientHandle, service: ServiceHandle, **overrides: Any) -> dict[str, str]:
    parameters: dict[str, Any] = {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "inside",
        "code_challenge": CODE_CHALLENGE,
        "code_challenge_method": "S256",
    }
    parameters.update(overrides)
    parameters = {key: value for key, value in parameters.items() if value is not None}
    return {
        "client_id": str(client.id),
        "request": request_object(client, SIGNING_KEY, aud=service.issuer, **parameters),
    }


async def test_signed_request_object_is_used_alone(
    client: httpx.AsyncClient, service: ServiceHandle, jar_client: ClientHandle
) -> None:
    """PAR-06 / PAR-27 / JAR-03: only the request object's parameters count (…-state-only-outside-…)."""
    form = signed_request(jar_client, service) | {"state": "outside", "scope": "payments"}
    response = await client.post(service.par_path, data=form, headers=jar_client.basic())
    assert response.status_code == 201, response.text
    request = await resolved_request(client, service, jar_client, response.json()["request_uri"])
    assert request["state"] == "inside" and request["scopes"] == ["openid"]
    assert request["signedRequestObject"] is True


@pytest.mark.parametrize("problem", ["wrong-key", "expired", "request_uri-claim", "other-client", "wrong-aud"])
async def test_bad_request_objects(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, jar_client: ClientHandle, problem: str
) -> None:
    """JAR-02, -04, -06, -07 / PAR-29: invalid_request_object."""
    form = signed_request(jar_client, service)
    if problem == "wrong-key":
        stranger = ECKey.generate_key("P-256", private=True, parameters={"kid": "sig-1"})
        form["request"] = request_object(jar_client, stranger, aud=service.issuer, response_type="code")
    elif problem == "expired":
        form["request"] = request_object(
            jar_client, SIGNING_KEY, aud=service.issuer, lifetime=-120, response_type="code"
        )
    elif problem == "request_uri-claim":
        form = signed_request(jar_client, service, request_uri="urn:ietf:params:oauth:request_uri:x")
    elif problem == "other-client":
        other = await factory.client(service, jwks=public_jwks(SIGNING_KEY))
        form["request"] = request_object(other, SIGNING_KEY, aud=service.issuer, response_type="code")
    else:
        form["request"] = request_object(jar_client, SIGNING_KEY, aud=service.par_url, response_type="code")
    response = await client.post(service.par_path, data=form, headers=jar_client.basic())
    assert error_of(response) in ("invalid_request_object", "invalid_request")


async def test_request_object_required(client: httpx.AsyncClient, factory: Factory) -> None:
    """PAR-22: plain parameters are refused with invalid_request when request objects are required."""
    service = await factory.service(requestObjectRequired=True)
    par_client = await factory.client(service, jwks=public_jwks(SIGNING_KEY))
    assert error_of(await push(client, service, par_client)) == "invalid_request"
    response = await client.post(service.par_path, data=signed_request(par_client, service), headers=par_client.basic())
    assert response.status_code == 201, response.text


# --- rich authorization requests and resources -------------------------------------------------------------


@pytest.fixture
async def rar_service(factory: Factory) -> ServiceHandle:
    return await factory.service(supportedAuthorizationDetailsTypes=["payment_initiation", "account_information"])


async def test_authorization_details_are_stored_normalised(
    client: httpx.AsyncClient, factory: Factory, rar_service: ServiceHandle
) -> None:
    """RAR-01: a JSON array of objects with a type, kept as parsed JSON."""
    par_client = await factory.client(rar_service)
    details = [{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "123.50"}}]
    response = await push(client, rar_service, par_client, authorization_details=json.dumps(details))
    assert response.status_code == 201, response.text
    request = await resolved_request(client, rar_service, par_client, response.json()["request_uri"])
    assert request["authorizationDetails"] == details


@pytest.mark.parametrize(
    "value",
    [
        '{"type": "payment_initiation"}',
        "[]",
        "not json",
        '[{"no": "type"}]',
        '[{"type": "unknown_type"}]',
        '["payment_initiation"]',
    ],
)
async def test_malformed_authorization_details(
    client: httpx.AsyncClient, factory: Factory, rar_service: ServiceHandle, value: str
) -> None:
    """RAR-02."""
    par_client = await factory.client(rar_service)
    response = await push(client, rar_service, par_client, authorization_details=value)
    assert error_of(response) == "invalid_authorization_details"


async def test_client_authorization_details_types(
    client: httpx.AsyncClient, factory: Factory, rar_service: ServiceHandle
) -> None:
    """RAR-03: a client may be limited to some of the service's types."""
    par_client = await factory.client(rar_service, authorizationDetailsTypes=["account_information"])
    response = await push(client, rar_service, par_client, authorization_details='[{"type": "payment_initiation"}]')
    assert error_of(response) == "invalid_authorization_details"


@pytest.mark.parametrize("resource", ["https://api.example/#frag", "/relative", "not a uri"])
async def test_invalid_resource(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, resource: str
) -> None:
    """RES-02 / RES-03."""
    assert error_of(await push(client, service, basic_client, resource=resource)) == "invalid_target"


async def test_repeated_resources(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """RES-01 / RES-04: resource repeats; every value is kept."""
    body = urlencode(
        [*par_params(basic_client).items(), ("resource", "https://a.example/"), ("resource", "https://b.example/api")]
    )
    response = await client.post(
        service.par_path,
        content=body,
        headers=basic_client.basic() | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201, response.text
    request = await resolved_request(client, service, basic_client, response.json()["request_uri"])
    assert request["resources"] == ["https://a.example/", "https://b.example/api"]


# --- enforcement ----------------------------------------------------------------------------------------------


async def test_unregistered_redirect_uri_when_allowed(client: httpx.AsyncClient, factory: Factory) -> None:
    """PAR-25 / PAR-26: authenticated clients only, still syntax-checked; the resolve accepts it too."""
    service = await factory.service(allowUnregisteredPushedRedirectUris=True)
    confidential = await factory.client(service)
    public = await factory.client(service, clientType="PUBLIC")
    pushed_uri = "https://client.example.org/cb/per-request?session=1"
    response = await push(client, service, confidential, redirect_uri=pushed_uri)
    assert response.status_code == 201, response.text
    assert (await resolved_request(client, service, confidential, response.json()["request_uri"]))[
        "redirectUri"
    ] == pushed_uri
    assert (await push(client, service, confidential, redirect_uri="http://127.0.0.1:8080/cb")).status_code == 201
    assert (
        error_of(await push(client, service, confidential, redirect_uri="http://client.example/cb"))
        == "invalid_request"
    )
    public_response = await client.post(service.par_path, data=par_params(public, redirect_uri=pushed_uri))
    assert error_of(public_response) == "invalid_request"


async def test_unregistered_redirect_uri_refused_by_default(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    response = await push(client, service, basic_client, redirect_uri="https://client.example.org/other")
    assert error_of(response) == "invalid_request"


@pytest.mark.parametrize(
    ("pushed", "accepted"),
    [
        ("http://127.0.0.1:51004/cb?app=1", True),  # any port: an ephemeral one
        ("http://127.0.0.1/cb?app=1", True),  # or none
        ("http://[::1]:8080/cb", True),
        ("http://[::1]/cb", True),
        ("http://127.0.0.1:51004/cb?app=2", False),  # everything but the port matches exactly
        ("http://127.0.0.1:51004/cb/", False),
        ("http://127.0.0.1:51004/CB?app=1", False),
        ("http://127.0.0.2:51004/cb?app=1", False),
        ("https://127.0.0.1:51004/cb?app=1", False),
        ("http://127.0.0.1:99999/cb?app=1", False),
        ("http://user@127.0.0.1:51004/cb?app=1", False),
        ("http://[::1]:8080/other", False),
        ("http://localhost:51004/cb", False),  # RFC 8252 §8.3: localhost matches exactly
        ("http://localhost:3000/cb", True),
        ("https://client.example.org:8443/cb", False),
    ],
)
async def test_loopback_ip_redirect_uris_match_any_port(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, pushed: str, accepted: bool
) -> None:
    """PAR-39 / RFC 8252 §7.3: "The authorization server MUST allow any port to be specified at the time of the
    request for loopback IP redirect URIs"; the URI pushed is the one stored and redirected to."""
    native = await factory.client(
        service,
        clientType="PUBLIC",
        redirectUris=[
            "http://127.0.0.1/cb?app=1",
            "http://[::1]:9000/cb",
            "http://localhost:3000/cb",
            "https://client.example.org/cb",
        ],
    )
    response = await client.post(service.par_path, data=par_params(native, redirect_uri=pushed))
    if not accepted:
        assert error_of(response) == "invalid_request", response.text
        return
    assert response.status_code == 201, response.text
    request = await resolved_request(client, service, native, response.json()["request_uri"])
    assert request["redirectUri"] == pushed


# --- FAPI 2.0 profile ---------------------------------------------------------------------------------------


@pytest.fixture
async def fapi_service(factory: Factory) -> ServiceHandle:
    return await factory.service(fapiModes=["FAPI2_SECURITY"], pushedAuthReqDuration=900)


@pytest.fixture
async def fapi_client(factory: Factory, fapi_service: ServiceHandle) -> ClientHandle:
    return await factory.client(fapi_service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(SIGNING_KEY))


def fapi_credentials(client: ClientHandle, service: ServiceHandle, aud: str | None = None) -> dict[str, str]:
    return client_assertion(client, SIGNING_KEY, "ES256", aud=aud or service.issuer)


async def test_fapi2_profile_accepts_a_conforming_push(
    client: httpx.AsyncClient, fapi_service: ServiceHandle, fapi_client: ClientHandle
) -> None:
    """FAPI-01..07: private_key_jwt, PKCE S256, DPoP, expires_in < 600."""
    response = await client.post(
        fapi_service.par_path,
        data=par_params(fapi_client) | fapi_credentials(fapi_client, fapi_service),
        headers={"DPoP": dpop_proof(DPOP_KEY, htu=fapi_service.par_url)},
    )
    assert response.status_code == 201, response.text
    assert response.json()["expires_in"] == 599


@pytest.mark.parametrize("problem", ["no-sender-constraint", "plain-pkce", "par-endpoint-aud", "array-aud"])
async def test_fapi2_profile_refusals(
    client: httpx.AsyncClient, fapi_service: ServiceHandle, fapi_client: ClientHandle, problem: str
) -> None:
    """FAPI-04 (plain PKCE), FAPI-10 (aud), FAPI-12 (sender constraint)."""
    headers = {"DPoP": dpop_proof(DPOP_KEY, htu=fapi_service.par_url)}
    params = par_params(fapi_client)
    credentials = fapi_credentials(fapi_client, fapi_service)
    expected = "invalid_request"
    if problem == "no-sender-constraint":
        headers = {}
    elif problem == "plain-pkce":
        params = par_params(fapi_client, code_challenge="a" * 43, code_challenge_method="plain")
    else:
        aud: Any = fapi_service.par_url if problem == "par-endpoint-aud" else [fapi_service.issuer]
        credentials = client_assertion(fapi_client, SIGNING_KEY, "ES256", aud=aud)
        expected = "invalid_client"
    response = await client.post(fapi_service.par_path, data=params | credentials, headers=headers)
    assert response.json()["error"] == expected, response.text


@pytest.mark.parametrize(
    "fields",
    [{}, {"tokenAuthMethod": "CLIENT_SECRET_POST"}, {"clientType": "PUBLIC", "tokenAuthMethod": "NONE"}],
    ids=["basic", "post", "none"],
)
async def test_fapi2_profile_refuses_other_clients_at_registration(
    client: httpx.AsyncClient,
    fapi_service: ServiceHandle,
    fapi_client: ClientHandle,
    fields: dict[str, str],
) -> None:
    """FAPI-09: only private_key_jwt and mutual TLS; a client that could never push is not registered,
    and a registered one cannot be changed into one."""
    create = await client.post(
        f"/api/{fapi_service.id}/client/create",
        json={"redirectUris": [REDIRECT_URI], **fields},
        headers=fapi_service.bearer,
    )
    assert create.status_code == 400 and "FAPI 2.0" in create.json()["resultMessage"], create.text
    update = await client.post(
        f"/api/{fapi_service.id}/client/update/{fapi_client.id}",
        json={"tokenAuthMethod": "CLIENT_SECRET_BASIC", **fields},
        headers=fapi_service.bearer,
    )
    assert update.status_code == 400 and "FAPI 2.0" in update.json()["resultMessage"], update.text
    listed = await client.get(f"/api/{fapi_service.id}/client/get/list", headers=fapi_service.bearer)
    assert [c["clientId"] for c in listed.json()["clients"]] == [fapi_client.id]


async def test_switching_to_fapi2_with_clients_it_excludes_is_refused(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Such clients would start failing every push unannounced: the switch is a 409 naming them, until
    they move to an allowed method or go; the service is left as it was."""
    kept = await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(SIGNING_KEY))
    url = f"/api/{service.id}/service/update"
    refused = await client.post(url, json={"fapiModes": ["FAPI2_SECURITY"]}, headers=service.bearer)
    assert refused.status_code == 409, refused.text
    assert str(basic_client.id) in refused.json()["resultMessage"]
    assert str(kept.id) not in refused.json()["resultMessage"]
    got = await client.get(f"/api/{service.id}/service/get", headers=service.bearer)
    assert got.json()["fapiModes"] == []
    deleted = await client.delete(f"/api/{service.id}/client/delete/{basic_client.id}", headers=service.bearer)
    assert deleted.status_code == 204
    switched = await client.post(url, json={"fapiModes": ["FAPI2_SECURITY"]}, headers=service.bearer)
    assert switched.status_code == 200 and switched.json()["fapiModes"] == ["FAPI2_SECURITY"], switched.text


async def test_fapi2_profile_requires_par_and_publishes_it(
    client: httpx.AsyncClient, fapi_service: ServiceHandle, fapi_client: ClientHandle
) -> None:
    """FAPI-02: plain authorization requests are refused; metadata says PAR is required."""
    metadata = (await client.get(f"/.well-known/oauth-authorization-server/services/{fapi_service.id}")).json()
    assert metadata["require_pushed_authorization_requests"] is True
    assert metadata["response_types_supported"] == ["code"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    }
    answer = (
        await client.post(
            f"/api/{fapi_service.id}/pushed_auth_req/resolve",
            headers=fapi_service.bearer,
            json={"parameters": urlencode(par_params(fapi_client))},
        )
    ).json()
    assert answer["action"] == "LOCATION" and "invalid_request" in answer["responseContent"]


async def test_metadata_advertises_jar_dpop_and_rar(client: httpx.AsyncClient, factory: Factory) -> None:
    """META-06, META-09, META-10."""
    service = await factory.service(requestObjectRequired=True, supportedAuthorizationDetailsTypes=["payment"])
    metadata = (await client.get(f"/.well-known/oauth-authorization-server/services/{service.id}")).json()
    assert metadata["request_parameter_supported"] is True and metadata["require_signed_request_object"] is True
    assert "ES256" in metadata["request_object_signing_alg_values_supported"]
    assert (
        "ES256" in metadata["dpop_signing_alg_values_supported"]
        and "none" not in metadata["dpop_signing_alg_values_supported"]
    )
    assert metadata["authorization_details_types_supported"] == ["payment"]
