"""The Authlete-shaped management API at /api: services, service access tokens and clients.

Every test runs on SQLite and PostgreSQL (``database_url`` fixture) through the real HTTP surface.
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from authlete.dto.client import Client as SdkClient
from authlete.dto.service import Service as SdkService
from joserfc.jwk import ECKey, OctKey

from tests.factories import REDIRECT_URI, ClientHandle, Factory, ServiceHandle, assert_result_error, par_params, push

BASE_URL = "http://par.test"
UNKNOWN_ID = 999_999_999_999
DEFAULT_AUTH_METHODS = [
    "NONE",
    "CLIENT_SECRET_BASIC",
    "CLIENT_SECRET_POST",
    "CLIENT_SECRET_JWT",
    "PRIVATE_KEY_JWT",
    "TLS_CLIENT_AUTH",
    "SELF_SIGNED_TLS_CLIENT_AUTH",
]
ALPHANUMERIC = frozenset(string.ascii_letters + string.digits)
SECRET_RANDOM_CHARS = 43  # 256 bits in base64url, or in letters and digits
PRIVATE_EC_KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "ec-1"}).as_dict(private=True)


# --- helpers ------------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_client_secret(secret: str) -> None:
    """Letters and digits only, so RFC 6749 §2.3.1 form-encoding leaves the secret as it is."""
    assert secret.startswith("parcs")
    random_part = secret.removeprefix("parcs")
    assert len(random_part) >= SECRET_RANDOM_CHARS
    assert set(random_part) <= ALPHANUMERIC
    assert quote(secret, safe="") == secret


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


async def post_json_text(
    http: httpx.AsyncClient, path: str, content: str | bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST a body exactly as given (what the ``authlete`` SDK sends, or malformed JSON)."""
    return await http.post(path, content=content, headers={**headers, "Content-Type": "application/json"})


async def get_service(http: httpx.AsyncClient, service: ServiceHandle) -> dict[str, Any]:
    return assert_ok(await http.get(f"/api/{service.id}/service/get", headers=service.bearer))


async def update_service(http: httpx.AsyncClient, service: ServiceHandle, body: dict[str, Any]) -> dict[str, Any]:
    return assert_ok(await http.post(f"/api/{service.id}/service/update", json=body, headers=service.bearer))


async def get_client(http: httpx.AsyncClient, service: ServiceHandle, client_id: int | str) -> httpx.Response:
    return await http.get(f"/api/{service.id}/client/get/{client_id}", headers=service.bearer)


async def update_client(
    http: httpx.AsyncClient, service: ServiceHandle, client: ClientHandle, body: dict[str, Any]
) -> httpx.Response:
    return await http.post(f"/api/{service.id}/client/update/{client.id}", json=body, headers=service.bearer)


async def create_client(http: httpx.AsyncClient, service: ServiceHandle, body: dict[str, Any]) -> httpx.Response:
    return await http.post(f"/api/{service.id}/client/create", json=body, headers=service.bearer)


async def client_count(http: httpx.AsyncClient, service: ServiceHandle) -> int:
    body = assert_ok(await http.get(f"/api/{service.id}/client/get/list", headers=service.bearer))
    count: int = body["totalCount"]
    return count


