"""JSON that ``json.loads`` reads but nothing else can hold (app/core/json_input.py), at both front doors,
on both databases and both stores of pushed requests: NaN, Infinity, 1e400, NUL, unpaired surrogates
and deep nesting are each refused with the endpoint's error, never a 500, and never fail another
push, least of all another service's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey
from sqlalchemy import func, select

from app.core.client_assertion import CLIENT_ASSERTION_TYPE
from app.core.errors import InvalidRequest
from app.core.secrets import REQUEST_URI_PREFIX, new_request_reference, reference_hash
from app.db.models import PushedRequest, Service
from app.db.redis_pushed_requests import KEY_PREFIX, key_expiry_ms, micros, pushed_request_key
from app.settings import Settings
from tests.factories import ClientHandle, Factory, ServiceHandle, assert_result_error, par_params, public_jwks

EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1"}, private=True)
DETAIL_TYPES = ["payment_initiation"]

# authorization_details values json.loads accepts and the server must refuse.
HOSTILE_DETAILS = {
    "NaN": '[{"type": "payment_initiation", "amount": NaN}]',
    "Infinity": '[{"type": "payment_initiation", "amount": Infinity}]',
    "-Infinity": '[{"type": "payment_initiation", "amount": -Infinity}]',
    "1e400": '[{"type": "payment_initiation", "amount": 1e400}]',
    "huge int": '[{"type": "payment_initiation", "amount": 1' + "0" * 400 + "}]",
    "NUL": '[{"type": "payment_initiation", "creditor": "a\\u0000b"}]',
    "NUL in a name": '[{"type": "payment_initiation", "a\\u0000b": 1}]',
    "unpaired surrogate": '[{"type": "payment_initiation", "creditor": "\\ud800"}]',
    "reversed pair": '[{"type": "payment_initiation", "creditor": "\\udc00\\ud800"}]',
    "nested 1200 deep": '[{"type": "payment_initiation", "x": ' + "[" * 1200 + "]" * 1200 + "}]",
    "nested 33 deep": '[{"type": "payment_initiation", "x": ' + "[" * 31 + "]" * 31 + "}]",
}


pytestmark = pytest.mark.usefixtures("forget_redis_keys")


@pytest.fixture
def settings(settings_per_store: Settings) -> Settings:
    return settings_per_store


@pytest.fixture
async def rar_service(factory: Factory) -> ServiceHandle:
    return await factory.service(supportedAuthorizationDetailsTypes=DETAIL_TYPES)


@pytest.fixture
async def public_client(factory: Factory, rar_service: ServiceHandle) -> ClientHandle:
    return await factory.client(rar_service, clientType="PUBLIC")


async def stored_requests(app: FastAPI) -> int:
    """Pushed requests of this app's services (the test Redis is shared with other tests' apps)."""
    async with app.state.par.sessions() as session:
        if app.state.par.pushed_requests is None:
            return await session.scalar(select(func.count()).select_from(PushedRequest)) or 0
        service_ids = (await session.scalars(select(Service.id))).all()
    redis = app.state.par.redis
    return sum(
        [len([key async for key in redis.scan_iter(match=f"{KEY_PREFIX}{service_id}:*")]) for service_id in service_ids]
    )


def assert_rfc_error(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error, body
    return str(body["error_description"])


def assert_envelope_error(response: httpx.Response, action: str, error: str) -> None:
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["action"] == action, answer
    assert json.loads(answer["responseContent"])["error"] == error, answer


# --- authorization_details (RFC 9396 §5: invalid_authorization_details) ------------------------------------


@pytest.mark.parametrize("details", HOSTILE_DETAILS.values(), ids=HOSTILE_DETAILS)
async def test_hostile_authorization_details_are_refused_at_both_front_doors(
    app: FastAPI, client: httpx.AsyncClient, rar_service: ServiceHandle, public_client: ClientHandle, details: str
) -> None:
    params = par_params(public_client, authorization_details=details)
    response = await client.post(rar_service.par_path, data=params)
    assert_rfc_error(response, 400, "invalid_authorization_details")
    response = await client.post(
        f"/api/{rar_service.id}/pushed_auth_req", headers=rar_service.bearer, json={"parameters": urlencode(params)}
    )
    assert_envelope_error(response, "BAD_REQUEST", "invalid_authorization_details")
    # Plain (not pushed) authorization requests are checked by the same rules.
    response = await client.post(
        f"/api/{rar_service.id}/pushed_auth_req/resolve",
        headers=rar_service.bearer,
        json={"parameters": urlencode(params)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["action"] in ("BAD_REQUEST", "LOCATION"), response.json()
    assert "invalid_authorization_details" in response.json()["responseContent"]
    assert await stored_requests(app) == 0


async def test_legitimate_authorization_details_still_pass(
    client: httpx.AsyncClient, rar_service: ServiceHandle, public_client: ClientHandle
) -> None:
    details = [
        {
            "type": "payment_initiation",
            "instructedAmount": {"currency": "EUR", "amount": 123.5, "cents": 12350},
            "creditorAccount": {"iban": "DE02100100109307118603", "owner": {"name": "Mérchant 😀 \\u0000"}},
            "nested": [[[[[[[[[[{"deep": True}]]]]]]]]]],
        }
    ]
    response = await client.post(
        rar_service.par_path, data=par_params(public_client, authorization_details=json.dumps(details))
    )
    assert response.status_code == 201, response.text


async def test_a_poisoned_push_does_not_fail_another_services_pushes(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, rar_service: ServiceHandle, public_client: ClientHandle
) -> None:
    """One tenant's hostile push, concurrent with another tenant's pushes (sharing the writer's batches),
    fails alone: every push of the other service is stored and answered 201."""
    other_service = await factory.service()
    other_client = await factory.client(other_service)
    poisoned = [
        client.post(rar_service.par_path, data=par_params(public_client, authorization_details=details))
        for details in HOSTILE_DETAILS.values()
    ]
    honest = [
        client.post(other_service.par_path, data=par_params(other_client), headers=other_client.basic())
        for _ in range(30)
    ]
    responses = await asyncio.gather(*(item for pair in zip(honest, poisoned * 3, strict=False) for item in pair))
    responses += await asyncio.gather(*honest[len(poisoned) * 3 :])
    statuses = {response.request.url.path: set() for response in responses}  # type: dict[str, set[int]]
    for response in responses:
        statuses[response.request.url.path].add(response.status_code)
    assert statuses == {other_service.par_path: {201}, rar_service.par_path: {400}}
    assert await stored_requests(app) == 30


# --- stored requests that could not be answered with: never a 500, never half-consumed -------------------


async def store_poisoned(app: FastAPI, service: ServiceHandle, client_id: int, request: dict[str, Any]) -> str:
    """Store a pushed request holding ``request`` as it could have been stored before validation
    refused such values; PostgreSQL cannot hold it at all, and its writer refuses that row alone."""
    reference = new_request_reference()
    now = datetime.now(UTC)
    state = app.state.par
    parameters = urlencode(par_params(ClientHandle(client_id, None, {})))
    if state.pushed_requests is not None:
        body = json.dumps({"p": parameters, "r": request, "c": micros(now)})  # allows NaN, as it used to
        expires = now + timedelta(minutes=1)
        value = f"{micros(expires)} 0 {client_id}\n{body}".encode()
        await state.redis.set(
            pushed_request_key(service.id, reference_hash(reference)), value, pxat=key_expiry_ms(expires)
        )
        return REQUEST_URI_PREFIX + reference
    row = {
        "reference_hash": reference_hash(reference),
        "service_id": service.id,
        "client_id": client_id,
        "parameters": parameters,
        "request": request,
        "state": "pushed",
        "created_at": now,
        "expires_at": now + timedelta(minutes=1),
    }
    if state.engine.dialect.name == "postgresql":
        with pytest.raises(InvalidRequest):
            await state.writer.add(row)
    else:
        assert await state.writer.add(row) is True  # SQLite holds NaN and escaped surrogates in JSON
    return REQUEST_URI_PREFIX + reference


POISONED_REQUESTS = {
    "NaN": {"responseType": "code", "amount": float("nan")},
    "Infinity": {"responseType": "code", "amount": float("inf")},
    "unpaired surrogate": {"responseType": "code", "state": "\ud800"},
}


@pytest.mark.parametrize("request_body", POISONED_REQUESTS.values(), ids=POISONED_REQUESTS)
async def test_a_stored_request_that_cannot_be_answered_with_is_unusable_not_a_500(
    app: FastAPI,
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    request_body: dict[str, Any],
) -> None:
    request_uri = await store_poisoned(app, service, basic_client.id, request_body)
    for path, body in (
        ("resolve", {"parameters": urlencode({"client_id": str(basic_client.id), "request_uri": request_uri})}),
        ("consume", {"clientId": str(basic_client.id), "requestUri": request_uri}),
        ("consume", {"clientId": str(basic_client.id), "requestUri": request_uri}),
    ):
        response = await client.post(f"/api/{service.id}/pushed_auth_req/{path}", headers=service.bearer, json=body)
        assert_envelope_error(response, "BAD_REQUEST", "invalid_request_uri")


# --- JWTs: client assertions (invalid_client) and DPoP proofs (invalid_dpop_proof) -------------------------


def segment(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def signed(header: dict[str, Any], payload: str) -> str:
    """A JWT over a payload written by hand (so it can hold what json.dumps would not write), signed
    with EC_KEY."""
    from joserfc import jws

    return jws.serialize_compact(header, payload.encode(), EC_KEY, algorithms=[header["alg"]])


def assertion_claims(client: ClientHandle, service: ServiceHandle, **overrides: str) -> str:
    now = int(time.time())
    claims = {
        "iss": json.dumps(str(client.id)),
        "sub": json.dumps(str(client.id)),
        "aud": json.dumps(service.issuer),
        "jti": json.dumps(f"j-{time.monotonic_ns()}"),
        "iat": str(now),
        "exp": str(now + 60),
    }
    claims.update(overrides)
    return "{" + ",".join(f'"{name}":{value}' for name, value in claims.items()) + "}"


@pytest.fixture
async def key_client(factory: Factory, service: ServiceHandle) -> ClientHandle:
    return await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(EC_KEY))


HOSTILE_ASSERTIONS = {
    "iat NaN": {"iat": "NaN"},
    "exp NaN": {"exp": "NaN"},
    "exp 1e300, iat NaN": {"exp": "1e300", "iat": "NaN"},
    "exp 1e400": {"exp": "1e400"},
    "exp huge int": {"exp": "1" + "0" * 400},
    "iat a year ago as Infinity": {"iat": "-Infinity", "exp": str(int(time.time()) + 365 * 86400)},
    "iss unpaired surrogate": {"iss": '"\\ud800"'},
    "jti unpaired surrogate": {"jti": '"\\ud800"'},
    "jti NUL": {"jti": '"a\\u0000b"'},
    "nested 3000 deep": {"x": "[" * 3000 + "]" * 3000},
}


@pytest.mark.parametrize("overrides", HOSTILE_ASSERTIONS.values(), ids=HOSTILE_ASSERTIONS)
@pytest.mark.parametrize("with_client_id", [True, False], ids=["client_id", "iss-only"])
async def test_hostile_client_assertions_are_invalid_client(
    app: FastAPI,
    client: httpx.AsyncClient,
    service: ServiceHandle,
    key_client: ClientHandle,
    overrides: dict[str, str],
    with_client_id: bool,
) -> None:
    assertion = signed({"alg": "ES256", "kid": "ec-1"}, assertion_claims(key_client, service, **overrides))
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion}
    params = {**par_params(key_client, client_id=str(key_client.id) if with_client_id else None), **form}
    assert_rfc_error(await client.post(service.par_path, data=params), 401, "invalid_client")
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req", headers=service.bearer, json={"parameters": urlencode(params)}
    )
    assert_envelope_error(response, "UNAUTHORIZED", "invalid_client")
    assert await stored_requests(app) == 0


async def test_a_hand_written_assertion_is_accepted(
    client: httpx.AsyncClient, service: ServiceHandle, key_client: ClientHandle
) -> None:
    """The helpers above make valid assertions: the refusals are for the hostile values only."""
    assertion = signed({"alg": "ES256", "kid": "ec-1"}, assertion_claims(key_client, service))
    params = {
        **par_params(key_client),
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    response = await client.post(service.par_path, data=params)
    assert response.status_code == 201, response.text


def dpop_claims(service: ServiceHandle, **overrides: str) -> str:
    claims = {
        "jti": json.dumps(f"p-{time.monotonic_ns()}"),
        "htm": '"POST"',
        "htu": json.dumps(service.par_url),
        "iat": str(int(time.time())),
    }
    claims.update(overrides)
    return "{" + ",".join(f'"{name}":{value}' for name, value in claims.items()) + "}"


DPOP_HEADER = {"typ": "dpop+jwt", "alg": "ES256", "jwk": EC_KEY.as_dict(private=False)}


def nested_header(depth: int) -> str:
    """A proof whose header nests ``depth`` arrays (the signature does not matter: it is never reached)."""
    header = '{"typ":"dpop+jwt","alg":"ES256","x":' + "[" * depth + "]" * depth + "}"
    return f"{segment(header.encode())}.{segment(b'{}')}.c2ln"


def hostile_proofs(service: ServiceHandle) -> Iterator[tuple[str, str]]:
    yield "header nested 1000 deep", nested_header(1000)
    yield "header nested 33 deep", nested_header(33)
    for name, overrides in {
        "jti unpaired surrogate": {"jti": '"\\ud800"'},
        "jti NUL": {"jti": '"\\u0000"'},
        "iat NaN": {"iat": "NaN"},
        "iat 1e400": {"iat": "1e400"},
        "claims nested 600 deep": {"x": "[" * 600 + "]" * 600},
    }.items():
        yield name, signed(DPOP_HEADER, dpop_claims(service, **overrides))


async def test_hostile_dpop_proofs_are_invalid_dpop_proof(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    for name, proof in hostile_proofs(service):
        response = await client.post(
            service.par_path, data=par_params(basic_client), headers={**basic_client.basic(), "DPoP": proof}
        )
        assert "DPoP" in assert_rfc_error(response, 400, "invalid_dpop_proof"), name
        response = await client.post(
            f"/api/{service.id}/pushed_auth_req",
            headers=service.bearer,
            json={
                "parameters": urlencode(par_params(basic_client)),
                "clientId": str(basic_client.id),
                "clientSecret": basic_client.secret,
                "dpop": proof,
                "htm": "POST",
                "htu": service.par_url,
            },
        )
        assert_envelope_error(response, "BAD_REQUEST", "invalid_dpop_proof")
    # The same hand-written proof with ordinary claims is accepted.
    proof = signed(DPOP_HEADER, dpop_claims(service))
    response = await client.post(
        service.par_path, data=par_params(basic_client), headers={**basic_client.basic(), "DPoP": proof}
    )
    assert response.status_code == 201, response.text
    assert await stored_requests(app) == 1


# --- HTTP Basic ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [b"\xff\xfe", "é".encode(), b"\xc3\xa9\xc3\xa9==", b"\x00"])
async def test_non_ascii_basic_credentials_are_invalid_client(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, token: bytes
) -> None:
    """RFC 6749 §5.2: with the Authorization header, 401 invalid_client and a WWW-Authenticate challenge."""
    response = await client.post(
        service.par_path,
        content=urlencode(par_params(basic_client)).encode(),
        headers=[(b"Content-Type", b"application/x-www-form-urlencoded"), (b"Authorization", b"Basic " + token)],
    )
    assert_rfc_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


# --- client registration and the management API ----------------------------------------------------------


HOSTILE_JWKS = {
    "nested 3000 deep": '{"keys": [], "x": ' + "[" * 3000 + "]" * 3000 + "}",
    "NaN": '{"keys": [{"kty": "EC", "x": NaN}]}',
    "unpaired surrogate": '{"keys": [{"kty": "EC", "kid": "\\ud800"}]}',
    "NUL": '{"keys": [{"kty": "EC", "kid": "\\u0000"}]}',
}


@pytest.mark.parametrize("jwks", HOSTILE_JWKS.values(), ids=HOSTILE_JWKS)
async def test_hostile_jwks_are_refused_at_client_registration(
    client: httpx.AsyncClient, service: ServiceHandle, jwks: str
) -> None:
    body = {"clientName": "c", "redirectUris": ["https://rp.example/cb"], "tokenAuthMethod": "PRIVATE_KEY_JWT"}
    response = await client.post(
        f"/api/{service.id}/client/create", json={**body, "jwks": jwks}, headers=service.bearer
    )
    assert "jwks" in assert_result_error(response, 400)["resultMessage"]


HOSTILE_BODIES = {
    "NaN": '{"serviceName": "s", "x": NaN}',
    "1e400": '{"serviceName": "s", "pushedAuthReqDuration": 1e400}',
    "unpaired surrogate": '{"serviceName": "\\ud800"}',
    "NUL": '{"serviceName": "a\\u0000b"}',
    "nested 3000 deep": '{"serviceName": "s", "x": ' + "[" * 3000 + "]" * 3000 + "}",
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES)
async def test_hostile_json_bodies_are_result_errors(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, body: str
) -> None:
    json_headers = {"Content-Type": "application/json"}
    response = await client.post("/api/service/create", content=body, headers={**factory.admin, **json_headers})
    assert "not acceptable JSON" in assert_result_error(response, 400)["resultMessage"]
    client_body = body.replace('"serviceName"', '"clientName"')
    response = await client.post(
        f"/api/{service.id}/client/create", content=client_body, headers={**service.bearer, **json_headers}
    )
    assert "not acceptable JSON" in assert_result_error(response, 400)["resultMessage"]
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req",
        content=body.replace('"serviceName"', '"parameters"'),
        headers={**service.bearer, **json_headers},
    )
    assert "not acceptable JSON" in assert_result_error(response, 400)["resultMessage"]


async def test_an_oversized_chunked_management_body_is_413(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    """Without Content-Length the size limit stops the body as it streams; the management routes answer
    413, as the others do, not FastAPI's 400 "error parsing the body"."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"serviceName": "'
        for _ in range(40):
            yield b"x" * 8192
        yield b'"}'

    for path, headers in (
        ("/api/service/create", factory.admin),
        (f"/api/{service.id}/client/create", service.bearer),
        (f"/api/{service.id}/pushed_auth_req", service.bearer),
    ):
        response = await client.post(path, content=chunks(), headers={**headers, "Content-Type": "application/json"})
        assert "content-length" not in response.request.headers
        assert_result_error(response, 413)
