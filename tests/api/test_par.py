"""The RFC 9126 endpoint: POST /services/{id}/par (PAR-, GEN- and PKCE- ids of docs/requirements.md)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from starlette.requests import Request

from app.api.par import _header_values
from app.db.models import PushedRequest
from tests.factories import CODE_CHALLENGE, REDIRECT_URI, ClientHandle, Factory, ServiceHandle, par_params, post_par

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


async def stored_requests(app: FastAPI) -> list[PushedRequest]:
    async with app.state.par.sessions() as session:
        return list((await session.scalars(select(PushedRequest))).all())


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """PAR-19 / GEN-06: RFC 6749 §5.2 JSON with application/json and no-store (PAR-18)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert set(body) <= {"error", "error_description"} and body["error_description"]
    return dict(body)


# --- success ------------------------------------------------------------------------------------------


async def test_success_is_201_with_request_uri_and_expires_in(
    client: httpx.AsyncClient, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """PAR-13, PAR-14, PAR-15, PAR-18: 201, JSON, a 256-bit urn request_uri, integer expires_in, no-store."""
    response = await post_par(client, service, par_params(basic_client), basic_client.basic())
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"request_uri", "expires_in"}
    assert body["expires_in"] == 60 and isinstance(body["expires_in"], int)
    assert body["request_uri"].startswith(REQUEST_URI_PREFIX)
    assert len(body["request_uri"]) - len(REQUEST_URI_PREFIX) >= 43
    [row] = await stored_requests(app)
    assert row.client_id == basic_client.id and row.service_id == service.id
    assert body["request_uri"].removeprefix(REQUEST_URI_PREFIX) not in row.reference_hash
    assert (row.expires_at - row.created_at).total_seconds() == 60
    assert row.created_at.tzinfo is not None


