"""Every token-endpoint client authentication method at both front doors.

The requirements: the CA- and MTLS- ids and NOTE-01 of docs/requirements.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from joserfc.jwk import ECKey, OctKey, RSAKey

from app.core.client_assertion import CLIENT_ASSERTION_TYPE
from app.main import create_app
from app.settings import Settings
from tests.certificates import pem, rfc9440, self_signed
from tests.conftest import BASE_URL, make_settings
from tests.factories import (
    ClientHandle,
    Factory,
    ServiceHandle,
    client_assertion,
    par_params,
    public_jwks,
    push,
    unsigned_jwt,
)
from tests.jwks_server import JwksServer


@pytest.fixture
def settings(database_url: str) -> Settings:
    """A proxy that sets Client-Cert is trusted, and jwksUri may point at this machine (the test server)."""
    return make_settings(
        database_url,
        trust_client_certificate_header=True,
        jwks_allow_private_addresses=True,
        jwks_refetch_min_interval_seconds=0,
    )


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def assert_invalid_client(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_client" and fragment in body["error_description"], body


EC_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"})
RSA_KEY = RSAKey.generate_key(2048, private=True, parameters={"kid": "rsa-1"})


@pytest.fixture
async def key_client(factory: Factory, service: ServiceHandle) -> ClientHandle:
    return await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(EC_KEY, RSA_KEY))


# --- private_key_jwt ------------------------------------------------------------------------------------


async def test_private_key_jwt(client: httpx.AsyncClient, service: ServiceHandle, key_client: ClientHandle) -> None:
    """CA-01..06: an assertion signed with a registered key; client_id may be left out (RFC 7521 §4.2)."""
    assert key_client.secret is None
    for key, alg in ((EC_KEY, "ES256"), (RSA_KEY, "PS256"), (RSA_KEY, "RS256")):
        response = await push(client, service, key_client, client_assertion(key_client, key, alg, aud=service.issuer))
        assert response.status_code == 201, response.text
    credentials = client_assertion(key_client, EC_KEY, "ES256", aud=service.issuer)
    assert (await push(client, service, key_client, credentials, client_id=None)).status_code == 201


async def test_backend_reports_the_method(
    client: httpx.AsyncClient, service: ServiceHandle, key_client: ClientHandle
) -> None:
    parameters = par_params(key_client) | client_assertion(key_client, EC_KEY, "ES256", aud=service.issuer)
    answer = (
        await client.post(
            f"/api/{service.id}/pushed_auth_req", headers=service.bearer, json={"parameters": urlencode(parameters)}
        )
    ).json()
    assert (answer["action"], answer["clientAuthMethod"]) == ("CREATED", "PRIVATE_KEY_JWT")


async def test_wrong_key_and_expired_and_future(
    client: httpx.AsyncClient, service: ServiceHandle, key_client: ClientHandle
) -> None:
    other = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"})
    aud = service.issuer
    now = int(time.time())
    assert_invalid_client(
        await push(client, service, key_client, client_assertion(key_client, other, "ES256", aud=aud)), "signature"
    )
    expired = client_assertion(key_client, EC_KEY, "ES256", aud=aud, iat=now - 120, exp=now - 60)
    assert_invalid_client(await push(client, service, key_client, expired), "expired")
    future = client_assertion(key_client, EC_KEY, "ES256", aud=aud, iat=now + 120, exp=now + 180)
    assert_invalid_client(await push(client, service, key_client, future), "future")


async def test_alg_none_is_refused(client: httpx.AsyncClient, service: ServiceHandle, key_client: ClientHandle) -> None:
    now = int(time.time())
    claims = {"iss": str(key_client.id), "sub": str(key_client.id), "aud": service.issuer, "jti": "n", "exp": now + 60}
    unsigned = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": unsigned_jwt(claims)}
    assert_invalid_client(await push(client, service, key_client, unsigned), "not allowed")


async def test_replayed_jti_is_refused_even_after_a_failed_push(
    client: httpx.AsyncClient, service: ServiceHandle, key_client: ClientHandle
) -> None:
    """CA-05: the assertion is used once, whatever became of the request that used it."""
    credentials = client_assertion(key_client, EC_KEY, "ES256", aud=service.issuer)
    failed = await push(client, service, key_client, credentials, scope="admin")
    assert failed.json()["error"] == "invalid_scope"
    assert_invalid_client(await push(client, service, key_client, credentials), "already used")


async def test_replay_is_refused_across_replicas(
    client: httpx.AsyncClient, second_replica: httpx.AsyncClient, service: ServiceHandle, key_client: ClientHandle
) -> None:
    credentials = client_assertion(key_client, EC_KEY, "ES256", aud=service.issuer)
    assert (await push(client, service, key_client, credentials)).status_code == 201
    assert_invalid_client(await push(second_replica, service, key_client, credentials), "already used")


@pytest.mark.parametrize(
    ("policy", "audience", "accepted"),
    [
        ("RFC9126", "issuer", True),
        ("RFC9126", "par", True),
        ("RFC9126", "token", True),
        ("RFC9126", "array", True),
        ("RFC9126", "other", False),
        ("FAPI2", "issuer", True),
        ("FAPI2", "par", False),
        ("FAPI2", "token", False),
        ("FAPI2", "array", False),
    ],
)
async def test_audience_policies(
    client: httpx.AsyncClient, factory: Factory, policy: str, audience: str, accepted: bool
) -> None:
    """PAR-08 vs FAPI-10 (NOTE-01), chosen per service."""
    service = await factory.service(clientAssertionAudiencePolicy=policy, tokenEndpoint="https://as.example/token")
    key_client = await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(EC_KEY))
    aud = {
        "issuer": service.issuer,
        "par": f"{BASE_URL}{service.par_path}",
        "token": "https://as.example/token",
        "array": [service.issuer],
        "other": "https://elsewhere.example",
    }[audience]
    response = await push(client, service, key_client, client_assertion(key_client, EC_KEY, "ES256", aud=aud))
    if accepted:
        assert response.status_code == 201, response.text
    else:
        assert_invalid_client(response, "aud")


async def test_authlete_aud_restricted_to_issuer_sets_the_audience_policy(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """Authlete's clientAssertionAudRestrictedToIssuer is the same choice (CA-03, NOTE-01): true accepts
    only the issuer, false also the endpoints (PAR-08); it is shown, and a contradiction is refused."""
    service = await factory.service(clientAssertionAudRestrictedToIssuer=True)
    assert service.body["clientAssertionAudiencePolicy"] == "FAPI2"
    assert service.body["clientAssertionAudRestrictedToIssuer"] is True
    key_client = await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(EC_KEY))
    to_par = client_assertion(key_client, EC_KEY, "ES256", aud=f"{BASE_URL}{service.par_path}")
    assert_invalid_client(await push(client, service, key_client, to_par), "aud")
    update = f"/api/{service.id}/service/update"
    answer = await client.post(update, headers=service.bearer, json={"clientAssertionAudRestrictedToIssuer": False})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["clientAssertionAudiencePolicy"], answer.json()["clientAssertionAudRestrictedToIssuer"]) == (
        "RFC9126",
        False,
    )
    to_par = client_assertion(key_client, EC_KEY, "ES256", aud=f"{BASE_URL}{service.par_path}")
    assert (await push(client, service, key_client, to_par)).status_code == 201
    contradiction = {"clientAssertionAudRestrictedToIssuer": True, "clientAssertionAudiencePolicy": "RFC9126"}
    refused = await client.post(update, headers=service.bearer, json=contradiction)
    assert refused.status_code == 400 and "contradicts" in refused.json()["resultMessage"], refused.text


async def test_a_fapi2_service_read_and_sent_back_unchanged_is_accepted(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """A FAPI 2.0 service answers clientAssertionAudRestrictedToIssuer true (in force) beside its stored
    policy; the read-modify-write the README recommends sends that pair back, and it is what the service is."""
    service = await factory.service(fapiModes=["FAPI2_SECURITY"])
    read = await client.get(f"/api/{service.id}/service/get", headers=service.bearer)
    assert read.status_code == 200, read.text
    body = read.json()
    assert (body["clientAssertionAudiencePolicy"], body["clientAssertionAudRestrictedToIssuer"]) == ("RFC9126", True)
    written = await client.post(f"/api/{service.id}/service/update", headers=service.bearer, json=body)
    assert written.status_code == 200, written.text
    assert written.json()["clientAssertionAudiencePolicy"] == "RFC9126"
    assert written.json()["clientAssertionAudRestrictedToIssuer"] is True
    del body["fapiModes"]  # a sparse write of the same pair: the stored profile decides
    sparse = await client.post(f"/api/{service.id}/service/update", headers=service.bearer, json=body)
    assert sparse.status_code == 200, sparse.text


async def test_jwks_uri_with_key_rotation(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, jwks_server: JwksServer
) -> None:
    """An unknown kid after the client rotated the keys at its jwks_uri is answered by one refetch."""
    first = ECKey.generate_key("P-256", private=True, parameters={"kid": "first"})
    rotated = ECKey.generate_key("P-256", private=True, parameters={"kid": "rotated"})
    jwks_server.document = json.loads(public_jwks(first))
    uri_client = await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwksUri=jwks_server.url)
    assert (
        await push(client, service, uri_client, client_assertion(uri_client, first, "ES256", aud=service.issuer))
    ).status_code == 201
    assert (
        await push(client, service, uri_client, client_assertion(uri_client, first, "ES256", aud=service.issuer))
    ).status_code == 201
    assert jwks_server.hits == 1  # cached
    jwks_server.document = json.loads(public_jwks(rotated))
    response = await push(
        client, service, uri_client, client_assertion(uri_client, rotated, "ES256", aud=service.issuer)
    )
    assert response.status_code == 201, response.text
    assert jwks_server.hits == 2


async def test_unreachable_jwks_uri_is_invalid_client(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    uri_client = await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwksUri="http://127.0.0.1:1/jwks")
    response = await push(
        client, service, uri_client, client_assertion(uri_client, EC_KEY, "ES256", aud=service.issuer)
    )
    assert_invalid_client(response, "jwksUri")


# --- client_secret_jwt ----------------------------------------------------------------------------------


async def test_client_secret_jwt_and_secret_refresh(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    hmac_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_JWT")
    assert hmac_client.secret is not None

    def credentials(secret: str) -> dict[str, str]:
        return client_assertion(hmac_client, OctKey.import_key(secret.encode()), "HS256", aud=service.issuer)

    assert (await push(client, service, hmac_client, credentials(hmac_client.secret))).status_code == 201
    assert_invalid_client(await push(client, service, hmac_client, credentials("w" * 50)), "signature")
    refreshed = (
        await client.post(f"/api/{service.id}/client/secret/refresh/{hmac_client.id}", headers=service.bearer)
    ).json()["newClientSecret"]
    assert (await push(client, service, hmac_client, credentials(refreshed))).status_code == 201
    assert_invalid_client(await push(client, service, hmac_client, credentials(hmac_client.secret)), "signature")


async def test_client_secret_jwt_with_a_given_secret(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    """An adopted client_secret_jwt client keeps its HMAC key, at both front doors; so does one whose
    secret is set through client/secret/update."""
    given = "hs256-key-Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA"
    hmac_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_JWT", clientSecret=given)

    def credentials(secret: str) -> dict[str, str]:
        return client_assertion(hmac_client, OctKey.import_key(secret.encode()), "HS256", aud=service.issuer)

    assert (await push(client, service, hmac_client, credentials(given))).status_code == 201
    backend = {"parameters": urlencode(par_params(hmac_client) | credentials(given))}
    answer = await client.post(f"/api/{service.id}/pushed_auth_req", json=backend, headers=service.bearer)
    assert answer.json()["action"] == "CREATED", answer.text
    updated = "hs256-new-" + "Ab3dE5gH7jK9mN2pQ4sT6vW8yZ0bC1dF"
    response = await client.post(
        f"/api/{service.id}/client/secret/update/{hmac_client.id}",
        json={"clientSecret": updated},
        headers=service.bearer,
    )
    assert response.status_code == 200, response.text
    assert (await push(client, service, hmac_client, credentials(updated))).status_code == 201
    assert_invalid_client(await push(client, service, hmac_client, credentials(given)), "signature")


async def test_switching_to_client_secret_jwt_issues_a_readable_secret(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    update = (
        await client.post(
            f"/api/{service.id}/client/update/{basic_client.id}",
            headers=service.bearer,
            json={"tokenAuthMethod": "CLIENT_SECRET_JWT"},
        )
    ).json()
    secret = update["clientSecret"]
    assert secret != basic_client.secret
    credentials = client_assertion(basic_client, OctKey.import_key(secret.encode()), "HS256", aud=service.issuer)
    assert (await push(client, service, basic_client, credentials)).status_code == 201


async def test_secret_methods_do_not_accept_assertions_and_vice_versa(
    client: httpx.AsyncClient, service: ServiceHandle, key_client: ClientHandle, basic_client: ClientHandle
) -> None:
    assertion = client_assertion(basic_client, EC_KEY, "ES256", aud=service.issuer)
    assert_invalid_client(await push(client, service, basic_client, assertion), "registered for")
    assert_invalid_client(await push(client, service, key_client, {"client_secret": "x"}), "registered for")


# --- mutual TLS -----------------------------------------------------------------------------------------


async def backend_push_with_certificate(
    client: httpx.AsyncClient, service: ServiceHandle, tls_client: ClientHandle, certificate: str
) -> dict[str, Any]:
    """A push through the backend API with ``clientCertificate`` as the authorization server forwards it."""
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req",
        headers=service.bearer,
        json={"parameters": urlencode(par_params(tls_client)), "clientCertificate": certificate},
    )
    answer: dict[str, Any] = response.json()
    return answer


async def test_tls_client_auth(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    """MTLS-02/03: the certificate bound by subject DN, at the backend API and behind a trusted proxy."""
    certificate, _ = self_signed("client.example")
    tls_client = await factory.client(
        service, tokenAuthMethod="TLS_CLIENT_AUTH", tlsClientAuthSubjectDn="CN=client.example,O=Example,C=US"
    )
    answer = await backend_push_with_certificate(client, service, tls_client, pem(certificate))
    assert (answer["action"], answer["clientAuthMethod"]) == ("CREATED", "TLS_CLIENT_AUTH")
    response = await push(client, service, tls_client, {}, headers={"Client-Cert": rfc9440(certificate)})
    assert response.status_code == 201, response.text
    stranger, _ = self_signed("stranger.example")
    assert_invalid_client(
        await push(client, service, tls_client, {}, headers={"Client-Cert": rfc9440(stranger)}), "subject DN"
    )
    assert_invalid_client(await push(client, service, tls_client, {}), "client certificate")


@pytest.mark.parametrize(
    "forwarded",
    [
        pytest.param(lambda c: rfc9440(c).strip(":"), id="bare-base64-der"),
        pytest.param(lambda c: "".join(pem(c).splitlines(keepends=True)[1:-1]), id="pem-body-without-armour"),
    ],
)
async def test_backend_accepts_the_certificate_as_authlete_handlers_forward_it(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, forwarded: Any
) -> None:
    """MTLS-06: authlete-python-django turns an RFC 9440 Client-Cert value into bare base64 DER."""
    certificate, _ = self_signed("client.example")
    tls_client = await factory.client(
        service, tokenAuthMethod="TLS_CLIENT_AUTH", tlsClientAuthSubjectDn="CN=client.example,O=Example,C=US"
    )
    answer = await backend_push_with_certificate(client, service, tls_client, forwarded(certificate))
    assert (answer["action"], answer.get("clientAuthMethod")) == ("CREATED", "TLS_CLIENT_AUTH"), answer


async def test_tls_client_auth_by_san_dns(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    certificate, _ = self_signed("anything", dns="client.example")
    tls_client = await factory.client(service, tokenAuthMethod="TLS_CLIENT_AUTH", tlsClientAuthSanDns="client.example")
    assert (
        await push(client, service, tls_client, {}, headers={"Client-Cert": rfc9440(certificate)})
    ).status_code == 201


async def test_self_signed_tls_client_auth(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    """MTLS-04: the certificate's key is one of the client's registered keys."""
    certificate, private_key = self_signed("self.example")
    jwk = ECKey.import_key(private_key.public_key())
    self_client = await factory.client(service, tokenAuthMethod="SELF_SIGNED_TLS_CLIENT_AUTH", jwks=public_jwks(jwk))
    assert (
        await push(client, service, self_client, {}, headers={"Client-Cert": rfc9440(certificate)})
    ).status_code == 201
    other, _ = self_signed("self.example")
    assert_invalid_client(await push(client, service, self_client, {}, headers={"Client-Cert": rfc9440(other)}), "")


@pytest.fixture
async def untrusting_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(make_settings(database_url))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE_URL) as http:
        yield http
    await application.state.par.aclose()


async def test_certificate_header_is_ignored_unless_trusted(
    untrusting_client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    """MTLS-06: only a proxy the operator trusts may assert a client certificate."""
    certificate, _ = self_signed("client.example")
    tls_client = await factory.client(
        service, tokenAuthMethod="TLS_CLIENT_AUTH", tlsClientAuthSubjectDn="CN=client.example,O=Example,C=US"
    )
    response = await push(untrusting_client, service, tls_client, {}, headers={"Client-Cert": rfc9440(certificate)})
    assert_invalid_client(response, "client certificate")


# --- registration and metadata --------------------------------------------------------------------------


async def test_management_round_trips_the_method_fields(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, key_client: ClientHandle
) -> None:
    fields = {"tokenAuthMethod": "PRIVATE_KEY_JWT", "tokenAuthSignAlg": "ES256", "jwks": public_jwks(EC_KEY)}
    created = await factory.client(service, **fields)
    stored = (await client.get(f"/api/{service.id}/client/get/{created.id}", headers=service.bearer)).json()
    assert {name: stored[name] for name in fields} == fields
    tls = await factory.client(service, tokenAuthMethod="TLS_CLIENT_AUTH", tlsClientAuthSanIp="192.0.2.7")
    assert tls.body["tlsClientAuthSanIp"] == "192.0.2.7" and "clientSecret" not in tls.body
    hmac_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_JWT")
    listed = json.dumps(
        (await client.get(f"/api/{service.id}/client/get/{hmac_client.id}", headers=service.bearer)).json()
    )
    assert hmac_client.secret is not None and hmac_client.secret not in listed and "v1." not in listed


async def test_metadata_advertises_methods_and_signing_algorithms(
    client: httpx.AsyncClient, service: ServiceHandle
) -> None:
    """META-04: token_endpoint_auth_signing_alg_values_supported, never none."""
    metadata = (await client.get(f"/.well-known/oauth-authorization-server/services/{service.id}")).json()
    assert {"private_key_jwt", "client_secret_jwt", "tls_client_auth", "self_signed_tls_client_auth"} <= set(
        metadata["token_endpoint_auth_methods_supported"]
    )
    algorithms = metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert {"ES256", "PS256", "EdDSA", "HS256"} <= set(algorithms) and "none" not in algorithms
