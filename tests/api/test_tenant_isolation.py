"""Tenant isolation: no token, client, request_uri or replay entry of one service is usable in another,
and tests prove it for every API (GEN-05, PAR-07).

Two services, A and B. Every operation whose path names a service is in ``OPERATIONS`` (a test checks
the table against the OpenAPI document, so a new operation cannot be left out), and is called twice:

- on A's path with B's credentials: refused, in the Authlete ``ResultError`` format;
- on B's path with B's credentials and A's objects (client, alias, token, request_uri, client
  credentials): nothing of A's is found or usable.

After each call, A is exactly as it was: the same service, client and tokens, and its pushed request
still resolves.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey

from tests.factories import (
    ClientHandle,
    Factory,
    ServiceHandle,
    assert_result_error,
    client_assertion,
    par_params,
    public_jwks,
)

UNUSABLE = "invalid_request_uri"


@dataclass
class Tenants:
    http: httpx.AsyncClient
    admin: dict[str, str]
    a: ServiceHandle
    b: ServiceHandle
    client_a: ClientHandle
    token_a_id: int
    request_uri_a: str

    async def state_of_a(self) -> dict[str, Any]:
        """Everything of A that a cross-tenant call could change."""
        service = await self.http.get(f"/api/{self.a.id}/service/get", headers=self.a.bearer)
        client = await self.http.get(f"/api/{self.a.id}/client/get/{self.client_a.id}", headers=self.a.bearer)
        tokens = await self.http.get(f"/api/{self.a.id}/service/token/get/list", headers=self.admin)
        resolved = await self.http.post(
            f"/api/{self.a.id}/pushed_auth_req/resolve",
            headers=self.a.bearer,
            json={"parameters": urlencode({"client_id": self.client_a.id, "request_uri": self.request_uri_a})},
        )
        return {
            "service": service.json(),
            "client": client.json(),
            "tokens": tokens.json(),
            "resolve": resolved.json()["action"],
            "pushes": (await self.push_a()).status_code,
        }

    async def push_a(self) -> httpx.Response:
        return await self.http.post(self.a.par_path, data=par_params(self.client_a), headers=self.client_a.basic())


@pytest.fixture
async def tenants(client: httpx.AsyncClient, factory: Factory) -> Tenants:
    service_a, service_b = await factory.service(), await factory.service()
    client_a = await factory.client(service_a, clientIdAlias="shared-alias")
    await factory.client(service_b, clientIdAlias="b-only")
    token = await client.post(f"/api/{service_a.id}/service/token/create", json={}, headers=factory.admin)
    pushed = await client.post(service_a.par_path, data=par_params(client_a), headers=client_a.basic())
    assert token.status_code == 200 and pushed.status_code == 201, (token.text, pushed.text)
    return Tenants(
        client, factory.admin, service_a, service_b, client_a, token.json()["id"], pushed.json()["request_uri"]
    )


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI template
    admin_only: bool = False

    def url(
        self, service_id: int, t: Tenants, *, client_id: int | str | None = None, token_id: int | None = None
    ) -> str:
        return self.path.format(
            service_id=service_id,
            client_id=client_id if client_id is not None else t.client_a.id,
            token_id=token_id if token_id is not None else t.token_a_id,
        )


def backend_push_body(t: Tenants) -> dict[str, Any]:
    return {
        "parameters": urlencode(par_params(t.client_a)),
        "clientId": str(t.client_a.id),
        "clientSecret": t.client_a.secret,
    }


def authorization_body(t: Tenants) -> dict[str, Any]:
    return {"parameters": urlencode({"client_id": t.client_a.id, "request_uri": t.request_uri_a})}


def consume_body(t: Tenants) -> dict[str, Any]:
    return {"clientId": str(t.client_a.id), "requestUri": t.request_uri_a}


BODIES: dict[str, Callable[[Tenants], dict[str, Any]]] = {
    "/api/{service_id}/pushed_auth_req": backend_push_body,
    "/api/{service_id}/pushed_auth_req/resolve": authorization_body,
    "/api/{service_id}/pushed_auth_req/consume": consume_body,
    "/api/{service_id}/service/update": lambda _: {"serviceName": "taken over"},
    "/api/{service_id}/client/create": lambda _: {"redirectUris": ["https://attacker.example/cb"]},
    "/api/{service_id}/client/update/{client_id}": lambda _: {"redirectUris": ["https://attacker.example/cb"]},
    "/api/{service_id}/service/token/create": lambda _: {},
    "/api/{service_id}/client/secret/update/{client_id}": lambda _: {
        "clientSecret": "taken-over-Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA"
    },
}

# Every operation whose path names a service, at the /api door (the RFC 9126 endpoint and metadata are
# checked by their own tests below).
OPERATIONS = [
    Operation("POST", "/api/{service_id}/pushed_auth_req"),
    Operation("POST", "/api/{service_id}/pushed_auth_req/resolve"),
    Operation("POST", "/api/{service_id}/pushed_auth_req/consume"),
    Operation("GET", "/api/{service_id}/service/get"),
    Operation("POST", "/api/{service_id}/service/update"),
    Operation("DELETE", "/api/{service_id}/service/delete", admin_only=True),
    Operation("POST", "/api/{service_id}/service/token/create", admin_only=True),
    Operation("GET", "/api/{service_id}/service/token/get/list", admin_only=True),
    Operation("DELETE", "/api/{service_id}/service/token/delete/{token_id}", admin_only=True),
    Operation("POST", "/api/{service_id}/client/create"),
    Operation("GET", "/api/{service_id}/client/get/list"),
    Operation("GET", "/api/{service_id}/client/get/{client_id}"),
    Operation("POST", "/api/{service_id}/client/update/{client_id}"),
    Operation("DELETE", "/api/{service_id}/client/delete/{client_id}"),
    Operation("POST", "/api/{service_id}/client/secret/refresh/{client_id}"),
    Operation("GET", "/api/{service_id}/client/secret/refresh/{client_id}"),
    Operation("POST", "/api/{service_id}/client/secret/update/{client_id}"),
]
OTHER_DOORS = {
    ("POST", "/services/{service_id}/par"),
    ("GET", "/.well-known/oauth-authorization-server/services/{service_id}"),
    ("GET", "/services/{service_id}/.well-known/openid-configuration"),
}


async def call(t: Tenants, operation: Operation, url: str, headers: dict[str, str]) -> httpx.Response:
    make_body = BODIES.get(operation.path)
    body = make_body(t) if make_body else None
    return await t.http.request(operation.method, url, json=body, headers=headers)


def test_the_table_covers_every_operation_that_names_a_service(app: FastAPI) -> None:
    named = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if "{service_id}" in path
        for method in operations
    }
    assert named == {(operation.method, operation.path) for operation in OPERATIONS} | OTHER_DOORS


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: f"{operation.method} {operation.path}")
async def test_another_services_token_is_refused(tenants: Tenants, operation: Operation) -> None:
    """B's service access token acts on B only: 403 A003204 on A's path (401 where only the admin
    token is accepted), and A is unchanged."""
    before = await tenants.state_of_a()
    response = await call(tenants, operation, operation.url(tenants.a.id, tenants), tenants.b.bearer)
    if operation.admin_only:
        assert_result_error(response, 401, "A003201")
    else:
        assert_result_error(response, 403, "A003204")
    assert await tenants.state_of_a() == before


async def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404 and set(response.json()) == {"resultCode", "resultMessage"}, response.text


async def assert_unusable(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] == "BAD_REQUEST" and UNUSABLE in body["responseContent"], body


async def assert_unknown_client(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] == "UNAUTHORIZED" and "invalid_client" in body["responseContent"], body


async def assert_nothing_of_a_listed(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert re.search(r"shared-alias|taken over", response.text) is None


async def assert_only_b(response: httpx.Response) -> None:
    assert response.status_code in (200, 204), response.text


# What B sees when it names A's objects on its own path, with its own token (or the admin token for
# admin-only operations).
CROSS_OBJECT: dict[tuple[str, str], Callable[[httpx.Response], Awaitable[None]]] = {
    ("POST", "/api/{service_id}/pushed_auth_req"): assert_unknown_client,
    ("POST", "/api/{service_id}/pushed_auth_req/resolve"): assert_unusable,
    ("POST", "/api/{service_id}/pushed_auth_req/consume"): assert_unusable,
    ("GET", "/api/{service_id}/service/get"): assert_only_b,
    ("POST", "/api/{service_id}/service/update"): assert_only_b,
    ("DELETE", "/api/{service_id}/service/delete"): assert_only_b,
    ("POST", "/api/{service_id}/service/token/create"): assert_only_b,
    ("GET", "/api/{service_id}/service/token/get/list"): assert_nothing_of_a_listed,
    ("DELETE", "/api/{service_id}/service/token/delete/{token_id}"): assert_not_found,
    ("POST", "/api/{service_id}/client/create"): assert_only_b,
    ("GET", "/api/{service_id}/client/get/list"): assert_nothing_of_a_listed,
    ("GET", "/api/{service_id}/client/get/{client_id}"): assert_not_found,
    ("POST", "/api/{service_id}/client/update/{client_id}"): assert_not_found,
    ("DELETE", "/api/{service_id}/client/delete/{client_id}"): assert_not_found,
    ("POST", "/api/{service_id}/client/secret/refresh/{client_id}"): assert_not_found,
    ("GET", "/api/{service_id}/client/secret/refresh/{client_id}"): assert_not_found,
    ("POST", "/api/{service_id}/client/secret/update/{client_id}"): assert_not_found,
}


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: f"{operation.method} {operation.path}")
@pytest.mark.parametrize("client_reference", ["id", "alias"])
async def test_objects_of_another_service_are_unknown(
    tenants: Tenants, operation: Operation, client_reference: str
) -> None:
    """On B's own path, A's client (by id or alias), token and request_uri do not exist; A's client
    credentials do not authenticate. Operations on B itself act on B only."""
    assert set(CROSS_OBJECT) == {(o.method, o.path) for o in OPERATIONS}
    client_id = tenants.client_a.id if client_reference == "id" else "shared-alias"
    url = operation.url(tenants.b.id, tenants, client_id=client_id)
    headers = tenants.admin if operation.admin_only else tenants.b.bearer
    before = await tenants.state_of_a()
    await CROSS_OBJECT[(operation.method, operation.path)](await call(tenants, operation, url, headers))
    assert await tenants.state_of_a() == before


async def test_a_client_authenticates_only_at_its_own_services_par_endpoint(tenants: Tenants) -> None:
    """PAR-07: RFC 9126 §2: client authentication at the PAR endpoint is that of the service's clients."""
    before = await tenants.state_of_a()
    response = await tenants.http.post(
        tenants.b.par_path, data=par_params(tenants.client_a), headers=tenants.client_a.basic()
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client", response.text
    assert await tenants.state_of_a() == before


async def test_metadata_describes_only_its_own_service(tenants: Tenants) -> None:
    for path in (
        f"/.well-known/oauth-authorization-server/services/{tenants.b.id}",
        f"/services/{tenants.b.id}/.well-known/openid-configuration",
    ):
        response = await tenants.http.get(path)
        assert response.status_code == 200, response.text
        assert response.json()["issuer"] == tenants.b.issuer
        assert str(tenants.a.id) not in response.text


async def test_replay_entries_do_not_cross_services(client: httpx.AsyncClient, factory: Factory) -> None:
    """CA-05 per tenant: an assertion shown to another service neither works there nor is spent, and a
    jti used at one service does not block the same jti at another."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    service_a, service_b = await factory.service(), await factory.service()
    client_a = await factory.client(service_a, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(key))
    client_b = await factory.client(service_b, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(key))
    for_a = client_assertion(client_a, key, "ES256", aud=service_a.issuer, jti="shared-jti")
    for_b = client_assertion(client_b, key, "ES256", aud=service_b.issuer, jti="shared-jti")
    shown_to_b = await client.post(service_b.par_path, data=par_params(client_a) | for_a)
    assert shown_to_b.status_code == 401, shown_to_b.text
    assert (await client.post(service_a.par_path, data=par_params(client_a) | for_a)).status_code == 201
    assert (await client.post(service_b.par_path, data=par_params(client_b) | for_b)).status_code == 201
