"""Authorization server metadata (RFC 8414, path insertion) and OpenID discovery, per service."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.factories import Factory, ServiceHandle

BASE_URL = "http://par.test"
OAUTH_METADATA = "/.well-known/oauth-authorization-server/services/{id}"
OPENID_CONFIGURATION = "/services/{id}/.well-known/openid-configuration"


@pytest.fixture(params=[OAUTH_METADATA, OPENID_CONFIGURATION], ids=["rfc8414", "openid"])
def metadata_path(request: pytest.FixtureRequest) -> str:
    path: str = request.param
    return path


async def fetch(http: httpx.AsyncClient, path: str, service_id: int) -> dict[str, Any]:
    response = await http.get(path.format(id=service_id))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


async def update(http: httpx.AsyncClient, service: ServiceHandle, **fields: Any) -> None:
    response = await http.post(f"/api/{service.id}/service/update", json=fields, headers=service.bearer)
    assert response.status_code == 200, response.text


async def test_issuer_is_the_service_issuer(client: httpx.AsyncClient, factory: Factory, metadata_path: str) -> None:
    """META-01: the document's issuer equals the issuer, and the URL is derived from it (RFC 8414 §3)."""
    service = await factory.service()
    body = await fetch(client, metadata_path, service.id)
    assert body["issuer"] == service.body["issuer"] == f"{BASE_URL}/services/{service.id}"
    issuer = urlsplit(body["issuer"])
    derived = {
        OAUTH_METADATA: "/.well-known/oauth-authorization-server" + issuer.path,
        OPENID_CONFIGURATION: issuer.path + "/.well-known/openid-configuration",
    }
    assert derived[metadata_path] == metadata_path.format(id=service.id)


async def test_par_endpoint_is_published(client: httpx.AsyncClient, factory: Factory, metadata_path: str) -> None:
    """PAR-04 / META-02: pushed_authorization_request_endpoint is the endpoint that accepts pushes."""
    service = await factory.service()
    body = await fetch(client, metadata_path, service.id)
    assert body["pushed_authorization_request_endpoint"] == f"{BASE_URL}{service.par_path}"
    assert body["pushed_authorization_request_endpoint"] == service.body["pushedAuthReqEndpoint"]


@pytest.mark.parametrize("par_required", [False, True])
async def test_require_pushed_authorization_requests_follows_par_required(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str, par_required: bool
) -> None:
    """META-03: a JSON boolean, set from the service's parRequired, and updated with it."""
    service = await factory.service(parRequired=par_required)
    assert (await fetch(client, metadata_path, service.id))["require_pushed_authorization_requests"] is par_required
    await update(client, service, parRequired=not par_required)
    body = await fetch(client, metadata_path, service.id)
    assert body["require_pushed_authorization_requests"] is (not par_required)


@pytest.mark.parametrize(
    ("methods", "published"),
    [
        (
            None,
            [
                "client_secret_basic",
                "client_secret_jwt",
                "client_secret_post",
                "none",
                "private_key_jwt",
                "self_signed_tls_client_auth",
                "tls_client_auth",
            ],
        ),
        (["CLIENT_SECRET_BASIC"], ["client_secret_basic"]),
        (["NONE", "CLIENT_SECRET_POST"], ["client_secret_post", "none"]),
    ],
)
async def test_token_endpoint_auth_methods_supported(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str, methods: list[str] | None, published: list[str]
) -> None:
    """META-04 / PAR-07: the RFC names of the service's supportedTokenAuthMethods."""
    service = await factory.service(supportedTokenAuthMethods=methods)
    body = await fetch(client, metadata_path, service.id)
    assert sorted(body["token_endpoint_auth_methods_supported"]) == published


async def test_code_challenge_methods_supported(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str
) -> None:
    """META-05 / PKCE-07: S256 is always advertised; only S256 when the service requires it."""
    service = await factory.service()
    assert "S256" in (await fetch(client, metadata_path, service.id))["code_challenge_methods_supported"]
    await update(client, service, pkceS256Required=True)
    assert (await fetch(client, metadata_path, service.id))["code_challenge_methods_supported"] == ["S256"]


async def test_scopes_and_response_types_supported(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str
) -> None:
    service = await factory.service(supportedResponseTypes=["CODE", "CODE_ID_TOKEN"])
    body = await fetch(client, metadata_path, service.id)
    assert sorted(body["scopes_supported"]) == ["email", "openid", "payments", "profile"]
    assert sorted(body["response_types_supported"]) == ["code", "code id_token"]
    await update(client, service, supportedScopes=["accounts"])
    assert (await fetch(client, metadata_path, service.id))["scopes_supported"] == ["accounts"]


async def test_service_without_scopes_publishes_none(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str
) -> None:
    service = await factory.service(supportedScopes=[])
    body = await fetch(client, metadata_path, service.id)
    assert body.get("scopes_supported", []) == []
    assert body["response_types_supported"] == ["code"]


async def test_custom_issuer_and_par_endpoint_are_reflected(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str
) -> None:
    """META-01 / META-02: what the operator configures is what clients discover."""
    service = await factory.service()
    await update(
        client,
        service,
        issuer="https://as.example.com/tenant-a/",
        pushedAuthReqEndpoint="https://as.example.com/tenant-a/par",
    )
    body = await fetch(client, metadata_path, service.id)
    assert body["issuer"] == "https://as.example.com/tenant-a"  # no trailing slash: compared as a string
    assert body["pushed_authorization_request_endpoint"] == "https://as.example.com/tenant-a/par"


