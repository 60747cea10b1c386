"""The Authlete-compatible backend API: POST /api/{serviceId}/pushed_auth_req, in Authlete's wire format."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.api.schemas import PushedAuthReqOut
from app.db.models import Client, PushedRequest
from tests.factories import ClientHandle, Factory, ServiceHandle, assert_result_error, assert_shaped_as, par_params


async def call(
    client: httpx.AsyncClient, service: ServiceHandle, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        f"/api/{service.id}/pushed_auth_req", json=body, headers=service.bearer if headers is None else headers
    )


def envelope(response: httpx.Response, action: str) -> dict[str, Any]:
    """A processed call is 200 with the action; responseContent is a JSON string, as Authlete's is."""
    assert response.status_code == 200, response.text
    body = dict(response.json())
    assert body["action"] == action
    assert body["resultMessage"].startswith(f"[{body['resultCode']}] ")
    assert None not in body.values()  # null fields are omitted
    return body


async def test_created(client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle) -> None:
    body = envelope(
        await call(
            client,
            service,
            {
                "parameters": urlencode(par_params(basic_client)),
                "clientId": str(basic_client.id),
                "clientSecret": basic_client.secret,
            },
        ),
        "CREATED",
    )
    assert body["resultCode"] == "A245001"
    assert body["clientAuthMethod"] == "CLIENT_SECRET_BASIC"
    content = json.loads(body["responseContent"])
    assert content == {"expires_in": 60, "request_uri": body["requestUri"]}
    assert "dpopNonce" not in body and "expiresIn" not in body
    assert_shaped_as(body, PushedAuthReqOut)


async def test_form_encoded_call(client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle) -> None:
    """The Authlete spec lists application/x-www-form-urlencoded for the API call too."""
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req",
        headers=service.bearer,
        data={
            "parameters": urlencode(par_params(basic_client)),
            "clientId": str(basic_client.id),
            "clientSecret": basic_client.secret,
        },
    )
    envelope(response, "CREATED")


@pytest.mark.parametrize("repeated", ["parameters", "clientId", "clientSecret"])
async def test_a_repeated_form_field_is_refused(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, repeated: str
) -> None:
    """As at the RFC endpoint (RFC 6749 §3.1: never more than once): a field given twice is a 400, not its
    last value kept; nothing is stored."""
    fields = {
        "parameters": urlencode(par_params(basic_client)),
        "clientId": str(basic_client.id),
        "clientSecret": basic_client.secret or "",
    }
    decoy = {"parameters": urlencode(par_params(basic_client, state="other")), "clientId": "1", "clientSecret": "x"}
    body = urlencode(list(fields.items()) + [(repeated, decoy[repeated])])
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req",
        content=body,
        headers=service.bearer | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["resultCode"] == "A001203" and repeated in response.json()["resultMessage"]
    async with app.state.par.sessions() as session:
        assert (await session.scalars(select(PushedRequest))).all() == []


async def test_sdk_style_body_with_nulls_and_false(
    client: httpx.AsyncClient, service: ServiceHandle, factory: Factory
) -> None:
    """The Python SDK sends every field; the Java SDK always sends dpopNonceRequired=false."""
    post_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_POST")
    body = envelope(
        await call(
            client,
            service,
            {
                "parameters": urlencode(par_params(post_client, client_secret=post_client.secret)),
                "clientId": None,
                "clientSecret": None,
                "clientCertificate": None,
                "clientCertificatePath": None,
                "dpop": None,
                "htm": None,
                "htu": None,
                "dpopNonceRequired": False,
                "oauthClientAttestation": None,
            },
        ),
        "CREATED",
    )
    assert body["clientAuthMethod"] == "CLIENT_SECRET_POST"


