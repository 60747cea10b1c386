"""The authorization endpoint's half of PAR: /api/{id}/pushed_auth_req/resolve and /consume.

Every test runs with pushed requests in the database and in Redis (PAR_PUSHED_REQUEST_STORE).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from app.api.schemas import AuthorizationOut
from app.core.authorization import UNUSABLE_REQUEST_URI
from app.settings import Settings
from tests.conftest import BASE_URL
from tests.factories import REDIRECT_URI, ClientHandle, Factory, ServiceHandle, assert_shaped_as, par_params, post_par

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("forget_redis_keys")


@pytest.fixture
def settings(settings_per_store: Settings) -> Settings:
    return settings_per_store


class Clock:
    """A settable clock installed into the app (AppState.clock)."""

    def __init__(self, app: FastAPI, now: datetime) -> None:
        self.now = now
        app.state.par = dataclasses.replace(app.state.par, clock=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(app: FastAPI) -> Clock:
    return Clock(app, T0)


async def pushed_request_uri(
    client: httpx.AsyncClient, service: ServiceHandle, par_client: ClientHandle, **overrides: str
) -> str:
    response = await post_par(client, service, par_params(par_client, **overrides), par_client.basic())
    assert response.status_code == 201, response.text
    return str(response.json()["request_uri"])


async def resolve(client: httpx.AsyncClient, service: ServiceHandle, **params: str) -> dict[str, Any]:
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req/resolve", headers=service.bearer, json={"parameters": urlencode(params)}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def consume(
    client: httpx.AsyncClient, service: ServiceHandle, client_id: int | str, request_uri: str
) -> dict[str, Any]:
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req/consume",
        headers=service.bearer,
        json={"clientId": str(client_id), "requestUri": request_uri},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_unusable(answer: dict[str, Any]) -> None:
    """PAR-32: unknown, expired, consumed and other-client URIs look the same."""
    assert answer["action"] == "BAD_REQUEST"
    assert (
        answer["responseContent"] == f'{{"error":"invalid_request_uri","error_description":"{UNUSABLE_REQUEST_URI}"}}'
    )
    assert "request" not in answer and "parameters" not in answer


def redirect_parts(answer: dict[str, Any]) -> tuple[str, dict[str, list[str]], dict[str, list[str]]]:
    """A LOCATION answer's URL as a browser would follow it: base, query and fragment parameters."""
    assert answer["action"] == "LOCATION", answer
    url = urlsplit(answer["responseContent"])
    return f"{url.scheme}://{url.netloc}{url.path}", parse_qs(url.query), parse_qs(url.fragment)


# --- resolving ------------------------------------------------------------------------------------------


async def test_resolve_returns_the_pushed_request(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, clock: Clock
) -> None:
    """PAR-30: client_id + request_uri alone are enough."""
    request_uri = await pushed_request_uri(client, service, basic_client, nonce="n-1")
    answer = await resolve(client, service, client_id=str(basic_client.id), request_uri=request_uri)
    assert answer["action"] == "OK" and answer["resultCode"] == "A008001"
    assert answer["clientId"] == basic_client.id and answer["requestUri"] == request_uri
    assert parse_qs(answer["parameters"])["redirect_uri"] == [REDIRECT_URI]
    assert "client_secret" not in answer["parameters"]
    assert answer["request"]["redirectUri"] == REDIRECT_URI
    assert answer["request"]["scopes"] == ["openid", "profile"] and answer["request"]["nonce"] == "n-1"
    assert answer["request"]["codeChallengeMethod"] == "S256"
    # The first resolve opens the authorization session (default 1800 s).
    assert answer["expiresAt"] == int((T0 + timedelta(seconds=1800)).timestamp() * 1000)
    assert_shaped_as(answer, AuthorizationOut)