async def list_tokens(http: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> list[dict[str, Any]]:
    response = await http.get(f"/api/{service.id}/service/token/get/list", headers=factory.admin)
    assert response.status_code == 200, response.text
    tokens: list[dict[str, Any]] = response.json()
    return tokens


async def create_token(http: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> dict[str, Any]:
    response = await http.post(
        f"/api/{service.id}/service/token/create", json={"description": "ci"}, headers=factory.admin
    )
    return assert_ok(response)


# --- services -----------------------------------------------------------------------------------------


async def test_service_create_answers_defaults_and_a_service_access_token(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    response = await client.post("/api/service/create", json={"serviceName": "bank"}, headers=factory.admin)
    body = assert_ok(response)
    service_id = body["apiKey"]
    assert isinstance(service_id, int) and 0 < service_id < 2**53
    assert body["serviceName"] == "bank"
    assert body["issuer"] == f"{BASE_URL}/services/{service_id}"
    assert body["pushedAuthReqEndpoint"] == f"{BASE_URL}/services/{service_id}/par"
    assert body["pushedAuthReqDuration"] == 60
    assert body["supportedTokenAuthMethods"] == DEFAULT_AUTH_METHODS
    assert body["supportedResponseTypes"] == ["CODE"]
    assert body["parRequired"] is False
    assert body["supportedScopes"] == []
    assert body["serviceAccessToken"].startswith("par_sat_")
    assert len(body["serviceAccessToken"].removeprefix("par_sat_")) >= SECRET_RANDOM_CHARS


async def test_service_access_token_from_create_acts_on_its_service(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    service = await factory.service()
    body = await get_service(client, service)
    assert body["apiKey"] == service.id
    assert "serviceAccessToken" not in body  # shown once, at creation


async def test_service_list_pages_with_total_count(client: httpx.AsyncClient, factory: Factory) -> None:
    created = [(await factory.service(serviceName=f"s{i}")).id for i in range(3)]
    first = assert_ok(await client.get("/api/service/get/list?start=0&end=2", headers=factory.admin))
    assert (first["start"], first["end"], first["totalCount"]) == (0, 2, 3)
    rest = assert_ok(await client.get("/api/service/get/list?start=2&end=10", headers=factory.admin))
    assert (rest["start"], rest["end"], rest["totalCount"]) == (2, 10, 3)
    listed = [service["apiKey"] for service in first["services"] + rest["services"]]
    assert sorted(listed) == sorted(created)
    assert all("serviceAccessToken" not in service for service in first["services"] + rest["services"])


@pytest.mark.parametrize("query", ["start=3&end=1", "start=-1&end=2", "start=0&end=1001"])
async def test_service_list_refuses_bad_paging(client: httpx.AsyncClient, factory: Factory, query: str) -> None:
    assert_result_error(await client.get(f"/api/service/get/list?{query}", headers=factory.admin), 400)


async def test_service_get_with_admin_token(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(description="tenant A")
    body = assert_ok(await client.get(f"/api/{service.id}/service/get", headers=factory.admin))
    assert body["apiKey"] == service.id
    assert body["description"] == "tenant A"
    assert [scope["name"] for scope in body["supportedScopes"]] == ["openid", "profile", "email", "payments"]


async def test_service_update_keeps_absent_fields(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(
        description="before", parRequired=True, pushedAuthReqDuration=120, issuer="https://as.example.com/a"
    )
    body = await update_service(client, service, {"serviceName": "renamed"})
    assert body["serviceName"] == "renamed"
    for field in ("description", "parRequired", "pushedAuthReqDuration", "issuer", "supportedScopes"):
        assert body[field] == service.body[field], field
    assert await get_service(client, service) == body


async def test_service_update_treats_null_as_not_given(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(
        description="kept",
        issuer="https://as.example.com/a",
        pushedAuthReqEndpoint="https://as.example.com/a/par",
        pkceS256Required=True,
    )
    nulls = dict.fromkeys(
        ["serviceName", "description", "issuer", "pushedAuthReqEndpoint", "supportedScopes", "pkceS256Required"]
    )
    body = await update_service(client, service, nulls)
    assert {field: body[field] for field in nulls} == {field: service.body[field] for field in nulls}


def nulls_in(value: Any, path: str = "") -> list[str]:
    """Where a JSON value holds null."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in nulls_in(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in nulls_in(item, f"{path}[{index}]")]
    return []


async def test_service_answers_leave_unset_fields_out(client: httpx.AsyncClient, factory: Factory) -> None:
    """Authlete omits unset fields; @authlete/typescript-sdk fails service.get, service.list and
    service.update on a null where its schema has an optional string."""
    service = await factory.service(
        authorizationEndpoint=None,
        tokenEndpoint=None,
        supportedScopes=["openid", {"name": "profile", "description": "Your profile"}],
    )
    assert nulls_in(service.body) == []
    got = await get_service(client, service)
    updated = await update_service(client, service, {"pkceRequired": True})
    listed = assert_ok(await client.get("/api/service/get/list", headers=factory.admin))
    for answer in (got, updated, listed):
        assert nulls_in(answer) == []
    for field in ("authorizationEndpoint", "tokenEndpoint", "description"):
        assert field not in got
    assert got["supportedScopes"][0] == {"name": "openid", "defaultEntry": False}
    assert got["supportedScopes"][1]["description"] == "Your profile"


async def test_service_update_empty_string_clears_a_field(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(description="gone soon", issuer="https://as.example.com/a")
    body = await update_service(client, service, {"description": "", "issuer": ""})
    assert "description" not in body  # unset: left out, as Authlete does
    assert body["issuer"] == f"{BASE_URL}/services/{service.id}"  # back to the default


async def test_service_update_zero_duration_resets_to_the_default(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(pushedAuthReqDuration=300)
    assert service.body["pushedAuthReqDuration"] == 300
    body = await update_service(client, service, {"pushedAuthReqDuration": 0})
    assert body["pushedAuthReqDuration"] == 60


async def test_service_update_applies_given_fields(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    body = await update_service(
        client,
        service,
        {
            "supportedScopes": ["openid", {"name": "accounts", "description": "read accounts"}],
            "supportedTokenAuthMethods": ["client_secret_basic"],
            "pkceRequired": True,
        },
    )
    assert [scope["name"] for scope in body["supportedScopes"]] == ["openid", "accounts"]
    assert body["supportedTokenAuthMethods"] == ["CLIENT_SECRET_BASIC"]
    assert body["pkceRequired"] is True
    assert body["modifiedAt"] >= service.body["modifiedAt"]


async def test_service_create_accepts_an_sdk_body(client: httpx.AsyncClient, factory: Factory) -> None:
    """The ``authlete`` SDK serialises every attribute: nulls, 0 and false included."""
    dto = SdkService()
    dto.serviceName = "from the sdk"
    response = await post_json_text(client, "/api/service/create", dto.to_json(), factory.admin)
    body = assert_ok(response)
    assert body["serviceName"] == "from the sdk"
    assert body["issuer"] == f"{BASE_URL}/services/{body['apiKey']}"
    assert body["pushedAuthReqDuration"] == 60
    assert body["supportedTokenAuthMethods"] == DEFAULT_AUTH_METHODS
    assert body["supportedResponseTypes"] == ["CODE"]


async def test_service_update_with_an_sdk_body_keeps_unset_lists(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(supportedTokenAuthMethods=["CLIENT_SECRET_BASIC"])
    dto = SdkService()
    dto.serviceName = "renamed by the sdk"
    response = await post_json_text(client, f"/api/{service.id}/service/update", dto.to_json(), service.bearer)
    body = assert_ok(response)
    assert body["serviceName"] == "renamed by the sdk"
    assert body["supportedScopes"] == service.body["supportedScopes"]
    assert body["supportedTokenAuthMethods"] == ["CLIENT_SECRET_BASIC"]


async def test_service_delete_then_get_is_404(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    await factory.client(service)
    response = await client.delete(f"/api/{service.id}/service/delete", headers=factory.admin)
    assert response.status_code == 204
    assert response.content == b""
    assert_result_error(await client.get(f"/api/{service.id}/service/get", headers=factory.admin), 404)
    assert_result_error(await client.delete(f"/api/{service.id}/service/delete", headers=factory.admin), 404)
    # Its access tokens went with it.
    assert_result_error(await client.get(f"/api/{service.id}/service/get", headers=service.bearer), 401)


# --- authentication and authorisation of API calls -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/service/get/list"),
        ("POST", "/api/service/create"),
        ("GET", "/api/{id}/service/get"),
        ("POST", "/api/{id}/client/create"),
        ("GET", "/api/{id}/client/get/list"),
    ],
)
async def test_missing_authorization_header_is_401(
    client: httpx.AsyncClient, factory: Factory, method: str, path: str
) -> None:
    service = await factory.service()
    response = await client.request(method, path.format(id=service.id), json={})
    assert_result_error(response, 401)


@pytest.mark.parametrize("header", ["Basic abc", "Bearer a b", "Bearer", "Token abc"])
async def test_malformed_authorization_header_is_400(client: httpx.AsyncClient, factory: Factory, header: str) -> None:
    service = await factory.service()
    for path in ("/api/service/get/list", f"/api/{service.id}/client/get/list"):
        assert_result_error(await client.get(path, headers={"Authorization": header}), 400)


async def test_wrong_admin_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/service/create", json={"serviceName": "x"}, headers=bearer("not-the-admin"))
    assert_result_error(response, 401)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/service/create"),
        ("GET", "/api/service/get/list"),
        ("DELETE", "/api/{id}/service/delete"),
        ("POST", "/api/{id}/service/token/create"),
        ("GET", "/api/{id}/service/token/get/list"),
    ],
)
async def test_service_access_token_cannot_call_admin_operations(
    client: httpx.AsyncClient, factory: Factory, method: str, path: str
) -> None:
    service = await factory.service()
    response = await client.request(method, path.format(id=service.id), json={}, headers=service.bearer)
    assert_result_error(response, 401)
    assert_ok(await client.get(f"/api/{service.id}/service/get", headers=factory.admin))  # nothing deleted


async def test_token_of_another_service_is_403(client: httpx.AsyncClient, factory: Factory) -> None:
    service_a, service_b = await factory.service(), await factory.service()
    response = await client.post(
        f"/api/{service_b.id}/client/create", json={"redirectUris": [REDIRECT_URI]}, headers=service_a.bearer
    )
    assert_result_error(response, 403)
    assert_result_error(await client.get(f"/api/{service_b.id}/service/get", headers=service_a.bearer), 403)
    assert await client_count(client, service_b) == 0


async def test_token_on_an_unknown_service_is_403_not_404(client: httpx.AsyncClient, factory: Factory) -> None:
    """A service access token must not reveal which other services exist."""
    service = await factory.service()
    other = await factory.service()
    unknown = await client.get(f"/api/{UNKNOWN_ID}/client/get/list", headers=service.bearer)
    existing = await client.get(f"/api/{other.id}/client/get/list", headers=service.bearer)
    assert assert_result_error(unknown, 403)["resultCode"] == assert_result_error(existing, 403)["resultCode"]


async def test_admin_token_on_an_unknown_service_is_404(client: httpx.AsyncClient, factory: Factory) -> None:
    for method, path in (("GET", "service/get"), ("GET", "client/get/list"), ("POST", "client/create")):
        response = await client.request(method, f"/api/{UNKNOWN_ID}/{path}", json={}, headers=factory.admin)
        assert_result_error(response, 404)


async def test_unknown_bearer_token_is_401(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    response = await client.get(f"/api/{service.id}/client/get/list", headers=bearer("par_sat_unknown"))
    assert_result_error(response, 401)


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"tokenAuthMethod": "FOO"}, id="unknown-enum"),
        pytest.param({"clientType": "SOMETIMES"}, id="unknown-client-type"),
        pytest.param({"tokenAuthMethod": "PRIVATE_KEY_JWT"}, id="private-key-jwt-without-keys"),
        pytest.param({"tokenAuthMethod": "TLS_CLIENT_AUTH"}, id="tls-client-auth-without-subject"),
        pytest.param(
            {
                "tokenAuthMethod": "TLS_CLIENT_AUTH",
                "tlsClientAuthSubjectDn": "CN=a",
                "tlsClientAuthSanDns": "a.example",
            },
            id="tls-client-auth-with-two-subjects",
        ),
        pytest.param({"tokenAuthMethod": "CLIENT_SECRET_JWT", "tokenAuthSignAlg": "ES256"}, id="jwt-alg-mismatch"),
        pytest.param({"requestSignAlg": "none"}, id="request-sign-alg-none"),
        pytest.param({"requestSignAlg": "HS256"}, id="request-sign-alg-symmetric"),
        pytest.param(
            {"tokenAuthMethod": "PRIVATE_KEY_JWT", "jwks": '{"keys": []}', "jwksUri": "https://c.example/jwks"},
            id="jwks-and-jwks-uri",
        ),
        pytest.param({"clientType": "PUBLIC", "tokenAuthMethod": "CLIENT_SECRET_BASIC"}, id="public-with-secret"),
        pytest.param({"clientType": "CONFIDENTIAL", "tokenAuthMethod": "NONE"}, id="confidential-with-none"),
        pytest.param({"redirectUris": [REDIRECT_URI + "#fragment"]}, id="redirect-fragment"),
        pytest.param({"redirectUris": ["/cb"]}, id="redirect-relative"),
        pytest.param({"redirectUris": ["https:///cb"]}, id="redirect-without-host"),
        pytest.param({"clientIdAlias": "12345"}, id="numeric-alias"),
        pytest.param({"clientIdAlias": "with space"}, id="alias-with-space"),
        pytest.param({"jwks": "not json"}, id="jwks-not-json"),
        pytest.param({"jwks": '{"keys": {}}'}, id="jwks-without-key-array"),
        pytest.param({"jwksUri": "ftp://keys.example/jwks"}, id="jwks-uri-not-http"),
        pytest.param({"redirectUris": "https://client.example.org/cb"}, id="redirect-uris-not-a-list"),
        pytest.param({"redirectUris": ["https://a.example/c\u0001\n"]}, id="redirect-control-characters"),
        pytest.param({"redirectUris": ["https://a.example/c\r\nLocation: x"]}, id="redirect-crlf"),
        pytest.param({"redirectUris": ["https://é.example/cb"]}, id="redirect-non-ascii"),
        pytest.param({"redirectUris": ["https://a.example/c b"]}, id="redirect-space"),
        pytest.param({"redirectUris": ["https://[::1/cb"]}, id="redirect-broken-authority"),
        pytest.param({"jwks": json.dumps({"keys": [PRIVATE_EC_KEY]})}, id="jwks-private-key"),
        pytest.param(
            {"jwks": json.dumps({"keys": [OctKey.generate_key(256).as_dict()]}), "tokenAuthMethod": "PRIVATE_KEY_JWT"},
            id="jwks-oct-key",
        ),
        pytest.param({"jwks": '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}'}, id="jwks-bad-ec"),
        pytest.param({"jwks": '{"keys": [{"kty": "AKP"}]}'}, id="jwks-unknown-kty"),
        pytest.param({"jwks": '{"keys": ["RSA"]}'}, id="jwks-key-not-an-object"),
        pytest.param({"jwksUri": "https://keys.example/jwks\r\n"}, id="jwks-uri-crlf"),
        pytest.param({"jwksUri": "https://kéys.example/jwks"}, id="jwks-uri-non-ascii"),
    ],
)
async def test_invalid_client_is_refused_with_400(
    client: httpx.AsyncClient, factory: Factory, fields: dict[str, Any]
) -> None:
    service = await factory.service()
    response = await create_client(client, service, {"redirectUris": [REDIRECT_URI], **fields})
    assert_result_error(response, 400)
    assert await client_count(client, service) == 0


async def test_jwks_with_a_private_key_is_refused_without_echoing_it(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """RFC 7591 §2: jwks "contains the client's public keys". Refused on create and on update; the message
    names the key by index and kid, never by its material; the stored client keeps its keys."""
    service = await factory.service()
    public = {key: value for key, value in PRIVATE_EC_KEY.items() if key != "d"}
    jwks = json.dumps({"keys": [public, PRIVATE_EC_KEY]})
    body = assert_result_error(
        await create_client(client, service, {"redirectUris": [REDIRECT_URI], "jwks": jwks}), 400
    )
    assert body["resultMessage"].endswith(
        "jwks key 1 (kid 'ec-1') holds private key material (d): jwks holds public keys only"
    )
    assert str(PRIVATE_EC_KEY["d"]) not in body["resultMessage"]
    stored = await factory.client(service, jwks=json.dumps({"keys": [public]}))
    assert_result_error(await update_client(client, service, stored, {"jwks": jwks}), 400)
    assert json.loads(assert_ok(await get_client(client, service, stored.id))["jwks"]) == {"keys": [public]}


@pytest.mark.parametrize("field", ["authorizationEndpoint", "tokenEndpoint", "pushedAuthReqEndpoint"])
async def test_endpoint_url_refusal_names_the_field_as_the_api_spells_it(
    client: httpx.AsyncClient, factory: Factory, field: str
) -> None:
    service = await factory.service()
    response = await client.post(
        f"/api/{service.id}/service/update", json={field: "https://as.example.com/x\r\nX: y"}, headers=service.bearer
    )
    message = assert_result_error(response, 400)["resultMessage"]
    assert message.endswith(
        f"{field} must be a URI of ASCII characters (RFC 3986), without spaces or control characters: "
        "percent-encode anything else"
    )


async def test_duplicate_alias_in_one_service_is_409(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    first = await factory.client(service, clientIdAlias="shop")
    response = await create_client(client, service, {"redirectUris": [REDIRECT_URI], "clientIdAlias": "shop"})
    assert_result_error(response, 409)
    other = await factory.client(service)
    assert_result_error(await update_client(client, service, other, {"clientIdAlias": "shop"}), 409)
    # The holder of the alias may "change" it to itself.
    assert_ok(await update_client(client, service, first, {"clientIdAlias": "shop"}))


async def test_token_auth_method_must_be_enabled_for_the_service(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(supportedTokenAuthMethods=["CLIENT_SECRET_BASIC"])
    for fields in ({"tokenAuthMethod": "CLIENT_SECRET_POST"}, {"clientType": "PUBLIC"}):
        response = await create_client(client, service, {"redirectUris": [REDIRECT_URI], **fields})
        assert_result_error(response, 400)
    basic = await factory.client(service)
    assert basic.body["tokenAuthMethod"] == "CLIENT_SECRET_BASIC"


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"'])
async def test_malformed_json_body_is_400(client: httpx.AsyncClient, factory: Factory, content: bytes) -> None:
    service = await factory.service()
    response = await post_json_text(client, f"/api/{service.id}/client/create", content, service.bearer)
    assert_result_error(response, 400)
    assert_result_error(await post_json_text(client, "/api/service/create", content, factory.admin), 400)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"issuer": "https://as.example.com/a?tenant=1"}, id="issuer-query"),
        pytest.param({"issuer": "https://as.example.com/a#top"}, id="issuer-fragment"),
        pytest.param({"issuer": "as.example.com"}, id="issuer-relative"),
        pytest.param({"pushedAuthReqEndpoint": "/par"}, id="par-endpoint-relative"),
        pytest.param({"issuer": "https://éx.example/\u2028"}, id="issuer-non-ascii"),
        pytest.param({"issuer": "https://as.example.com/a\n"}, id="issuer-newline"),
        pytest.param({"issuer": "https://as.example.com/" + "a" * 2000}, id="issuer-too-long"),
        pytest.param({"issuer": "https://as.example.com/a?"}, id="issuer-empty-query"),
        pytest.param({"issuer": "https://[::1/"}, id="issuer-broken-authority"),
        pytest.param({"authorizationEndpoint": "https://as.example.com/auth\r\nX: y"}, id="authz-endpoint-crlf"),
        pytest.param({"tokenEndpoint": "https://as.example.com/to ken"}, id="token-endpoint-space"),
        pytest.param({"pushedAuthReqEndpoint": "https://ås.example.com/par"}, id="par-endpoint-non-ascii"),
        pytest.param({"supportedTokenAuthMethods": ["SPIFFE_JWT"]}, id="unknown-method"),
        pytest.param({"supportedResponseTypes": ["CODE", "FOO"]}, id="unknown-response-type"),
        pytest.param({"pushedAuthReqDuration": -1}, id="negative-duration"),
        pytest.param({"pushedAuthReqDuration": 86401}, id="duration-over-a-day"),
        pytest.param({"supportedScopes": ["has space"]}, id="scope-with-space"),
    ],
)
async def test_invalid_service_is_refused_with_400(
    client: httpx.AsyncClient, factory: Factory, fields: dict[str, Any]
) -> None:
    response = await client.post("/api/service/create", json={"serviceName": "x", **fields}, headers=factory.admin)
    assert_result_error(response, 400)
    listed = assert_ok(await client.get("/api/service/get/list", headers=factory.admin))
    assert listed["totalCount"] == 0
    service = await factory.service()
    assert_result_error(
        await client.post(f"/api/{service.id}/service/update", json=fields, headers=service.bearer), 400
    )
    assert await get_service(client, service) == {
        key: value for key, value in service.body.items() if key != "serviceAccessToken"
    }


# --- clients ------------------------------------------------------------------------------------------


async def test_create_confidential_client(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    par_client = await factory.client(service, clientIdAlias="web-app")
    body = par_client.body
    assert isinstance(body["clientId"], int) and 0 < body["clientId"] < 2**53
    assert body["clientType"] == "CONFIDENTIAL"
    assert body["tokenAuthMethod"] == "CLIENT_SECRET_BASIC"
    assert body["clientIdAlias"] == "web-app"
    assert body["clientIdAliasEnabled"] is True
    assert body["redirectUris"] == [REDIRECT_URI]
    assert_client_secret(body["clientSecret"])
    another = await factory.client(service)
    assert another.secret != par_client.secret
    assert (await push(client, service, par_client, secret=body["clientSecret"])).status_code == 201


async def test_create_public_client(client: httpx.AsyncClient, factory: Factory) -> None:
    """PAR-07: a public client authenticates with ``none``, so it has no secret and pushes without one."""
    service = await factory.service()
    public = await factory.client(service, clientType="PUBLIC")
    assert public.body["clientType"] == "PUBLIC"
    assert public.body["tokenAuthMethod"] == "NONE"
    assert "clientSecret" not in public.body
    response = await client.post(service.par_path, data=par_params(public))
    assert response.status_code == 201, response.text


async def test_get_client_by_id_and_by_alias_never_shows_the_secret(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    service = await factory.service()
    par_client = await factory.client(service, clientIdAlias="web-app")
    by_id = assert_ok(await get_client(client, service, par_client.id))
    by_alias = assert_ok(await get_client(client, service, "web-app"))
    assert by_id == by_alias
    assert by_id["clientId"] == par_client.id
    assert "clientSecret" not in by_id
    assert {key: value for key, value in par_client.body.items() if key != "clientSecret"} == by_id
    assert_result_error(await get_client(client, service, "no-such-alias"), 404)
    assert_result_error(await get_client(client, service, UNKNOWN_ID), 404)


async def test_list_clients_pages_without_secrets(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    created = [(await factory.client(service, clientName=f"c{i}")).id for i in range(3)]
    first = assert_ok(await client.get(f"/api/{service.id}/client/get/list?start=0&end=2", headers=service.bearer))
    rest = assert_ok(await client.get(f"/api/{service.id}/client/get/list?start=2&end=4", headers=service.bearer))
    assert (first["start"], first["end"], first["totalCount"], len(first["clients"])) == (0, 2, 3, 2)
    assert (rest["start"], rest["end"], rest["totalCount"], len(rest["clients"])) == (2, 4, 3, 1)
    listed = first["clients"] + rest["clients"]
    assert sorted(entry["clientId"] for entry in listed) == sorted(created)
    assert all("clientSecret" not in entry for entry in listed)
    assert_result_error(
        await client.get(f"/api/{service.id}/client/get/list?start=2&end=1", headers=service.bearer), 400
    )


async def test_update_client_changes_only_given_fields(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    par_client = await factory.client(
        service,
        clientIdAlias="web-app",
        description="d",
        extension={"requestableScopesEnabled": True, "requestableScopes": ["openid"]},
    )
    new_uri = "https://client.example.org/other-cb"
    body = assert_ok(await update_client(client, service, par_client, {"redirectUris": [new_uri]}))
    assert body["redirectUris"] == [new_uri]
    assert "clientSecret" not in body
    unchanged = ("clientIdAlias", "clientName", "description", "clientType", "tokenAuthMethod", "extension")
    for field in unchanged:
        assert body[field] == par_client.body[field], field
    response = await client.post(
        service.par_path,
        data=par_params(par_client, redirect_uri=new_uri, scope="openid"),
        headers=par_client.basic(),
    )
    assert response.status_code == 201, response.text  # the secret survived the update


async def test_update_client_treats_null_as_not_given(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    jwks = '{"keys": []}'
    par_client = await factory.client(service, clientIdAlias="web-app", description="d", jwks=jwks)
    nulls = dict.fromkeys(["clientIdAlias", "clientName", "description", "jwks", "redirectUris", "tokenAuthMethod"])
    body = assert_ok(await update_client(client, service, par_client, nulls))
    assert {field: body.get(field) for field in nulls} == {field: par_client.body.get(field) for field in nulls}


async def test_update_client_empty_alias_removes_it(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    par_client = await factory.client(service, clientIdAlias="web-app")
    body = assert_ok(await update_client(client, service, par_client, {"clientIdAlias": ""}))
    assert (body.get("clientIdAlias"), body["clientIdAliasEnabled"]) == (None, False)
    assert_result_error(await get_client(client, service, "web-app"), 404)
    await factory.client(service, clientIdAlias="web-app")  # free for another client


async def test_switch_to_none_requires_the_public_client_type(client: httpx.AsyncClient, factory: Factory) -> None:
    """Absent fields keep their value, so CONFIDENTIAL + NONE is a contradiction, not an implicit switch."""
    service = await factory.service()
    par_client = await factory.client(service)
    assert_result_error(await update_client(client, service, par_client, {"tokenAuthMethod": "NONE"}), 400)
    body = assert_ok(
        await update_client(client, service, par_client, {"clientType": "PUBLIC", "tokenAuthMethod": "NONE"})
    )
    assert (body["clientType"], body["tokenAuthMethod"]) == ("PUBLIC", "NONE")
    assert "clientSecret" not in body
    response = await client.post(service.par_path, data=par_params(par_client))
    assert response.status_code == 201, response.text


async def test_switch_public_to_confidential_issues_a_secret(client: httpx.AsyncClient, factory: Factory) -> None:
    """PAR-07: the new secret (shown once, in this answer) is then required by client_secret_post."""
    service = await factory.service()
    public = await factory.client(service, clientType="PUBLIC")
    response = await update_client(
        client, service, public, {"clientType": "CONFIDENTIAL", "tokenAuthMethod": "CLIENT_SECRET_POST"}
    )
    body = assert_ok(response)
    assert (body["clientType"], body["tokenAuthMethod"]) == ("CONFIDENTIAL", "CLIENT_SECRET_POST")
    assert_client_secret(body["clientSecret"])
    assert "clientSecret" not in assert_ok(await get_client(client, service, public.id))
    unauthenticated = await client.post(service.par_path, data=par_params(public))
    assert_invalid_client(unauthenticated)
    authenticated = await client.post(
        service.par_path, data={**par_params(public), "client_secret": body["clientSecret"]}
    )
    assert authenticated.status_code == 201, authenticated.text


async def test_delete_client(client: httpx.AsyncClient, factory: Factory) -> None:
    """GEN-05: a deleted client no longer authenticates at the PAR endpoint."""
    service = await factory.service()
    par_client = await factory.client(service)
    response = await client.delete(f"/api/{service.id}/client/delete/{par_client.id}", headers=service.bearer)
    assert response.status_code == 204
    assert_result_error(await get_client(client, service, par_client.id), 404)
    again = await client.delete(f"/api/{service.id}/client/delete/{par_client.id}", headers=service.bearer)
    assert_result_error(again, 404)
    assert_invalid_client(await push(client, service, par_client, secret=par_client.secret or ""))


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_secret_refresh_replaces_the_secret(client: httpx.AsyncClient, factory: Factory, method: str) -> None:
    """PAR-07 / GEN-05: after a refresh only the new secret authenticates at the PAR endpoint."""
    service = await factory.service()
    par_client = await factory.client(service)
    assert par_client.secret is not None
    response = await client.request(
        method, f"/api/{service.id}/client/secret/refresh/{par_client.id}", headers=service.bearer
    )
    body = assert_ok(response)
    assert body["resultCode"] == "A086001"
    assert body["resultMessage"].startswith("[A086001] ")
    new_secret = body["newClientSecret"]
    assert_client_secret(new_secret)
    assert new_secret != par_client.secret
    assert_invalid_client(await push(client, service, par_client, secret=par_client.secret))
    assert (await push(client, service, par_client, secret=new_secret)).status_code == 201


async def test_secret_refresh_of_a_public_client_is_400(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    public = await factory.client(service, clientType="PUBLIC")
    response = await client.post(f"/api/{service.id}/client/secret/refresh/{public.id}", headers=service.bearer)
    assert_result_error(response, 400)


STRONG_SECRET = "imported-" + "Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA"
WEAK_SECRETS = [
    pytest.param("short-but-random-9f3K", id="too-short"),
    pytest.param("a" * 64, id="one-character"),
    pytest.param("abab" * 16, id="two-characters"),
    pytest.param("0123456789" * 3 + "01", id="digits-only-32"),
    pytest.param("with a space " + "Zq8vN3xR7mK2pL9wT4bY6cJ1h", id="space"),
    pytest.param("Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA\u00e9", id="non-ascii"),
    pytest.param("Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA\t", id="tab"),
    pytest.param("Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA" * 5, id="too-long"),
]


async def _client_count(client: httpx.AsyncClient, service: ServiceHandle) -> int:
    listed = await client.get(f"/api/{service.id}/client/get/list", headers=service.bearer)
    return int(assert_ok(listed)["totalCount"])


@pytest.mark.parametrize("secret", WEAK_SECRETS)
async def test_weak_client_secrets_are_refused(client: httpx.AsyncClient, factory: Factory, secret: str) -> None:
    """A secret the caller chooses must be as strong as a generated one could be (README "Adopting
    existing clients"): at create and at client/secret/update, with nothing stored."""
    service = await factory.service()
    created = await client.post(
        f"/api/{service.id}/client/create", json={"clientSecret": secret}, headers=service.bearer
    )
    message = assert_result_error(created, 400)["resultMessage"]
    assert "client secret" in message and secret not in message
    assert await _client_count(client, service) == 0
    existing = await factory.client(service)
    assert existing.secret is not None
    updated = await client.post(
        f"/api/{service.id}/client/secret/update/{existing.id}", json={"clientSecret": secret}, headers=service.bearer
    )
    assert_result_error(updated, 400)
    assert (await push(client, service, existing, secret=existing.secret)).status_code == 201


async def test_a_strong_client_secret_is_accepted(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    created = await factory.client(service, clientSecret=STRONG_SECRET)
    assert created.secret == STRONG_SECRET
    assert (await push(client, service, created, secret=STRONG_SECRET)).status_code == 201


def _bcrypt_hash(cost: int) -> str:
    """A well-formed bcrypt hash of the given cost (made at cost 4: the cost field is what is checked)."""
    from passlib.hash import bcrypt

    made = str(bcrypt.using(rounds=4).hash(STRONG_SECRET))
    return f"{made[:4]}{cost:02d}{made[6:]}"


def _pbkdf2_hash(rounds: int) -> str:
    from passlib.hash import pbkdf2_sha256

    made = str(pbkdf2_sha256.using(rounds=1000).hash(STRONG_SECRET))
    return made.replace("$1000$", f"${rounds}$", 1)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"clientSecretHash": _bcrypt_hash(13)}, "cost 13 exceeds the 12"),
        ({"clientSecretHash": "$2y$31$" + _bcrypt_hash(4)[7:]}, "cost 31 exceeds"),
        ({"clientSecretHash": _pbkdf2_hash(1_000_001)}, "rounds 1000001 exceeds the 1000000"),
        ({"clientSecretHash": "pbkdf2_sha256$2000000$salt$" + "A" * 43 + "="}, "exceeds"),
        ({"clientSecretHash": "$2b$12$tooshort"}, "well-formed"),
        ({"clientSecretHash": STRONG_SECRET}, "must be a bcrypt"),
        ({"clientSecretHash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"}, "must be a bcrypt"),
        ({"clientSecretHash": "$2b$12$\u00e9" + "a" * 52}, "must be a bcrypt"),
        ({"clientSecretHash": _bcrypt_hash(4), "clientSecret": STRONG_SECRET}, "not both"),
        ({"clientSecretHash": _bcrypt_hash(4), "clientSecret": ""}, "not both"),
        ({"clientSecret": ""}, "32 to 128 characters"),  # given, though empty: never a generated one instead
        ({"clientSecretHash": ""}, "must be a bcrypt"),
        ({"clientSecretHash": _pbkdf2_hash(1000).replace("$1000$", "$1000$" + "s" * 150, 1)}, "at most 200"),
        ({"clientSecretHash": _bcrypt_hash(4), "tokenAuthMethod": "CLIENT_SECRET_JWT"}, "in clear"),
        ({"clientSecret": STRONG_SECRET, "clientType": "PUBLIC"}, "uses no client secret"),
        ({"clientSecretHash": _bcrypt_hash(4), "clientType": "PUBLIC"}, "uses no client secret"),
    ],
)
async def test_unusable_client_secret_hashes_are_refused_at_import(
    client: httpx.AsyncClient, factory: Factory, fields: dict[str, str], fragment: str
) -> None:
    """An imported hash must be one we verify, of a cost we allow (PAR_IMPORTED_BCRYPT_MAX_COST,
    PAR_IMPORTED_PBKDF2_MAX_ROUNDS), for a client that authenticates with it."""
    service = await factory.service()
    response = await client.post(f"/api/{service.id}/client/create", json=fields, headers=service.bearer)
    message = assert_result_error(response, 400)["resultMessage"]
    assert fragment in message, message
    assert await _client_count(client, service) == 0


async def test_secret_update_of_a_public_or_unknown_client(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    public = await factory.client(service, clientType="PUBLIC")
    body = {"clientSecret": STRONG_SECRET}
    path = f"/api/{service.id}/client/secret/update"
    assert_result_error(await client.post(f"{path}/{public.id}", json=body, headers=service.bearer), 400)
    assert_result_error(await client.post(f"{path}/{UNKNOWN_ID}", json=body, headers=service.bearer), 404)
    assert_result_error(await client.post(f"{path}/{public.id}", json={}, headers=service.bearer), 400)
    other = await factory.service()
    assert_result_error(await client.post(f"{path}/{public.id}", json=body, headers=other.bearer), 403)
    other_path = f"/api/{other.id}/client/secret/update/{public.id}"
    assert_result_error(await client.post(other_path, json=body, headers=other.bearer), 404)
    assert_result_error(await client.post(f"{path}/{public.id}", json=body, headers=bearer("nope")), 401)


async def test_create_client_accepts_an_sdk_body(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    dto = SdkClient()
    dto.clientName = "from the sdk"
    dto.redirectUris = [REDIRECT_URI]
    response = await post_json_text(client, f"/api/{service.id}/client/create", dto.to_json(), service.bearer)
    body = assert_ok(response)
    assert (body["clientType"], body["tokenAuthMethod"]) == ("CONFIDENTIAL", "CLIENT_SECRET_BASIC")
    assert_client_secret(body["clientSecret"])


# --- service access tokens ----------------------------------------------------------------------------


async def test_service_token_create_and_list(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    created = await create_token(client, factory, service)
    token = created["accessToken"]
    assert token.startswith("par_sat_")
    assert (created["description"], created["revokedAt"]) == ("ci", None)
    assert_ok(await client.get(f"/api/{service.id}/client/get/list", headers=bearer(token)))
    listed = await list_tokens(client, factory, service)
    assert len(listed) == 2  # the token made with the service, and this one
    assert created["id"] in {entry["id"] for entry in listed}
    assert all(set(entry) == {"id", "description", "createdAt", "revokedAt"} for entry in listed)
    assert token not in json.dumps(listed) and service.token not in json.dumps(listed)


async def test_service_token_create_on_an_unknown_service_is_404(client: httpx.AsyncClient, factory: Factory) -> None:
    response = await client.post(f"/api/{UNKNOWN_ID}/service/token/create", headers=factory.admin)
    assert_result_error(response, 404)


async def test_service_token_revoke(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    created = await create_token(client, factory, service)
    path = f"/api/{service.id}/service/token/delete/{created['id']}"
    assert (await client.delete(path, headers=factory.admin)).status_code == 204
    revoked = bearer(created["accessToken"])
    assert_result_error(await client.get(f"/api/{service.id}/client/get/list", headers=revoked), 401)
    assert_ok(await client.get(f"/api/{service.id}/client/get/list", headers=service.bearer))  # the other one
    listed = {entry["id"]: entry for entry in await list_tokens(client, factory, service)}
    assert listed[created["id"]]["revokedAt"] is not None
    assert_result_error(await client.delete(path, headers=factory.admin), 404)


async def test_revoking_another_services_token_id_is_404(client: httpx.AsyncClient, factory: Factory) -> None:
    service_a, service_b = await factory.service(), await factory.service()
    token_b = await create_token(client, factory, service_b)
    response = await client.delete(f"/api/{service_a.id}/service/token/delete/{token_b['id']}", headers=factory.admin)
    assert_result_error(response, 404)
    assert_ok(await client.get(f"/api/{service_b.id}/client/get/list", headers=bearer(token_b["accessToken"])))


# --- tenant isolation ---------------------------------------------------------------------------------


async def test_client_of_another_service_is_invisible(client: httpx.AsyncClient, factory: Factory) -> None:
    service_a, service_b = await factory.service(), await factory.service()
    client_a = await factory.client(service_a, clientIdAlias="shared-name")
    for identifier in (client_a.id, "shared-name"):
        assert_result_error(await get_client(client, service_b, identifier), 404)
        admin_view = await client.get(f"/api/{service_b.id}/client/get/{identifier}", headers=factory.admin)
        assert_result_error(admin_view, 404)
    assert_result_error(await update_client(client, service_b, client_a, {"clientName": "stolen"}), 404)
    refresh = await client.post(f"/api/{service_b.id}/client/secret/refresh/{client_a.id}", headers=service_b.bearer)
    assert_result_error(refresh, 404)
    delete = await client.delete(f"/api/{service_b.id}/client/delete/{client_a.id}", headers=service_b.bearer)
    assert_result_error(delete, 404)
    assert await client_count(client, service_b) == 0
    assert assert_ok(await get_client(client, service_a, client_a.id))["clientName"] == "test client"
    # Aliases are unique per service only.
    client_b = await factory.client(service_b, clientIdAlias="shared-name")
    assert assert_ok(await get_client(client, service_b, "shared-name"))["clientId"] == client_b.id


async def test_client_of_another_service_cannot_push_there(client: httpx.AsyncClient, factory: Factory) -> None:
    """PAR-07 / GEN-05: clients are per service, so another service's PAR endpoint answers invalid_client."""
    service_a, service_b = await factory.service(), await factory.service()
    client_a = await factory.client(service_a)
    assert client_a.secret is not None
    assert_invalid_client(await push(client, service_b, client_a, secret=client_a.secret))
    assert (await push(client, service_a, client_a, secret=client_a.secret)).status_code == 201


async def test_malformed_json_says_so(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    response = await client.post(
        f"/api/{service.id}/client/create",
        content="{not json",
        headers=service.bearer | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "the text is not valid JSON" in response.json()["resultMessage"]


async def test_answers_with_credentials_are_not_cacheable(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service()
    created = await client.post(
        f"/api/{service.id}/client/create", json={"redirectUris": ["https://c.example/cb"]}, headers=service.bearer
    )
    assert created.headers["cache-control"] == "no-store"
    token = await client.post(f"/api/{service.id}/service/token/create", headers=factory.admin)
    assert token.headers["cache-control"] == "no-store"


async def test_token_list_of_a_missing_service_is_404(client: httpx.AsyncClient, factory: Factory) -> None:
    response = await client.get("/api/1000000000001/service/token/get/list", headers=factory.admin)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/api/service/create", '{"serviceName": NaN}'),
        ("POST", "/api/{sid}/client/create", '{"clientType": 5}'),
        ("POST", "/api/{sid}/service/update", "[" * 5000),
        ("POST", "/api/{sid}/client/secret/update/1", "not json"),
        ("GET", "/api/{sid}/client/get/list?start=-1", ""),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer unknown-token-0123456789abcdefghij"])
async def test_an_unauthenticated_call_is_401_before_its_body_or_query_is_read(
    client: httpx.AsyncClient, service: ServiceHandle, method: str, path: str, content: str, authorization: str | None
) -> None:
    """Without a known token, nothing of the request is read: 401, never the body's or query's 400."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": authorization} if authorization else {})
    response = await client.request(method, path.format(sid=service.id), content=content, headers=headers)
    assert_result_error(response, 401)