@pytest.mark.parametrize(
    ("overrides", "secret", "action", "error"),
    [
        ({"redirect_uri": "https://evil.example/cb"}, None, "BAD_REQUEST", "invalid_request"),
        ({"request_uri": "urn:x"}, None, "BAD_REQUEST", "invalid_request"),
        ({"scope": "admin"}, None, "BAD_REQUEST", "invalid_scope"),
        ({}, "wrong-secret", "UNAUTHORIZED", "invalid_client"),
        ({"pad": "x" * 70_000}, None, "PAYLOAD_TOO_LARGE", "invalid_request"),
    ],
)
async def test_oauth_errors_are_actions_with_the_rfc_body(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    overrides: dict[str, str],
    secret: str | None,
    action: str,
    error: str,
) -> None:
    """responseContent is exactly what the RFC 9126 endpoint answers for the same request, and
    ``action`` names the status that endpoint uses."""
    parameters = urlencode(par_params(basic_client, **overrides))
    api = envelope(
        await call(
            client,
            service,
            {"parameters": parameters, "clientId": str(basic_client.id), "clientSecret": secret or basic_client.secret},
        ),
        action,
    )
    content = json.loads(api["responseContent"])
    assert content["error"] == error
    direct = await client.post(
        service.par_path,
        content=parameters,
        headers=basic_client.basic(secret) | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    statuses = {"BAD_REQUEST": 400, "UNAUTHORIZED": 401, "PAYLOAD_TOO_LARGE": 413}
    assert direct.status_code == statuses[action]
    assert direct.json() == content


async def test_client_auth_method_reported_on_failures_after_authentication(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    body = envelope(
        await call(
            client,
            service,
            {
                "parameters": urlencode(par_params(basic_client, scope="admin")),
                "clientId": str(basic_client.id),
                "clientSecret": basic_client.secret,
            },
        ),
        "BAD_REQUEST",
    )
    assert body["clientAuthMethod"] == "CLIENT_SECRET_BASIC"


async def test_failed_push_stores_nothing(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    from sqlalchemy import func, select

    from app.db.models import PushedRequest

    await call(
        client,
        service,
        {
            "parameters": urlencode(par_params(basic_client, scope="admin")),
            "clientId": str(basic_client.id),
            "clientSecret": basic_client.secret,
        },
    )
    state = client._transport.app.state.par  # type: ignore[attr-defined]
    async with state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(PushedRequest)) == 0


# --- failures of the API call itself: ResultError -------------------------------------------------------


async def test_missing_authorization_is_401(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    assert_result_error(await call(client, service, {"parameters": ""}, headers={}), 401)


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer a b"])
async def test_malformed_authorization_is_400(client: httpx.AsyncClient, service: ServiceHandle, header: str) -> None:
    assert_result_error(await call(client, service, {"parameters": ""}, headers={"Authorization": header}), 400)


async def test_unknown_token_is_401(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    response = await call(client, service, {"parameters": ""}, headers={"Authorization": "Bearer par_sat_nope"})
    assert_result_error(response, 401)


async def test_token_of_another_service_is_403(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Tenant isolation: a service token acts on its own service only."""
    other = await factory.service()
    response = await call(client, service, {"parameters": urlencode(par_params(basic_client))}, headers=other.bearer)
    assert_result_error(response, 403)


async def test_unknown_service(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    """A service token never learns whether another service exists (403); the admin token gets 404."""
    response = await client.post("/api/1000000000001/pushed_auth_req", json={"parameters": ""}, headers=service.bearer)
    assert_result_error(response, 403)
    from tests.conftest import ADMIN_TOKEN

    response = await client.post(
        "/api/1000000000001/pushed_auth_req",
        json={"parameters": ""},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert_result_error(response, 404)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('{"parameters": 5}', "application/json"),
        ("{}", "application/json"),
        ("parameters=x", "text/plain"),
        ('"x"', "application/json"),
    ],
)
async def test_malformed_call_is_400(
    client: httpx.AsyncClient, service: ServiceHandle, content: str, content_type: str
) -> None:
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req", content=content, headers=service.bearer | {"Content-Type": content_type}
    )
    assert_result_error(response, 400)


async def test_non_numeric_service_id_is_404(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    """A path that names no service (app.api.deps.IdPath)."""
    response = await client.post("/api/abc/pushed_auth_req", json={"parameters": ""}, headers=service.bearer)
    assert_result_error(response, 404)


async def test_oversized_api_body_is_413_result_error(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    response = await call(client, service, {"parameters": "x=" + "a" * 300_000})
    assert_result_error(response, 413)


LEGACY_SECRET = "legacy_secret-with_underscores+plus"  # the kind of secret issued before secrets were alphanumeric


def oauth4webapi_encoded(value: str) -> str:
    """oauth4webapi's form-encoding: encodeURIComponent, then -_.!~*'() percent-encoded too."""
    return (
        "".join(c if c.isascii() and c.isalnum() else quote(c, safe="") or c for c in value)
        .replace("_", "%5F")
        .replace("-", "%2D")
        .replace(".", "%2E")
        .replace("~", "%7E")
    )


async def set_secret(app: FastAPI, client_id: int, secret: str) -> None:
    async with app.state.par.sessions() as session, session.begin():
        row = await session.get(Client, client_id)
        assert row is not None
        row.secret_hash = app.state.par.hasher.hash(secret)


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [
        ("{alias}", quote_plus(LEGACY_SECRET)),  # quote_plus: openid-client's form-encoding
        ("{alias}", oauth4webapi_encoded(LEGACY_SECRET)),
        ("{encoded_alias}", oauth4webapi_encoded(LEGACY_SECRET)),
        ("{alias}", LEGACY_SECRET),  # decoded, as an RFC-minded authorization server forwards it
    ],
    ids=["openid-client", "oauth4webapi", "encoded-id-too", "decoded"],
)
async def test_basic_credentials_forwarded_still_form_encoded(
    app: FastAPI,
    client: httpx.AsyncClient,
    factory: Factory,
    service: ServiceHandle,
    client_id: str,
    client_secret: str,
) -> None:
    """Authlete's BasicCredentials helpers base64-decode the header but do not form-decode it (RFC 6749
    §2.3.1), so an authorization server built on them forwards "%5F" for "_": tried again decoded."""
    handle = await factory.client(service, clientIdAlias="my_client", clientIdAliasEnabled=True)
    await set_secret(app, handle.id, LEGACY_SECRET)
    body = envelope(
        await call(
            client,
            service,
            {
                "parameters": urlencode(par_params(handle, client_id=None)),
                "clientId": client_id.format(alias="my_client", encoded_alias="my%5Fclient"),
                "clientSecret": client_secret,
            },
        ),
        "CREATED",
    )
    assert body["clientAuthMethod"] == "CLIENT_SECRET_BASIC"


@pytest.mark.parametrize(
    "client_secret",
    [
        oauth4webapi_encoded(LEGACY_SECRET.replace("legacy", "wrong")),
        "%FF%FE",
        "%",
        oauth4webapi_encoded(oauth4webapi_encoded(LEGACY_SECRET)),
    ],
    ids=["wrong", "not-utf8", "bare-percent", "encoded-twice"],
)
async def test_form_decoded_retry_is_one_retry_of_a_wrong_secret(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, client_secret: str
) -> None:
    """Decoded once only: a secret encoded twice, or not decodable, stays wrong."""
    await set_secret(app, basic_client.id, LEGACY_SECRET)
    body = envelope(
        await call(
            client,
            service,
            {
                "parameters": urlencode(par_params(basic_client)),
                "clientId": str(basic_client.id),
                "clientSecret": client_secret,
            },
        ),
        "UNAUTHORIZED",
    )
    assert json.loads(body["responseContent"])["error"] == "invalid_client"


async def test_form_decoding_is_backend_only(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """At the RFC endpoint the header is form-decoded once (RFC 6749 §2.3.1), never twice."""
    await set_secret(app, basic_client.id, LEGACY_SECRET)
    twice = oauth4webapi_encoded(LEGACY_SECRET)
    response = await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic(twice))
    assert response.status_code == 401
    response = await client.post(
        service.par_path, data=par_params(basic_client), headers=basic_client.basic(LEGACY_SECRET)
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "fields",
    [
        {"oauthClientAttestation": "eyJ.attestation.jwt"},
        {"oauthClientAttestationPop": "eyJ.pop.jwt"},
        {"oauthClientAttestation": "eyJ.attestation.jwt", "oauthClientAttestationPop": "eyJ.pop.jwt"},
        {"oauthClientAttestation": ""},  # present, though empty: a caller that relies on it is told
    ],
    ids=["attestation", "pop", "both", "empty"],
)
async def test_client_attestation_is_refused_not_ignored(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, fields: dict[str, str]
) -> None:
    """Authlete 3.0 relays the OAuth-Client-Attestation headers; this server does not implement
    attestation-based client authentication, and says so rather than pushing without it."""
    body = {
        "parameters": urlencode(par_params(basic_client)),
        "clientId": str(basic_client.id),
        "clientSecret": basic_client.secret,
    }
    response = await call(client, service, body | fields)
    assert_result_error(response, 400)
    assert "attestation-based client authentication" in response.json()["resultMessage"]
    async with app.state.par.sessions() as session:
        assert (await session.scalars(select(PushedRequest))).all() == []


async def test_a_form_with_more_fields_than_can_be_read_is_a_result_error(
    client: httpx.AsyncClient, service: ServiceHandle
) -> None:
    """Starlette reads at most 1000 form fields; more is a 400 ResultError once the caller is authorized,
    and a 401 before, never a 500."""
    body = "&".join(f"f{i}=1" for i in range(1001))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    path = f"/api/{service.id}/pushed_auth_req"
    assert_result_error(await client.post(path, content=body, headers=headers), 401)
    refused = await client.post(path, content=body, headers=headers | service.bearer)
    assert "cannot be read" in assert_result_error(refused, 400)["resultMessage"]