async def test_each_push_gets_a_distinct_request_uri(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    uris = {
        (await post_par(client, service, par_params(basic_client), basic_client.basic())).json()["request_uri"]
        for _ in range(5)
    }
    assert len(uris) == 5


async def test_expires_in_follows_the_service_setting(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(pushedAuthReqDuration=90)
    par_client = await factory.client(service)
    response = await post_par(client, service, par_params(par_client), par_client.basic())
    assert response.json()["expires_in"] == 90


async def test_client_secret_post(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    post_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_POST")
    response = await post_par(client, service, par_params(post_client, client_secret=post_client.secret))
    assert response.status_code == 201, response.text


async def test_public_client_with_pkce(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    public = await factory.client(service, clientType="PUBLIC")
    assert (await post_par(client, service, par_params(public))).status_code == 201


async def test_client_id_may_be_omitted_with_basic(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """NOTE-07: accept-and-fill, as fosite does, when Basic names the client."""
    response = await post_par(client, service, par_params(basic_client, client_id=None), basic_client.basic())
    assert response.status_code == 201, response.text


async def test_client_alias_works_as_client_id(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    aliased = await factory.client(service, clientIdAlias="my-app")
    credentials = base64.b64encode(f"my-app:{aliased.secret}".encode()).decode()
    response = await post_par(
        client, service, par_params(aliased, client_id="my-app"), {"Authorization": f"Basic {credentials}"}
    )
    assert response.status_code == 201, response.text


async def test_stored_request_is_normalised_and_has_no_credentials(
    client: httpx.AsyncClient, app: FastAPI, factory: Factory, service: ServiceHandle
) -> None:
    """PAR-10: client authentication parameters are not stored; GEN-02: unknown parameters are ignored."""
    post_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_POST")
    params = par_params(
        post_client,
        client_secret=post_client.secret,
        nonce="n-0S6",
        unknown_extension="x",
        scope="openid openid profile",
        response_type="code",
    )
    assert (await post_par(client, service, params)).status_code == 201
    [row] = await stored_requests(app)
    stored = parse_qs(row.parameters)
    assert post_client.secret is not None
    assert "client_secret" not in stored and post_client.secret not in row.parameters
    assert stored["unknown_extension"] == ["x"]
    assert row.request == {
        "responseType": "code",
        "redirectUri": REDIRECT_URI,
        "scopes": ["openid", "profile"],
        "state": "af0ifjsldkj",
        "nonce": "n-0S6",
        "codeChallenge": CODE_CHALLENGE,
        "codeChallengeMethod": "S256",
    }


async def test_response_type_words_in_any_order(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(supportedResponseTypes=["CODE", "CODE_ID_TOKEN"])
    hybrid = await factory.client(
        service, responseTypes=["CODE_ID_TOKEN"], grantTypes=["AUTHORIZATION_CODE", "IMPLICIT"]
    )
    response = await post_par(
        client, service, par_params(hybrid, response_type="id_token code", nonce="n"), hybrid.basic()
    )
    assert response.status_code == 201, response.text


# --- HTTP-level rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_get_405_with_allow(client: httpx.AsyncClient, service: ServiceHandle, method: str) -> None:
    """PAR-03 / NOTE-05: 405 with Allow: POST."""
    response = await client.request(method, service.par_path)
    assert_oauth_error(response, 405, "invalid_request")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("{}", "application/json"),
        ("response_type=code", "text/plain"),
        ("response_type=code", None),
        ("response_type=code", "application/x-www-form-urlencoded; charset=iso-8859-1"),
    ],
)
async def test_body_must_be_utf8_form(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    content: str,
    content_type: str | None,
) -> None:
    """PAR-01 / GEN-08: only application/x-www-form-urlencoded in UTF-8."""
    headers = basic_client.basic() | ({"Content-Type": content_type} if content_type else {})
    response = await client.post(service.par_path, content=content, headers=headers)
    assert_oauth_error(response, 400, "invalid_request")


async def test_multipart_is_rejected(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """GEN-08: multipart/form-data is not the PAR encoding (fosite accepts it; we do not)."""
    response = await client.post(
        service.par_path, files={"x": b"y"}, data=par_params(basic_client), headers=basic_client.basic()
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_charset_utf8_parameter_is_accepted(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """oauth4webapi sends application/x-www-form-urlencoded;charset=UTF-8."""
    headers = basic_client.basic() | {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}
    response = await client.post(
        service.par_path, content=httpx.QueryParams(par_params(basic_client)).__str__(), headers=headers
    )
    assert response.status_code == 201, response.text


async def test_oversized_body_is_413(
    client: httpx.AsyncClient, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """PAR-23: 413 in the OAuth error format; nothing stored."""
    params = par_params(basic_client) | {f"pad{i}": "x" * 10_000 for i in range(7)}
    response = await post_par(client, service, params, basic_client.basic())
    assert_oauth_error(response, 413, "invalid_request")
    assert await stored_requests(app) == []


async def test_oversized_parameter_is_413(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    response = await post_par(client, service, par_params(basic_client, state="s" * 20_000), basic_client.basic())
    assert_oauth_error(response, 413, "invalid_request")


async def test_unknown_service_is_404_json(client: httpx.AsyncClient, basic_client: ClientHandle) -> None:
    response = await client.post("/services/1234567890123/par", data=par_params(basic_client))
    assert_oauth_error(response, 404, "not_found")


@pytest.mark.parametrize("body", ["response_type=code&response_type=code", "state=%zz", "state=%FF"])
async def test_malformed_parameters(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, body: str
) -> None:
    """GEN-01: repeated parameters; PAR-01: percent-encoded UTF-8."""
    headers = basic_client.basic() | {"Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post(service.par_path, content=f"client_id={basic_client.id}&{body}", headers=headers)
    assert_oauth_error(response, 400, "invalid_request")


# --- client authentication ----------------------------------------------------------------------------


async def test_wrong_secret_with_basic_is_401_with_challenge(
    client: httpx.AsyncClient, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """GEN-05: 401 and WWW-Authenticate when the Authorization header was used; nothing stored."""
    response = await post_par(client, service, par_params(basic_client), basic_client.basic("wrong"))
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert await stored_requests(app) == []


async def test_wrong_secret_with_post_is_401_without_challenge(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    post_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_POST")
    response = await post_par(client, service, par_params(post_client, client_secret="wrong"))
    assert_oauth_error(response, 401, "invalid_client")
    assert "www-authenticate" not in response.headers


async def test_unknown_client(client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle) -> None:
    response = await post_par(client, service, par_params(basic_client, client_id="999999999999999"))
    assert_oauth_error(response, 401, "invalid_client")


async def test_non_canonical_numeric_client_id_is_unknown(
    client: httpx.AsyncClient, service: ServiceHandle, factory: Factory
) -> None:
    public = await factory.client(service, clientType="PUBLIC")
    for variant in (f"0{public.id}", f"+{public.id}", f" {public.id}"):
        assert_oauth_error(
            await post_par(client, service, par_params(public, client_id=variant)), 401, "invalid_client"
        )


async def test_missing_credentials_for_confidential_client(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    body = assert_oauth_error(await post_par(client, service, par_params(basic_client)), 401, "invalid_client")
    assert "client_secret_basic" in body["error_description"]


async def test_credentials_in_the_wrong_channel(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Authlete A157357: a basic client posting its secret in the body, and vice versa, is refused."""
    response = await post_par(client, service, par_params(basic_client, client_secret=basic_client.secret))
    assert_oauth_error(response, 401, "invalid_client")
    post_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_POST")
    response = await post_par(client, service, par_params(post_client), post_client.basic())
    assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "query",
    [
        "client_secret={secret}",
        "client_assertion=eyJhbGciOiJub25lIn0.e30.",
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        "code=SplxlOBeZQQYbYS6WxSbIA",
        "a=1&code_verifier=dBjftJeZ4CVP",
        "refresh_token=tGzv3JOkF0XG5Qx2TlKWIA",
        "pass%77ord=hunter2",
    ],
)
async def test_credentials_in_the_request_uri_are_refused(
    client: httpx.AsyncClient,
    app: FastAPI,
    service: ServiceHandle,
    factory: Factory,
    caplog: pytest.LogCaptureFixture,
    query: str,
) -> None:
    """GEN-09 / RFC 6749 §2.3.1: credentials "MUST NOT be included in the request URI": refused (400
    invalid_request) rather than ignored, before the client is authenticated; the value is never echoed
    or logged, and nothing is stored."""
    post_client = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_POST")
    query = query.format(secret=post_client.secret)
    params = par_params(post_client, client_secret=post_client.secret)
    response = await client.post(f"{service.par_path}?{query}", data=params)
    body = assert_oauth_error(response, 400, "invalid_request")
    assert "request URI" in body["error_description"]
    value = query.rpartition("=")[2]
    assert value not in response.text and value not in caplog.text
    assert await stored_requests(app) == []
    harmless = await client.post(f"{service.par_path}?tenant=a", data=params)
    assert harmless.status_code == 201, harmless.text


async def test_public_client_sending_a_secret_is_refused(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    public = await factory.client(service, clientType="PUBLIC")
    response = await post_par(client, service, par_params(public, client_secret="guess"))
    assert_oauth_error(response, 401, "invalid_client")


async def test_two_methods_at_once_is_invalid_request(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """GEN-03."""
    response = await post_par(
        client, service, par_params(basic_client, client_secret=basic_client.secret), basic_client.basic()
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_client_id_must_match_the_authenticated_client(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """PAR-09."""
    other = await factory.client(service)
    response = await post_par(client, service, par_params(basic_client, client_id=str(other.id)), basic_client.basic())
    assert_oauth_error(response, 400, "invalid_request")


async def test_malformed_authorization_header(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    response = await post_par(client, service, par_params(basic_client), {"Authorization": "Basic %%%"})
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_client_of_another_service_is_unknown(
    client: httpx.AsyncClient, factory: Factory, basic_client: ClientHandle
) -> None:
    """Tenant isolation: clients belong to one service."""
    other_service = await factory.service()
    response = await post_par(client, other_service, par_params(basic_client), basic_client.basic())
    assert_oauth_error(response, 401, "invalid_client")


async def test_method_disabled_on_the_service_after_registration(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    update = await client.post(
        f"/api/{service.id}/service/update",
        headers=service.bearer,
        json={"supportedTokenAuthMethods": ["CLIENT_SECRET_POST"]},
    )
    assert update.status_code == 200, update.text
    response = await post_par(client, service, par_params(basic_client), basic_client.basic())
    assert_oauth_error(response, 401, "invalid_client")


# --- request validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "status", "error", "fragment"),
    [
        ({"request_uri": "urn:ietf:params:oauth:request_uri:abc"}, 400, "invalid_request", "request_uri"),  # PAR-11
        ({"request": "eyJ.eyJ.sig"}, 400, "invalid_request_object", "request object"),
        ({"response_type": None}, 400, "invalid_request", "response_type"),
        ({"response_type": "token"}, 400, "unsupported_response_type", "response_type"),
        ({"response_type": "code code"}, 400, "unsupported_response_type", "response_type"),
        ({"redirect_uri": None}, 400, "invalid_request", "redirect_uri"),  # PAR-20
        ({"redirect_uri": "https://evil.example/cb"}, 400, "invalid_request", "not registered"),  # PAR-12
        ({"redirect_uri": REDIRECT_URI + "/"}, 400, "invalid_request", "not registered"),  # exact match
        ({"redirect_uri": REDIRECT_URI + "#f"}, 400, "invalid_request", "malformed"),
        ({"redirect_uri": "/cb"}, 400, "invalid_request", "malformed"),
        ({"scope": "openid admin"}, 400, "invalid_scope", "admin"),
        ({"scope": 'openid "x"'}, 400, "invalid_scope", "malformed"),
        ({"scope": "openid  profile"}, 400, "invalid_scope", "malformed"),
        ({"code_challenge": None, "code_challenge_method": "S256"}, 400, "invalid_request", "code_challenge"),
        ({"code_challenge": "short"}, 400, "invalid_request", "malformed"),
        ({"code_challenge_method": "S512"}, 400, "invalid_request", "S256 or plain"),
        ({"state": "s" * 2049}, 400, "invalid_request", "state"),
        ({"nonce": "n" * 513}, 400, "invalid_request", "nonce"),
        ({"dpop_jkt": "not-a-thumbprint"}, 400, "invalid_request", "dpop_jkt"),
    ],
)
async def test_invalid_request_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    app: FastAPI,
    service: ServiceHandle,
    basic_client: ClientHandle,
    overrides: dict[str, str | None],
    status: int,
    error: str,
    fragment: str,
) -> None:
    """PAR-12 / PAR-19 / PAR-20: validated like an authorization request; errors as JSON; nothing stored."""
    response = await post_par(client, service, par_params(basic_client, **overrides), basic_client.basic())
    body = assert_oauth_error(response, status, error)
    assert fragment in body["error_description"]
    assert await stored_requests(app) == []


async def test_response_type_not_registered_for_client(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(supportedResponseTypes=["CODE", "CODE_ID_TOKEN"])
    code_only = await factory.client(service)
    response = await post_par(
        client, service, par_params(code_only, response_type="code id_token", nonce="n"), code_only.basic()
    )
    assert_oauth_error(response, 400, "unauthorized_client")


async def test_grant_types_must_allow_the_response_type(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    no_code = await factory.client(service, grantTypes=["CLIENT_CREDENTIALS"])
    response = await post_par(client, service, par_params(no_code), no_code.basic())
    assert_oauth_error(response, 400, "unauthorized_client")


async def test_client_requestable_scopes(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    limited = await factory.client(
        service, extension={"requestableScopesEnabled": True, "requestableScopes": ["openid"]}
    )
    assert (await post_par(client, service, par_params(limited, scope="openid"), limited.basic())).status_code == 201
    response = await post_par(client, service, par_params(limited, scope="openid payments"), limited.basic())
    assert "payments" in assert_oauth_error(response, 400, "invalid_scope")["error_description"]


async def test_nonce_required_for_id_token_response_types(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(supportedResponseTypes=["CODE_ID_TOKEN"])
    hybrid = await factory.client(
        service, responseTypes=["CODE_ID_TOKEN"], grantTypes=["AUTHORIZATION_CODE", "IMPLICIT"]
    )
    response = await post_par(client, service, par_params(hybrid, response_type="code id_token"), hybrid.basic())
    assert "nonce" in assert_oauth_error(response, 400, "invalid_request")["error_description"]


async def test_long_state_and_64_char_nonce_are_accepted(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """FAPI-17: state may exceed 1000 characters; nonce up to 64 characters must work."""
    response = await post_par(
        client, service, par_params(basic_client, state="s" * 1500, nonce="n" * 64), basic_client.basic()
    )
    assert response.status_code == 201, response.text


# --- PKCE policy ---------------------------------------------------------------------------------------


async def test_public_client_needs_pkce(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    """Public clients cannot authenticate; PKCE binds their code (PAR-38)."""
    public = await factory.client(service, clientType="PUBLIC")
    response = await post_par(client, service, par_params(public, code_challenge=None, code_challenge_method=None))
    assert_oauth_error(response, 400, "invalid_request")


async def test_confidential_client_may_skip_pkce_unless_required(client: httpx.AsyncClient, factory: Factory) -> None:
    relaxed = await factory.service()
    relaxed_client = await factory.client(relaxed)
    no_pkce = par_params(relaxed_client, code_challenge=None, code_challenge_method=None)
    assert (await post_par(client, relaxed, no_pkce, relaxed_client.basic())).status_code == 201
    strict = await factory.service(pkceRequired=True)
    strict_client = await factory.client(strict)
    response = await post_par(
        client,
        strict,
        par_params(strict_client, code_challenge=None, code_challenge_method=None),
        strict_client.basic(),
    )
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("where", ["service", "client"])
async def test_plain_refused_when_s256_required(client: httpx.AsyncClient, factory: Factory, where: str) -> None:
    """PKCE-02 / FAPI-04: …-par-plain-pkce-rejected."""
    service = await factory.service(**({"pkceS256Required": True} if where == "service" else {}))
    par_client = await factory.client(service, **({"pkceS256Required": True} if where == "client" else {}))
    plain = par_params(par_client, code_challenge="a" * 43, code_challenge_method="plain")
    assert_oauth_error(await post_par(client, service, plain, par_client.basic()), 400, "invalid_request")
    implicit_plain = par_params(par_client, code_challenge="a" * 43, code_challenge_method=None)
    assert_oauth_error(await post_par(client, service, implicit_plain, par_client.basic()), 400, "invalid_request")


async def test_plain_allowed_when_policy_permits(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    params = par_params(basic_client, code_challenge="a" * 43, code_challenge_method="plain")
    assert (await post_par(client, service, params, basic_client.basic())).status_code == 201


# --- client policies that later features complete ----------------------------------------------------


async def test_request_object_required_refuses_plain_parameters(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    """PAR-22: when signed request objects are required, plain parameters get invalid_request."""
    strict = await factory.client(service, requestObjectRequired=True)
    assert_oauth_error(await post_par(client, service, par_params(strict), strict.basic()), 400, "invalid_request")


async def test_dpop_required_needs_dpop_jkt(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    bound = await factory.client(service, dpopRequired=True)
    assert_oauth_error(await post_par(client, service, par_params(bound), bound.basic()), 400, "invalid_request")
    jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    assert (await post_par(client, service, par_params(bound, dpop_jkt=jkt), bound.basic())).status_code == 201


async def test_malformed_dpop_header_is_refused(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """DPOP-03/05: a proof is never silently ignored, since the client would believe its code is bound."""
    response = await post_par(client, service, par_params(basic_client), basic_client.basic() | {"DPoP": "eyJ.x.y"})
    assert_oauth_error(response, 400, "invalid_dpop_proof")


async def test_error_descriptions_use_the_rfc6749_character_set(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """RFC 6749 §5.2: no '"' or '\\' and nothing outside %x20-7E, even when echoing input."""
    response = await post_par(client, service, par_params(basic_client, scope='openid "é\\x'), basic_client.basic())
    description = assert_oauth_error(response, 400, "invalid_scope")["error_description"]
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description)
    assert json.loads(response.text) == response.json()


KNOWN_NAMES = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "client_secret",
    "request_uri",
    "request",
    "resource",
    "dpop_jkt",
    "x",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(st.sampled_from(KNOWN_NAMES), st.text(max_size=40), max_size=10),
    raw_tail=st.binary(max_size=40),
)
async def test_any_input_gets_a_documented_answer(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    params: dict[str, str],
    raw_tail: bytes,
) -> None:
    """Never a 5xx: any parameters, and any bytes, get 201 or an RFC 6749 §5.2 error."""
    body = httpx.QueryParams(params).__str__().encode() + b"&" + raw_tail
    for headers in (basic_client.basic(), {}):
        response = await client.post(
            service.par_path, content=body, headers=headers | {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code in (201, 400, 401, 413), response.text
        if response.status_code != 201:
            assert_oauth_error(response, response.status_code, response.json()["error"])


HEADER_NAMES = (b"content-type", b"authorization", b"dpop", b"client-cert")


@pytest.mark.parametrize(
    "raw_headers",
    [
        [],
        [(b"authorization", b"Basic a"), (b"authorization", b"Basic b"), (b"dpop", b"x")],
        [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-type", b"text/plain")],
        [(b"dpop", b"\xff\xe9\x00 high bytes"), (b"client-cert", b":\x80:"), (b"dpop", b"")],
        [(b"Authorization", b"Basic upper-case name"), (b"x-other", b"authorization")],
    ],
)
def test_one_pass_over_the_headers_reads_what_starlette_reads(raw_headers: list[tuple[bytes, bytes]]) -> None:
    """The endpoint's single pass gives each header's values as ``Headers.getlist`` does, in order."""
    request = Request({"type": "http", "headers": raw_headers})
    values = _header_values(request, *HEADER_NAMES)
    assert values == {name: request.headers.getlist(name.decode()) for name in HEADER_NAMES}
