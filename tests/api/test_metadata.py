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