async def test_both_documents_agree(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(parRequired=True)
    assert await fetch(client, OAUTH_METADATA, service.id) == await fetch(client, OPENID_CONFIGURATION, service.id)


async def test_unknown_or_deleted_service_is_404(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str
) -> None:
    """Outside /api errors are RFC 6749 §5.2 JSON, as at the service's PAR endpoint (app/api/errors.py)."""
    service = await factory.service()
    deleted = await client.delete(f"/api/{service.id}/service/delete", headers=factory.admin)
    assert deleted.status_code == 204
    for service_id in (service.id, 999_999_999_999):
        response = await client.get(metadata_path.format(id=service_id))
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json().get("error") == "not_found", response.text


# RFC 8414 §2 members that are JSON arrays.
ARRAY_MEMBERS = (
    "scopes_supported",
    "response_types_supported",
    "response_modes_supported",
    "grant_types_supported",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
    "code_challenge_methods_supported",
)


def assert_rfc8414_document(body: dict[str, Any]) -> None:
    """What RFC 8414 §2 and §3.2 ask of every metadata document (META-01, META-04, META-11)."""
    issuer = urlsplit(body["issuer"])  # REQUIRED
    assert issuer.scheme in ("http", "https") and not issuer.query and not issuer.fragment
    assert body["authorization_endpoint"]  # REQUIRED: every service takes authorization requests (pushed)
    if set(body.get("grant_types_supported", [])) != {"implicit"}:
        assert body["token_endpoint"]  # REQUIRED "unless only the implicit grant type is supported"
    assert body["response_types_supported"]  # REQUIRED
    for member, value in body.items():
        assert value is not None, member
        if member in ARRAY_MEMBERS:
            assert isinstance(value, list) and value, member  # §3.2: "Claims with zero elements MUST be omitted"
    methods = set(body.get("token_endpoint_auth_methods_supported", ["client_secret_basic"]))
    if methods & {"private_key_jwt", "client_secret_jwt"}:
        algorithms = body["token_endpoint_auth_signing_alg_values_supported"]  # "MUST be present"
        assert "none" not in algorithms  # "The value "none" MUST NOT be used."


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"supportedScopes": []}, id="no-scopes"),
        pytest.param({"fapiModes": ["FAPI2_SECURITY"]}, id="fapi2"),
        pytest.param({"supportedTokenAuthMethods": ["PRIVATE_KEY_JWT"]}, id="private-key-jwt-only"),
        pytest.param({"supportedTokenAuthMethods": ["CLIENT_SECRET_JWT", "NONE"]}, id="client-secret-jwt"),
        pytest.param({"supportedGrantTypes": []}, id="no-grant-types"),
        pytest.param({"supportedAuthorizationDetailsTypes": []}, id="no-rar-types"),
        pytest.param(
            {"supportedGrantTypes": ["IMPLICIT"], "supportedResponseTypes": ["TOKEN"], "tokenEndpoint": ""},
            id="implicit-only-without-token-endpoint",
        ),
        pytest.param({"supportedResponseTypes": ["CODE_ID_TOKEN"], "pkceS256Required": True}, id="hybrid"),
    ],
)
async def test_every_published_document_has_what_rfc8414_requires(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str, fields: dict[str, Any]
) -> None:
    service = await factory.service(**fields)
    assert_rfc8414_document(await fetch(client, metadata_path, service.id))


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        pytest.param({"authorizationEndpoint": None}, ["authorizationEndpoint"], id="no-authorization-endpoint"),
        pytest.param({"tokenEndpoint": None}, ["tokenEndpoint"], id="no-token-endpoint"),
        pytest.param(
            {"authorizationEndpoint": None, "tokenEndpoint": None},
            ["authorizationEndpoint", "tokenEndpoint"],
            id="neither",
        ),
        pytest.param({"supportedResponseTypes": []}, ["supportedResponseTypes"], id="no-response-types"),
        pytest.param({"supportedTokenAuthMethods": []}, ["supportedTokenAuthMethods"], id="no-auth-methods"),
        pytest.param(
            {"fapiModes": ["FAPI2_SECURITY"], "supportedTokenAuthMethods": ["CLIENT_SECRET_BASIC"]},
            ["supportedTokenAuthMethods"],
            id="fapi2-without-its-auth-methods",
        ),
        pytest.param(
            {"fapiModes": ["FAPI2_SECURITY"], "supportedResponseTypes": ["TOKEN"]},
            ["supportedResponseTypes"],
            id="fapi2-without-code",
        ),
    ],
)
async def test_no_document_without_what_rfc8414_requires(
    client: httpx.AsyncClient, factory: Factory, metadata_path: str, fields: dict[str, Any], missing: list[str]
) -> None:
    """META-11: RFC 8414 §2 makes authorization_endpoint, token_endpoint (unless only implicit) and
    response_types_supported REQUIRED: without them the document is a 404 naming what to configure, never
    an invalid document; once configured it is served."""
    service = await factory.service(**fields)
    response = await client.get(metadata_path.format(id=service.id))
    assert response.status_code == 404 and response.json()["error"] == "not_found", response.text
    assert all(name in response.json()["error_description"] for name in missing)
    assert response.headers["cache-control"] == "no-store"
    await update(
        client,
        service,
        authorizationEndpoint="https://as.example.org/authorize",
        tokenEndpoint="https://as.example.org/token",
        supportedResponseTypes=["CODE"],
        supportedTokenAuthMethods=["PRIVATE_KEY_JWT"],
    )
    assert_rfc8414_document(await fetch(client, metadata_path, service.id))