async def test_resolve_is_repeatable_until_consumed(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """FAPI-08 / …-par-ensure-reused-request-uri-prior-to-auth-completion-succeeds: reloads work."""
    request_uri = await pushed_request_uri(client, service, basic_client)
    for _ in range(3):
        assert (await resolve(client, service, client_id=str(basic_client.id), request_uri=request_uri))[
            "action"
        ] == "OK"


async def test_other_parameters_are_ignored_in_favour_of_the_pushed_ones(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """RFC 9126 §4: only the pushed request counts."""
    request_uri = await pushed_request_uri(client, service, basic_client)
    answer = await resolve(
        client,
        service,
        client_id=str(basic_client.id),
        request_uri=request_uri,
        redirect_uri="https://evil.example/cb",
        scope="payments",
        state="other",
    )
    assert answer["action"] == "OK"
    assert answer["request"]["redirectUri"] == REDIRECT_URI and answer["request"]["state"] == "af0ifjsldkj"


async def test_resolve_by_client_alias(client: httpx.AsyncClient, factory: Factory, service: ServiceHandle) -> None:
    aliased = await factory.client(service, clientIdAlias="web-app")
    request_uri = await pushed_request_uri(client, service, aliased)
    answer = await resolve(client, service, client_id="web-app", request_uri=request_uri)
    assert answer["action"] == "OK" and answer["clientIdAlias"] == "web-app"


# --- consuming ------------------------------------------------------------------------------------------


async def test_consume_once(client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle) -> None:
    """PAR-31: one-time use; afterwards every resolve or consume answers invalid_request_uri."""
    request_uri = await pushed_request_uri(client, service, basic_client)
    first = await consume(client, service, basic_client.id, request_uri)
    assert first["action"] == "OK" and first["resultCode"] == "A008002"
    assert first["request"]["redirectUri"] == REDIRECT_URI
    assert_shaped_as(first, AuthorizationOut)
    unusable = await consume(client, service, basic_client.id, request_uri)
    assert_unusable(unusable)
    assert_shaped_as(unusable, AuthorizationOut)
    assert_unusable(await resolve(client, service, client_id=str(basic_client.id), request_uri=request_uri))


async def test_fifty_concurrent_consumes_have_one_winner(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    request_uri = await pushed_request_uri(client, service, basic_client)
    answers = await asyncio.gather(*(consume(client, service, basic_client.id, request_uri) for _ in range(50)))
    assert sorted(answer["action"] for answer in answers) == ["BAD_REQUEST"] * 49 + ["OK"]


async def test_concurrent_consumes_across_replicas_have_one_winner(
    client: httpx.AsyncClient, second_replica: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    request_uri = await pushed_request_uri(client, service, basic_client)
    answers = await asyncio.gather(
        *(
            consume(replica, service, basic_client.id, request_uri)
            for _ in range(25)
            for replica in (client, second_replica)
        )
    )
    assert [answer["action"] for answer in answers].count("OK") == 1


async def test_another_client_cannot_use_or_destroy_the_request(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """PAR-16 and NOTE-04: the binding is checked before anything changes (fosite burns it first)."""
    request_uri = await pushed_request_uri(client, service, basic_client)
    intruder = await factory.client(service)
    assert_unusable(await resolve(client, service, client_id=str(intruder.id), request_uri=request_uri))
    assert_unusable(await consume(client, service, intruder.id, request_uri))
    assert (await resolve(client, service, client_id=str(basic_client.id), request_uri=request_uri))["action"] == "OK"
    assert (await consume(client, service, basic_client.id, request_uri))["action"] == "OK"


async def test_request_uri_of_another_service_is_unusable(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Tenant isolation: a request_uri is only known to the service that issued it."""
    request_uri = await pushed_request_uri(client, service, basic_client)
    other = await factory.service()
    assert_unusable(await resolve(client, other, client_id=str(basic_client.id), request_uri=request_uri))
    assert_unusable(await consume(client, other, basic_client.id, request_uri))


async def test_consume_on_resolve_makes_resolve_single_use(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(consumeRequestUriOnResolve=True)
    par_client = await factory.client(service)
    request_uri = await pushed_request_uri(client, service, par_client)
    assert (await resolve(client, service, client_id=str(par_client.id), request_uri=request_uri))["action"] == "OK"
    assert_unusable(await resolve(client, service, client_id=str(par_client.id), request_uri=request_uri))


# --- lifetimes --------------------------------------------------------------------------------------------


async def test_first_resolve_window_boundaries(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, clock: Clock
) -> None:
    """PAR-32: usable until expires_in has passed, and not at that instant."""
    at_the_edge = await pushed_request_uri(client, service, basic_client)
    too_late = await pushed_request_uri(client, service, basic_client)
    clock.advance(60 - 0.001)
    assert (await resolve(client, service, client_id=str(basic_client.id), request_uri=at_the_edge))["action"] == "OK"
    clock.advance(0.001)
    assert_unusable(await resolve(client, service, client_id=str(basic_client.id), request_uri=too_late))
    assert_unusable(await consume(client, service, basic_client.id, too_late))


async def test_resolved_request_outlives_expires_in_for_the_session(
    client: httpx.AsyncClient, factory: Factory, clock: Clock
) -> None:
    """NOTE-02: expires_in bounds the first resolve; the login then has the authorization-session lifetime."""
    service = await factory.service(authorizationSessionDuration=600)
    par_client = await factory.client(service)
    resolved = await pushed_request_uri(client, service, par_client)
    never_resolved = await pushed_request_uri(client, service, par_client)
    clock.advance(30)
    answer = await resolve(client, service, client_id=str(par_client.id), request_uri=resolved)
    assert answer["expiresAt"] == int((T0 + timedelta(seconds=630)).timestamp() * 1000)
    clock.advance(300)  # well past expires_in (60 s)
    assert (await resolve(client, service, client_id=str(par_client.id), request_uri=resolved))["action"] == "OK"
    assert_unusable(await resolve(client, service, client_id=str(par_client.id), request_uri=never_resolved))
    clock.advance(300 - 0.001)  # just before the session ends
    assert (await consume(client, service, par_client.id, resolved))["action"] == "OK"


async def test_session_lifetime_ends_too(client: httpx.AsyncClient, factory: Factory, clock: Clock) -> None:
    service = await factory.service(authorizationSessionDuration=120)
    par_client = await factory.client(service)
    request_uri = await pushed_request_uri(client, service, par_client)
    await resolve(client, service, client_id=str(par_client.id), request_uri=request_uri)
    clock.advance(120)
    assert_unusable(await consume(client, service, par_client.id, request_uri))


async def test_consumed_requests_are_purged(
    client: httpx.AsyncClient, app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """With Redis the consumed request's key is gone at once: nothing is left to purge."""
    from app.main import purge_expired

    request_uri = await pushed_request_uri(client, service, basic_client)
    await consume(client, service, basic_client.id, request_uri)
    assert await purge_expired(app.state.par) == (0 if app.state.par.pushed_requests else 1)


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_uri", ["urn:ietf:params:oauth:request_uri:unknown", "urn:ietf:params:oauth:request_uri:"]
)
async def test_unknown_request_uri(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, request_uri: str
) -> None:
    answer = await resolve(client, service, client_id=str(basic_client.id), request_uri=request_uri)
    assert answer["action"] == "BAD_REQUEST" and "invalid_request_uri" in answer["responseContent"]


async def test_request_uri_not_issued_by_par_is_refused(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """PAR-35: never fetched; not one of ours."""
    answer = await resolve(client, service, client_id=str(basic_client.id), request_uri="https://evil.example/ro")
    assert answer["action"] == "BAD_REQUEST" and "invalid_request_uri" in answer["responseContent"]


@pytest.mark.parametrize(
    "params",
    [
        {"request_uri": "urn:ietf:params:oauth:request_uri:x"},
        {"client_id": "1", "request_uri": "urn:x", "request": "eyJ.x.y"},
        {"client_id": "999999999999", "response_type": "code"},
    ],
)
async def test_bad_requests_without_a_safe_redirect(
    client: httpx.AsyncClient, service: ServiceHandle, params: dict[str, str]
) -> None:
    answer = await resolve(client, service, **params)
    assert answer["action"] == "BAD_REQUEST"
    assert "error" in answer["responseContent"]


async def test_plain_request_is_validated_like_a_push(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    answer = await resolve(client, service, **par_params(basic_client))
    assert answer["action"] == "OK" and "requestUri" not in answer
    assert answer["request"]["redirectUri"] == REDIRECT_URI


async def test_plain_request_with_bad_redirect_uri_is_not_redirected(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """RFC 6749 §4.1.2.1: never redirect to an unverified URI (no open redirector, FAPI-15)."""
    answer = await resolve(client, service, **par_params(basic_client, redirect_uri="https://evil.example/cb"))
    assert answer["action"] == "BAD_REQUEST" and "evil" not in answer["responseContent"]


@pytest.mark.parametrize("where", ["service", "client"])
async def test_par_required_redirects_invalid_request(client: httpx.AsyncClient, factory: Factory, where: str) -> None:
    """PAR-34 / FAPI-02: a plain request is refused when PAR is required, by redirect with iss (RFC 9207)."""
    service = await factory.service(**({"parRequired": True} if where == "service" else {}))
    par_client = await factory.client(service, **({"parRequired": True} if where == "client" else {}))
    base, query, _ = redirect_parts(await resolve(client, service, **par_params(par_client)))
    assert base == REDIRECT_URI
    assert query["error"] == ["invalid_request"] and query["state"] == ["af0ifjsldkj"]
    assert query["iss"] == [f"{BASE_URL}/services/{service.id}"]
    request_uri = await pushed_request_uri(client, service, par_client)
    assert (await resolve(client, service, client_id=str(par_client.id), request_uri=request_uri))["action"] == "OK"


async def test_redirect_keeps_the_registered_query(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    with_query = await factory.client(service, redirectUris=["https://client.example.org/cb?tenant=7"])
    params = par_params(with_query, redirect_uri="https://client.example.org/cb?tenant=7", scope="admin")
    base, query, _ = redirect_parts(await resolve(client, service, **params))
    assert base == "https://client.example.org/cb"
    assert query["tenant"] == ["7"] and query["error"] == ["invalid_scope"]


async def test_token_response_types_redirect_in_the_fragment(client: httpx.AsyncClient, factory: Factory) -> None:
    service = await factory.service(supportedResponseTypes=["CODE", "CODE_ID_TOKEN"])
    hybrid = await factory.client(
        service, responseTypes=["CODE_ID_TOKEN"], grantTypes=["AUTHORIZATION_CODE", "IMPLICIT"]
    )
    params = par_params(hybrid, response_type="code id_token", nonce="n", scope="openid admin")
    _, query, fragment = redirect_parts(await resolve(client, service, **params))
    assert query == {} and fragment["error"] == ["invalid_scope"]


async def test_policy_change_after_the_push_is_enforced(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    """PAR-33: the client's policy is checked again when the request is resolved."""
    par_client = await factory.client(service)
    request_uri = await pushed_request_uri(client, service, par_client, scope="openid payments")
    update = await client.post(
        f"/api/{service.id}/client/update/{par_client.id}",
        headers=service.bearer,
        json={"extension": {"requestableScopesEnabled": True, "requestableScopes": ["openid"]}},
    )
    assert update.status_code == 200
    _, query, _ = redirect_parts(await resolve(client, service, client_id=str(par_client.id), request_uri=request_uri))
    assert query["error"] == ["invalid_scope"]


# --- failures of the API call ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("resolve", {}, 400),
        ("resolve", {"parameters": 5}, 400),
        ("consume", {"clientId": "1"}, 400),
    ],
)
async def test_malformed_calls(
    client: httpx.AsyncClient, service: ServiceHandle, path: str, body: dict[str, Any], status: int
) -> None:
    response = await client.post(f"/api/{service.id}/pushed_auth_req/{path}", headers=service.bearer, json=body)
    assert response.status_code == status and set(response.json()) == {"resultCode", "resultMessage"}


async def test_calls_need_this_services_token(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    other = await factory.service()
    for path in ("resolve", "consume"):
        url = f"/api/{service.id}/pushed_auth_req/{path}"
        assert (await client.post(url, json={"parameters": ""})).status_code == 401
        assert (await client.post(url, json={"parameters": ""}, headers=other.bearer)).status_code == 403


async def test_metadata_announces_iss_in_authorization_responses(
    client: httpx.AsyncClient, service: ServiceHandle
) -> None:
    """RFC 9207 / META-08."""
    metadata = (await client.get(f"/.well-known/oauth-authorization-server/services/{service.id}")).json()
    assert metadata["authorization_response_iss_parameter_supported"] is True
