"""The OpenAPI document: a request body for every operation that reads one, the security schemes, and
each operation's requirement matching what the server enforces."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from app.api.openapi import (
    ADMIN_ONLY,
    ADMIN_TOKEN,
    CLIENT_AUTHENTICATION,
    CLIENT_SECRET_BASIC,
    MUTUAL_TLS,
    SERVICE_ACCESS_TOKEN,
    SERVICE_OR_ADMIN,
)
from app.core.urls import PAR_PATH
from tests.factories import Factory

WITH_BODY = ("post", "put", "patch")
# Authlete's secret refresh takes no body: its POST is the same call as its GET.
WITHOUT_BODY = {("post", "/api/{service_id}/client/secret/refresh/{client_id}")}
PUBLIC_PATHS = (
    "/.well-known/oauth-authorization-server/services/{service_id}",
    "/services/{service_id}/.well-known/openid-configuration",
    "/healthz",
    "/readyz",
    "/metrics",
)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "patch", "head", "options")
    ]


def test_every_operation_that_reads_a_body_documents_it(app: FastAPI) -> None:
    missing = [
        f"{method.upper()} {path}"
        for method, path, operation in operations(app.openapi())
        if method in WITH_BODY and (method, path) not in WITHOUT_BODY and not operation.get("requestBody")
    ]
    assert not missing, missing
    for method, path in WITHOUT_BODY:
        assert "requestBody" not in app.openapi()["paths"][path][method]


def test_resolve_and_consume_document_the_json_their_handlers_read(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for operation, fields in (("resolve", {"parameters"}), ("consume", {"clientId", "requestUri"})):
        body = paths[f"/api/{{service_id}}/pushed_auth_req/{operation}"]["post"]["requestBody"]
        assert body["required"] is True
        assert set(body["content"]) == {"application/json"}
        assert set(body["content"]["application/json"]["schema"]["properties"]) == fields


def test_the_push_documents_its_form_and_the_client_credentials_in_it(app: FastAPI) -> None:
    body = app.openapi()["paths"][PAR_PATH]["post"]["requestBody"]
    schema = body["content"]["application/x-www-form-urlencoded"]["schema"]
    assert {"client_id", "client_secret", "client_assertion", "client_assertion_type"} <= set(schema["properties"])
    assert schema["additionalProperties"] == {"type": "string"}


def test_security_schemes(app: FastAPI) -> None:
    schemes = app.openapi()["components"]["securitySchemes"]
    assert schemes[SERVICE_ACCESS_TOKEN] | {"type": "http", "scheme": "bearer"} == schemes[SERVICE_ACCESS_TOKEN]
    assert schemes[ADMIN_TOKEN] | {"type": "http", "scheme": "bearer"} == schemes[ADMIN_TOKEN]
    assert schemes[CLIENT_SECRET_BASIC] | {"type": "http", "scheme": "basic"} == schemes[CLIENT_SECRET_BASIC]
    assert schemes[MUTUAL_TLS]["type"] == "mutualTLS"  # OpenAPI 3.1 §4.8.27
    assert all(scheme["description"] for scheme in schemes.values())


def test_each_operation_names_the_credentials_it_takes(app: FastAPI) -> None:
    """Every /api operation a bearer token (the admin token alone for service management and tokens), the
    RFC 9126 endpoint client authentication, the public endpoints none; every name is a scheme."""
    document = app.openapi()
    schemes = set(document["components"]["securitySchemes"])
    for method, path, operation in operations(document):
        security = operation.get("security")
        if path.startswith("/api/"):
            assert security in (SERVICE_OR_ADMIN, ADMIN_ONLY), (method, path)
        elif path == PAR_PATH:
            assert security == CLIENT_AUTHENTICATION
        else:
            assert path in PUBLIC_PATHS and security is None, (method, path)
        for requirement in security or []:
            assert set(requirement) <= schemes, (method, path)
    admin_only = {
        (method, path) for method, path, operation in operations(document) if operation.get("security") == ADMIN_ONLY
    }
    assert ("post", "/api/service/create") in admin_only
    assert ("post", "/api/{service_id}/pushed_auth_req/resolve") not in admin_only


async def test_the_documented_requirements_are_enforced(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    """Every /api operation refuses a call without a token (401); one documented for the admin token alone
    refuses a service access token (401), and one documented for either takes it (no 401)."""
    service = await factory.service()
    for method, path, operation in operations(app.openapi()):
        if not path.startswith("/api/"):
            continue
        url = path.format(service_id=service.id, client_id="0", token_id="0")
        anonymous = await client.request(method, url, json={})
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        with_service_token = await client.request(
            method, url, json={}, headers={"Authorization": f"Bearer {service.token}"}
        )
        if operation["security"] == ADMIN_ONLY:
            assert with_service_token.status_code == 401, (method, path, with_service_token.text)
        else:
            assert with_service_token.status_code != 401, (method, path, with_service_token.text)
