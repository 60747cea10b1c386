"""Hostile input at every front door: malformed bodies, parameters, headers and ids.

Each front door answers in its own documented format, whatever it is sent, and never with a 5xx:

- the RFC 9126 endpoint (``POST /services/{id}/par``): RFC 6749 §5.2 JSON, ``{"error",
  "error_description"}`` only, ``application/json``, ``Cache-Control: no-store``, with 400, 401, 404,
  405 or 413;
- the backend API (``/api/{id}/pushed_auth_req``, ``.../resolve``, ``.../consume``) and the management
  API: the Authlete envelope with an ``action`` (200) for OAuth-level outcomes, or a ``ResultError``
  ``{"resultCode", "resultMessage"}`` (``A`` and six digits; the message starts with ``[code] ``).

Non-canonical numeric ids: FastAPI parses path ids in pydantic's lax int mode, so ``0123``, ``+123``,
`` 123``, ``123.0`` and ``1_23`` all name service 123 (the same service, never another one), while
``1e3``, ``0x10`` and non-ASCII digits are refused with 400. Client ids are matched as canonical
decimal strings only, so every variant of a client's id is an unknown client.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry
from sqlalchemy import select

from app.core.client_assertion import CLIENT_ASSERTION_TYPE
from app.db.models import PushedRequest
from app.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.factories import (
    REDIRECT_URI,
    ClientHandle,
    Factory,
    ServiceHandle,
    assert_result_error,
    par_params,
    public_jwks,
)
from tests.hostile_json import hostile_json, object_with

FORM = "application/x-www-form-urlencoded"
ACTION_BY_STATUS = {201: "CREATED", 400: "BAD_REQUEST", 401: "UNAUTHORIZED", 413: "PAYLOAD_TOO_LARGE"}
RESULT_CODE = re.compile(r"A\d{6}")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INT64_MAX = 2**63 - 1
MAX_BODY = 65_536  # PAR_MAX_BODY_BYTES default
MAX_API_BODY = 262_144  # PAR_MAX_API_BODY_BYTES default


# --- the two answer formats -----------------------------------------------------------------------------


def assert_rfc_error(response: httpx.Response, status: int, error: str = "invalid_request") -> dict[str, Any]:
    """RFC 6749 §5.2: JSON with exactly error and error_description, no-store."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str) and body["error_description"]
    return dict(body)


def assert_rfc_answer(response: httpx.Response) -> None:
    """Any answer of the RFC endpoint: 201 with a request_uri, or an RFC 6749 §5.2 error."""
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        assert set(response.json()) == {"request_uri", "expires_in"}
    else:
        assert_rfc_error(response, response.status_code, response.json().get("error", "?"))


def assert_envelope(response: httpx.Response, action: str | tuple[str, ...]) -> dict[str, Any]:
    """A processed /api call: 200 with the action (or one of them), a result code and, for pushes, the
    RFC body to relay."""
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = dict(response.json())
    assert body["action"] in ((action,) if isinstance(action, str) else action), body
    assert RESULT_CODE.fullmatch(body["resultCode"]), body
    assert body["resultMessage"].startswith(f"[{body['resultCode']}] "), body
    return body


def assert_api_outcome(response: httpx.Response, expected: int | str | tuple[int | str, ...]) -> None:
    """One of the expected outcomes: an action (str) in a 200 envelope, or a ResultError status (int)."""
    allowed = expected if isinstance(expected, tuple) else (expected,)
    if response.status_code == 200 and any(isinstance(item, str) for item in allowed):
        assert_envelope(response, tuple(item for item in allowed if isinstance(item, str)))
    else:
        assert response.status_code in allowed, response.text
        assert_result_error(response, response.status_code)


def assert_api_answer(response: httpx.Response) -> None:
    """Any answer of an /api operation: a 2xx, or a ResultError."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_result_error(response, response.status_code)


def relayed_error(body: dict[str, Any]) -> str:
    content = json.loads(body["responseContent"])
    assert set(content) == {"error", "error_description"}, content
    return str(content["error"])


async def push_raw(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    content: bytes | str | AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
    content_type: str | None = FORM,
) -> httpx.Response:
    return await client.post(
        service.par_path,
        content=content,
        headers={**({"Content-Type": content_type} if content_type is not None else {}), **(headers or {})},
    )


async def api_push(client: httpx.AsyncClient, service: ServiceHandle, body: dict[str, Any]) -> httpx.Response:
    """``body`` as JSON; ASCII-only, so that lone surrogates travel as ``\\ud800`` escapes."""
    headers = {"Authorization": f"Bearer {service.token}", "Content-Type": "application/json"}
    return await client.post(f"/api/{service.id}/pushed_auth_req", content=json.dumps(body), headers=headers)


async def stored_requests(app: FastAPI) -> list[PushedRequest]:
    async with app.state.par.sessions() as session:
        return list((await session.scalars(select(PushedRequest))).all())


@pytest.fixture
async def public_client(factory: Factory, service: ServiceHandle) -> ClientHandle:
    return await factory.client(service, clientType="PUBLIC")


def valid(client: ClientHandle, **overrides: str | None) -> str:
    return urlencode(par_params(client, **overrides))


# --- 1. malformed parameters, the same at both front doors ----------------------------------------------

Build = Callable[[ClientHandle], str]

PARAMETER_CASES = [
    # percent-encoding
    pytest.param(lambda c: valid(c) + "&nonce=%zz", 400, "invalid_request", id="pct-not-hex"),
    pytest.param(lambda c: valid(c) + "&nonce=%4", 400, "invalid_request", id="pct-one-digit"),
    pytest.param(lambda c: valid(c) + "&nonce=abc%", 400, "invalid_request", id="pct-trailing"),
    pytest.param(lambda c: valid(c) + "&%zz=1", 400, "invalid_request", id="pct-in-name"),
    pytest.param(lambda c: valid(c) + "&nonce=%FF%FE", 400, "invalid_request", id="pct-invalid-utf8"),
    pytest.param(lambda c: valid(c) + "&nonce=%C0%AF", 400, "invalid_request", id="pct-overlong-utf8"),
    pytest.param(lambda c: valid(c) + "&nonce=%ED%A0%80", 400, "invalid_request", id="pct-utf8-surrogate"),
    pytest.param(lambda c: valid(c) + "&nonce=%E2%82", 400, "invalid_request", id="pct-truncated-utf8"),
    pytest.param(lambda c: valid(c, nonce="n\u00e9\u4e16\U0001f600"), 201, None, id="pct-valid-non-ascii"),
    # repeated and empty parameters
    pytest.param(lambda c: valid(c) + f"&client_id={c.id}", 400, "invalid_request", id="client_id-twice"),
    pytest.param(lambda c: valid(c) + "&scope=openid", 400, "invalid_request", id="scope-twice"),
    pytest.param(lambda c: valid(c) + "&response_type=code", 400, "invalid_request", id="response_type-twice"),
    pytest.param(
        lambda c: valid(c) + "&resource=https%3A%2F%2Frs.example%2Fa&resource=https%3A%2F%2Frs.example%2Fb",
        201,
        None,
        id="resource-twice-allowed",
    ),
    pytest.param(lambda c: valid(c, client_id=""), 201, None, id="client_id-empty-basic-names-client"),
    pytest.param(lambda c: valid(c, redirect_uri=""), 400, "invalid_request", id="redirect_uri-empty"),
    pytest.param(lambda c: valid(c, response_type=""), 400, "invalid_request", id="response_type-empty"),
    pytest.param(lambda c: valid(c) + "&=x", 400, "invalid_request", id="empty-name"),
    pytest.param(lambda c: valid(c) + "&nonce", 400, "invalid_request", id="no-equals-sign"),
    pytest.param(lambda c: valid(c) + "&&&", 201, None, id="empty-fields-tolerated"),
    # JSON where a form is expected
    pytest.param(lambda c: json.dumps(par_params(c)), 400, "invalid_request", id="json-object-as-form"),
    pytest.param(lambda c: valid(c) + "&claims=" + quote('{"a":1}'), 201, None, id="json-valued-parameter"),
    # overlong values and too many parameters
    pytest.param(lambda c: valid(c, state="s" * 20_000), 413, "invalid_request", id="state-20000"),
    pytest.param(lambda c: valid(c, nonce="n" * 513), 400, "invalid_request", id="nonce-over-service-limit"),
    pytest.param(lambda c: valid(c) + "&" + "x" * 17_000 + "=1", 413, "invalid_request", id="name-17000"),
    pytest.param(
        lambda c: valid(c) + "".join(f"&p{i}=1" for i in range(100)), 413, "invalid_request", id="parameters-107"
    ),
    # control characters
    pytest.param(lambda c: valid(c, state="a\x00b"), 400, "invalid_request", id="pct-00"),
    pytest.param(lambda c: valid(c, state="a\x07b"), 400, "invalid_request", id="pct-07"),
    pytest.param(lambda c: valid(c, state="a\x7fb"), 400, "invalid_request", id="pct-7f"),
    pytest.param(lambda c: valid(c) + "&state2=a\x01b", 400, "invalid_request", id="raw-01"),
    pytest.param(lambda c: valid(c) + "&x\x1b=1", 400, "invalid_request", id="raw-esc-in-name"),
    pytest.param(lambda c: valid(c, state="a\tb"), 201, None, id="tab-allowed"),
]


@pytest.mark.parametrize(("build", "status", "error"), PARAMETER_CASES)
async def test_parameters_at_the_rfc_endpoint(
    client: httpx.AsyncClient,
    app: FastAPI,
    service: ServiceHandle,
    basic_client: ClientHandle,
    build: Build,
    status: int,
    error: str | None,
) -> None:
    response = await push_raw(client, service, build(basic_client).encode(), basic_client.basic())
    if status == 201:
        assert response.status_code == 201, response.text
    else:
        assert_rfc_error(response, status, error or "")
        assert await stored_requests(app) == []


@pytest.mark.parametrize(("build", "status", "error"), PARAMETER_CASES)
async def test_parameters_at_the_backend_api(
    client: httpx.AsyncClient,
    app: FastAPI,
    service: ServiceHandle,
    basic_client: ClientHandle,
    build: Build,
    status: int,
    error: str | None,
) -> None:
    """The same parameters forwarded by an authorization server: the action names the RFC status."""
    response = await api_push(
        client,
        service,
        {"parameters": build(basic_client), "clientId": str(basic_client.id), "clientSecret": basic_client.secret},
    )
    body = assert_envelope(response, ACTION_BY_STATUS[status])
    if error is not None:
        assert relayed_error(body) == error
        assert await stored_requests(app) == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xff\xfe", id="ff-fe"),
        pytest.param(b"\x80", id="lone-continuation"),
        pytest.param(b"\xc0\xaf", id="overlong"),
        pytest.param(b"\xed\xa0\x80", id="utf8-surrogate"),
        pytest.param(b"\xe2\x82", id="truncated"),
        pytest.param(b"\xf4\x90\x80\x80", id="above-u10ffff"),
        pytest.param("é".encode("latin-1"), id="latin1"),
    ],
)
async def test_invalid_utf8_body_at_the_rfc_endpoint(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, raw: bytes
) -> None:
    body = valid(basic_client).encode() + b"&nonce=" + raw
    assert_rfc_error(await push_raw(client, service, body, basic_client.basic()), 400)


@pytest.mark.parametrize(
    "parameters",
    [
        pytest.param("&nonce=\ud800", id="lone-high-surrogate-in-value"),
        pytest.param("&x\udfff=1", id="lone-low-surrogate-in-name"),
        pytest.param("&nonce=\udcff\ud800", id="reversed-pair"),
    ],
)
async def test_lone_surrogates_at_the_backend_api(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, parameters: str
) -> None:
    """``"\\ud800"`` is valid JSON but not Unicode text (RFC 8259 §8.2): the call is malformed, not a 500.

    The invalid UTF-8 bytes of the RFC endpoint cannot travel inside JSON; lone surrogates are the JSON
    equivalent."""
    response = await api_push(
        client,
        service,
        {
            "parameters": valid(basic_client) + parameters,
            "clientId": str(basic_client.id),
            "clientSecret": basic_client.secret,
        },
    )
    if response.status_code == 200:
        assert relayed_error(assert_envelope(response, "BAD_REQUEST")) == "invalid_request"
    else:
        assert_result_error(response, 400)


# --- 2. bodies and content types at the RFC endpoint ----------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        pytest.param("text/plain", 400, id="text-plain"),
        pytest.param("application/json", 400, id="json"),
        pytest.param("application/xml", 400, id="xml"),
        pytest.param(None, 400, id="none"),
        pytest.param("", 400, id="empty"),
        pytest.param(f"{FORM}X", 400, id="form-with-suffix"),
        pytest.param(f"{FORM}, text/plain", 400, id="two-media-types"),
        pytest.param(f"{FORM}; charset=latin1", 400, id="charset-latin1"),
        pytest.param(f"{FORM}; charset=iso-8859-1", 400, id="charset-iso-8859-1"),
        pytest.param(f"{FORM}; charset=utf-16", 400, id="charset-utf16"),
        pytest.param(f"{FORM}; foo=bar", 400, id="unknown-parameter"),
        pytest.param(f"{FORM}; charset=utf-8; boundary=x", 400, id="charset-and-boundary"),
        pytest.param(f"{FORM}; charset=utf-8", 201, id="charset-utf8"),
        pytest.param(f"{FORM};charset=UTF-8", 201, id="charset-UTF8-no-space"),
        pytest.param(f'{FORM}; charset="UTF-8"', 201, id="charset-quoted"),
        pytest.param(FORM.upper() + "; CHARSET=UTF-8", 201, id="upper-case"),
    ],
)
async def test_content_types_at_the_rfc_endpoint(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    content_type: str | None,
    status: int,
) -> None:
    """RFC 9126 §2.1: application/x-www-form-urlencoded with a character encoding of UTF-8, nothing else."""
    response = await push_raw(client, service, valid(basic_client), basic_client.basic(), content_type)
    if status == 201:
        assert response.status_code == 201, response.text
    else:
        assert_rfc_error(response, status)


async def test_multipart_at_the_rfc_endpoint(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    for files in ({"x": b"y"}, {"state": ("a.txt", b"\x00" * 100, "application/octet-stream")}):
        response = await client.post(
            service.par_path, data=par_params(basic_client), files=files, headers=basic_client.basic()
        )
        assert_rfc_error(response, 400)


async def test_hand_written_multipart_at_the_rfc_endpoint(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """A malformed multipart body (no closing boundary) is refused by media type before parsing."""
    body = b'--b\r\nContent-Disposition: form-data; name="response_type"\r\n\r\ncode\r\n'
    response = await push_raw(client, service, body, basic_client.basic(), "multipart/form-data; boundary=b")
    assert_rfc_error(response, 400)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        pytest.param(b"", FORM, 400, id="empty-form"),
        pytest.param(b"", None, 400, id="empty-no-type"),
        pytest.param(b"&", FORM, 400, id="just-ampersand"),
        pytest.param(b"=", FORM, 400, id="just-equals"),
        pytest.param(b"   ", FORM, 400, id="spaces"),
        pytest.param(b"{}", "application/json", 400, id="json-empty-object"),
        pytest.param(b"[1,2]", FORM, 400, id="json-array-as-form"),
        pytest.param(b"<a>b</a>", "application/xml", 400, id="xml"),
        pytest.param(b"x" * (MAX_BODY + 1), FORM, 413, id="huge-with-length"),
        pytest.param(b"x" * (10 * MAX_BODY), None, 413, id="huge-no-type"),
        pytest.param(b"x" * MAX_BODY, FORM, 413, id="at-limit-one-parameter-too-long"),
    ],
)
async def test_bodies_at_the_rfc_endpoint(
    client: httpx.AsyncClient,
    app: FastAPI,
    service: ServiceHandle,
    basic_client: ClientHandle,
    content: bytes,
    content_type: str | None,
    status: int,
) -> None:
    assert_rfc_error(await push_raw(client, service, content, basic_client.basic(), content_type), status)
    assert await stored_requests(app) == []


def streamed(total: int, chunk: int = 16_384) -> tuple[AsyncIterator[bytes], list[int]]:
    """A body without Content-Length (chunked), and a counter of the chunks the server pulled."""
    pulled: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for index in range(total // chunk):
            pulled.append(index)
            yield b"x" * chunk

    return body(), pulled


async def test_huge_streamed_body_at_the_rfc_endpoint(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """No Content-Length: the server counts what it reads and stops soon after the limit."""
    body, pulled = streamed(10 * 1024 * 1024)
    response = await push_raw(client, service, body, basic_client.basic())
    assert "content-length" not in response.request.headers
    assert_rfc_error(response, 413)
    assert len(pulled) <= MAX_BODY // 16_384 + 2


async def test_small_streamed_body_at_the_rfc_endpoint(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    payload = valid(basic_client).encode()

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 7):
            yield payload[start : start + 7]

    assert (await push_raw(client, service, body(), basic_client.basic())).status_code == 201


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        pytest.param([("Content-Length", "abc")], 400, "invalid_request", id="content-length-not-a-number"),
        pytest.param([("Content-Length", "-1")], 400, "invalid_request", id="content-length-negative"),
        pytest.param([("Content-Length", "9" * 40)], 413, "invalid_request", id="content-length-huge"),
        pytest.param([("Authorization", "Basic %%%")], 401, "invalid_client", id="basic-not-base64"),
        pytest.param([("Authorization", "Basic")], 401, "invalid_client", id="basic-no-credentials"),
        pytest.param([("Authorization", "Basic " + "A" * 10_000)], 401, "invalid_client", id="basic-huge"),
        pytest.param([("Authorization", "Basic /w==")], 401, "invalid_client", id="basic-invalid-utf8"),
        pytest.param([("Authorization", "Basic JUZGOng=")], 401, "invalid_client", id="basic-pct-invalid-utf8"),
        pytest.param([("Authorization", "Bearer x")], 401, "invalid_client", id="bearer-scheme"),
        pytest.param([("Authorization", "Basic Og==")], 401, "invalid_client", id="basic-empty-user"),
        pytest.param(
            [("Authorization", "Basic eDp5"), ("Authorization", "Basic eDp5")], 401, "invalid_client", id="two-basics"
        ),
        pytest.param([("DPoP", "a.b.c"), ("DPoP", "a.b.c")], 400, "invalid_dpop_proof", id="two-dpop-headers"),
        pytest.param([("DPoP", "not a jwt")], 400, "invalid_dpop_proof", id="dpop-garbage"),
    ],
)
async def test_headers_at_the_rfc_endpoint(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    public_client: ClientHandle,
    headers: list[tuple[str, str]],
    status: int,
    error: str,
) -> None:
    """Header-level garbage (a NUL in a header value cannot be sent over HTTP/1.1 and is not tested)."""
    request = client.build_request(
        "POST", service.par_path, content=valid(public_client), headers=[("Content-Type", FORM), *headers]
    )
    response = await client.send(request)
    assert_rfc_error(response, status, error)
    if error == "invalid_client":
        assert response.headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_other_methods_at_the_rfc_endpoint(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, method: str
) -> None:
    response = await client.request(method, service.par_path, content=valid(basic_client), headers={"X": "y"})
    assert_rfc_error(response, 405)
    assert response.headers["allow"] == "POST"


# --- 3. bodies and content types at the backend API -----------------------------------------------------

ApiBody = Callable[[ClientHandle], bytes]


def api_json(client: ClientHandle, **fields: Any) -> bytes:
    body = {"parameters": valid(client), "clientId": str(client.id), "clientSecret": client.secret} | fields
    return json.dumps({key: value for key, value in body.items() if value is not None}).encode()


@pytest.mark.parametrize(
    ("build", "content_type", "expected"),
    [
        # transport: ResultError 400 / 413
        pytest.param(lambda _: b'{"parameters": "\xff"}', "application/json", 400, id="json-invalid-utf8"),
        pytest.param(lambda _: b"", "application/json", 400, id="json-empty"),
        pytest.param(lambda _: b"{", "application/json", 400, id="json-truncated"),
        pytest.param(lambda _: b"[]", "application/json", 400, id="json-array"),
        pytest.param(lambda _: b'"parameters"', "application/json", 400, id="json-string"),
        pytest.param(lambda _: b"null", "application/json", 400, id="json-null"),
        pytest.param(lambda _: b"{}", "application/json", 400, id="json-without-parameters"),
        pytest.param(lambda _: b'{"parameters": 1}', "application/json", 400, id="parameters-number"),
        pytest.param(lambda _: b'{"parameters": ["a=b"]}', "application/json", 400, id="parameters-list"),
        pytest.param(lambda _: b'{"parameters": {"a": "b"}}', "application/json", 400, id="parameters-object"),
        pytest.param(lambda _: b'{"parameters": NaN}', "application/json", 400, id="parameters-nan"),
        pytest.param(lambda _: b'{"parameters": ' + b"9" * 5000 + b"}", "application/json", 400, id="int-5000-digits"),
        pytest.param(lambda _: b"[" * 100_000, "application/json", 400, id="json-nested-100000"),
        pytest.param(lambda _: b'{"a":' * 50_000, "application/json", 400, id="json-objects-nested-50000"),
        pytest.param(lambda c: api_json(c), "text/plain", 400, id="text-plain"),
        pytest.param(lambda c: api_json(c), "application/xml", 400, id="xml"),
        pytest.param(lambda c: api_json(c), None, 400, id="no-content-type"),
        pytest.param(lambda c: api_json(c), "text/json", 400, id="text-json"),
        pytest.param(lambda c: api_json(c), "application/problem+json", 400, id="problem-json"),
        pytest.param(lambda c: api_json(c), FORM, 400, id="json-sent-as-form"),
        pytest.param(lambda _: b"x" * (MAX_API_BODY + 1), "application/json", 413, id="huge-with-length"),
        # processed: an envelope with the action
        pytest.param(lambda c: api_json(c), "application/json; charset=latin1", ("CREATED", 400), id="charset-ignored"),
        pytest.param(lambda c: api_json(c), "APPLICATION/JSON", "CREATED", id="upper-case-json"),
        pytest.param(lambda c: b"\xef\xbb\xbf" + api_json(c), "application/json", ("CREATED", 400), id="utf8-bom"),
        pytest.param(lambda c: api_json(c).decode().encode("utf-16"), "application/json", ("CREATED", 400), id="utf16"),
        pytest.param(
            lambda c: api_json(c)[:-1] + b', "parameters": "x=1"}',
            "application/json",
            ("BAD_REQUEST", 400),
            id="dup-key",
        ),
        pytest.param(
            lambda c: api_json(c, parameters=valid(c) + "&pad=" + "x" * MAX_BODY),
            "application/json",
            "PAYLOAD_TOO_LARGE",
            id="parameters-over-64k",
        ),
        pytest.param(
            lambda c: api_json(c, clientSecret="\x00" * 100),
            "application/json",
            ("UNAUTHORIZED", 400),
            id="secret-nuls",
        ),
        pytest.param(
            lambda c: api_json(c, clientId=str(c.id) + "\x00"),
            "application/json",
            ("BAD_REQUEST", 400),
            id="client-id-nul",
        ),
        pytest.param(
            lambda c: api_json(c, parameters=""), "application/json", "BAD_REQUEST", id="parameters-empty-string"
        ),
        pytest.param(
            lambda c: (
                urlencode({"parameters": valid(c), "clientId": str(c.id), "clientSecret": c.secret}).encode()
                + b"&parameters=x%3D1"
            ),
            FORM,
            400,  # refused, as at the RFC endpoint: not the last value kept
            id="form-parameters-twice",
        ),
        pytest.param(
            lambda c: b"parameters=state%3D%FF&clientId=" + str(c.id).encode() + b"&clientSecret=" + c.secret.encode(),
            FORM,
            "BAD_REQUEST",
            id="form-invalid-utf8-replaced",
        ),
        pytest.param(
            lambda c: b"parameters=%zz&clientId=" + str(c.id).encode(), FORM, "BAD_REQUEST", id="form-bad-pct"
        ),
        pytest.param(lambda _: b"parameters=\xff\xfe", FORM, "BAD_REQUEST", id="form-raw-invalid-utf8"),
    ],
)
async def test_bodies_at_the_backend_api(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    build: ApiBody,
    content_type: str | None,
    expected: int | str | tuple[int | str, ...],
) -> None:
    """``expected``: a ResultError status (int), an action (str), or a tuple of acceptable ones."""
    headers = service.bearer | ({"Content-Type": content_type} if content_type else {})
    response = await client.post(f"/api/{service.id}/pushed_auth_req", content=build(basic_client), headers=headers)
    assert_api_outcome(response, expected)


async def test_multipart_at_the_backend_api(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req",
        data={"parameters": valid(basic_client)},
        files={"x": b"y"},
        headers=service.bearer,
    )
    assert_result_error(response, 400)


async def test_huge_streamed_body_at_the_backend_api(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    body, pulled = streamed(10 * 1024 * 1024)
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req",
        content=body,
        headers=service.bearer | {"Content-Type": "application/json"},
    )
    assert_result_error(response, 413)
    assert len(pulled) <= MAX_API_BODY // 16_384 + 2


async def test_malformed_body_without_token_is_401_not_400(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    """An unauthenticated caller learns nothing about its body (app/api/bodies.py)."""
    response = await client.post(
        f"/api/{service.id}/pushed_auth_req", content=b"\xff{", headers={"Content-Type": "application/json"}
    )
    assert_result_error(response, 401)


# --- 4. resolve and consume -------------------------------------------------------------------------------


@pytest.fixture
async def pushed(client: httpx.AsyncClient, service: ServiceHandle, public_client: ClientHandle) -> str:
    """The request_uri of a request that ``public_client`` pushed."""
    response = await push_raw(client, service, valid(public_client))
    assert response.status_code == 201, response.text
    return str(response.json()["request_uri"])


async def resolve(client: httpx.AsyncClient, service: ServiceHandle, body: bytes | dict[str, Any]) -> httpx.Response:
    url = f"/api/{service.id}/pushed_auth_req/resolve"
    if isinstance(body, dict):
        return await client.post(url, json=body, headers=service.bearer)
    return await client.post(url, content=body, headers=service.bearer | {"Content-Type": "application/json"})


async def consume(client: httpx.AsyncClient, service: ServiceHandle, body: bytes | dict[str, Any]) -> httpx.Response:
    url = f"/api/{service.id}/pushed_auth_req/consume"
    if isinstance(body, dict):
        return await client.post(url, json=body, headers=service.bearer)
    return await client.post(url, content=body, headers=service.bearer | {"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "parameters",
    [
        pytest.param("client_id={cid}&request_uri={uri}%zz", id="pct-not-hex"),
        pytest.param("client_id={cid}&request_uri={uri}%FF", id="pct-invalid-utf8"),
        pytest.param("client_id={cid}&request_uri={uri}&request_uri={uri}", id="request_uri-twice"),
        pytest.param("client_id={cid}&client_id={cid}&request_uri={uri}", id="client_id-twice"),
        pytest.param("client_id=&request_uri={uri}", id="client_id-empty"),
        pytest.param("client_id={cid}&request_uri=", id="request_uri-empty-plain-request"),
        pytest.param("client_id={cid}&request_uri={uri}%00", id="request_uri-nul"),
        pytest.param("client_id={cid}%07&request_uri={uri}", id="client_id-bel"),
        pytest.param("client_id={cid}&request_uri=" + "u" * 20_000, id="request_uri-20000"),
        pytest.param("client_id={cid}&request_uri=urn:ietf:params:oauth:request_uri:", id="request_uri-no-reference"),
        pytest.param(
            "client_id={cid}&request_uri=" + quote("urn:ietf:params:oauth:request_uri:\u00e9"), id="uri-nonascii"
        ),
        pytest.param('{{"client_id": "{cid}", "request_uri": "{uri}"}}', id="json-instead-of-query"),
        pytest.param("", id="empty"),
    ],
)
async def test_malformed_resolve_parameters(
    client: httpx.AsyncClient, service: ServiceHandle, public_client: ClientHandle, pushed: str, parameters: str
) -> None:
    """Each is BAD_REQUEST (nothing safe to redirect to) and leaves the pushed request resolvable."""
    text = parameters.format(cid=public_client.id, uri=quote(pushed, safe=""))
    assert_envelope(await resolve(client, service, {"parameters": text}), "BAD_REQUEST")
    ok = await resolve(client, service, {"parameters": f"client_id={public_client.id}&request_uri={quote(pushed)}"})
    assert_envelope(ok, "OK")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"", 400, id="empty"),
        pytest.param(b"{}", 400, id="no-parameters"),
        pytest.param(b'{"parameters": 1}', 400, id="parameters-number"),
        pytest.param(b'{"parameters": "\xff"}', 400, id="invalid-utf8"),
        pytest.param(b'{"parameters": "client_id=\\ud800&request_uri=x"}', 400, id="lone-surrogate"),
        pytest.param(b'{"parameters":' + b"[" * 100_000, 400, id="nested-100000"),
        pytest.param(b"x" * (MAX_API_BODY + 1), 413, id="huge"),
    ],
)
async def test_malformed_resolve_bodies(
    client: httpx.AsyncClient, service: ServiceHandle, body: bytes, status: int
) -> None:
    """A malformed call is a ResultError; a lone surrogate may also be answered BAD_REQUEST."""
    response = await resolve(client, service, body)
    if response.status_code == 200 and status == 400:
        assert_envelope(response, "BAD_REQUEST")
    else:
        assert_result_error(response, status)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"", 400, id="empty"),
        pytest.param(b"{}", 400, id="no-fields"),
        pytest.param(b'{"clientId": 1, "requestUri": "x"}', 400, id="client-id-number"),
        pytest.param(b'{"clientId": "1", "requestUri": ["x"]}', 400, id="request-uri-list"),
        pytest.param(b'{"clientId": "", "requestUri": ""}', 400, id="empty-strings"),
        pytest.param(b'{"clientId": "\\ud800", "requestUri": "urn:\\udfff"}', 400, id="lone-surrogates"),
        pytest.param(b'{"clientId": "1", "requestUri": "' + b"u" * 200_000 + b'"}', 400, id="request-uri-200k"),
        pytest.param(b"[" * 100_000, 400, id="nested-100000"),
    ],
)
async def test_malformed_consume_bodies(
    client: httpx.AsyncClient, service: ServiceHandle, pushed: str, body: bytes, status: int
) -> None:
    response = await consume(client, service, body)
    if response.status_code == 200:
        assert_envelope(response, "BAD_REQUEST")
    else:
        assert_result_error(response, status)


# --- 5. non-canonical numeric ids --------------------------------------------------------------------------


def service_id_variants(service_id: int) -> dict[str, str]:
    text = str(service_id)
    return {
        "leading-zero": "0" + text,
        "many-leading-zeros": "0" * 30 + text,
        "plus-sign": "+" + text,
        "leading-space": quote(" " + text),
        "trailing-space": quote(text + " "),
        "decimal-point": text + ".0",
        "underscore": text[:3] + "_" + text[3:],
        "exponent": text + "e0",
        "hex": hex(service_id),
        "arabic-indic-digits": quote(text.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))),
        "fullwidth-digits": quote(text.translate(str.maketrans("0123456789", "０１２３４５６７８９"))),
    }


SAME_SERVICE_VARIANTS = [
    "leading-zero",
    "many-leading-zeros",
    "plus-sign",
    "leading-space",
    "trailing-space",
    "decimal-point",
    "underscore",
    "exponent",
    "hex",
    "arabic-indic-digits",
    "fullwidth-digits",
]


@pytest.mark.parametrize("variant", SAME_SERVICE_VARIANTS)
async def test_non_canonical_service_id_names_no_service(
    client: httpx.AsyncClient,
    app: FastAPI,
    factory: Factory,
    service: ServiceHandle,
    basic_client: ClientHandle,
    variant: str,
) -> None:
    """``0123``, ``+123``, `` 123``, ``123.0``, ``1_23``, ``1e0``, ``0x..`` and non-ASCII digits are not
    the id 123 (pydantic's lax int parsing would read several of them so): each names nothing, a 404 in
    the endpoint's format at every door, with the service's own token or another's, and nothing stored."""
    other = await factory.service()
    path_id = service_id_variants(service.id)[variant]
    par = await push_raw(client, service, valid(basic_client), basic_client.basic(), FORM)
    assert par.status_code == 201  # baseline
    response = await client.post(
        f"/services/{path_id}/par", content=valid(basic_client), headers=basic_client.basic() | {"Content-Type": FORM}
    )
    assert_rfc_error(response, 404, "not_found")
    assert len(await stored_requests(app)) == 1
    api = await client.post(
        f"/api/{path_id}/pushed_auth_req",
        json={"parameters": valid(basic_client), "clientId": str(basic_client.id), "clientSecret": basic_client.secret},
        headers=service.bearer,
    )
    assert_result_error(api, 404)
    for token in (service, other):
        assert_result_error(await client.get(f"/api/{path_id}/service/get", headers=token.bearer), 404)
    metadata = await client.get(f"/.well-known/oauth-authorization-server/services/{path_id}")
    assert_rfc_error(metadata, 404, "not_found")


OUT_OF_RANGE_IDS = [
    pytest.param("0", id="zero"),
    pytest.param("00", id="double-zero"),
    pytest.param("-1", id="negative"),
    pytest.param("-0", id="negative-zero"),
    pytest.param(str(INT64_MAX), id="int64-max"),
    pytest.param(str(INT64_MAX + 1), id="int64-max-plus-1"),
    pytest.param(str(-(2**63) - 1), id="int64-min-minus-1"),
    pytest.param("9" * 40, id="40-digits"),
    pytest.param("9" * 5000, id="5000-digits"),
    pytest.param("1e3", id="exponent"),
    pytest.param("1.5", id="fraction"),
    pytest.param("NaN", id="nan"),
    pytest.param("inf", id="inf"),
    pytest.param(quote("١٢٣"), id="arabic-indic-123"),
    pytest.param("%00", id="nul"),
    pytest.param("%FF", id="invalid-utf8"),
    pytest.param("x" * 5000, id="5000-letters"),
]

# (method, path with {id}, which token, RFC format?)
ID_OPERATIONS = [
    ("POST", "/services/{id}/par", None, True),
    ("GET", "/.well-known/oauth-authorization-server/services/{id}", None, True),
    ("GET", "/services/{id}/.well-known/openid-configuration", None, True),
    ("POST", "/api/{id}/pushed_auth_req", "service", False),
    ("POST", "/api/{id}/pushed_auth_req", "admin", False),
    ("POST", "/api/{id}/pushed_auth_req/resolve", "service", False),
    ("POST", "/api/{id}/pushed_auth_req/consume", "admin", False),
    ("GET", "/api/{id}/service/get", "admin", False),
    ("POST", "/api/{id}/service/update", "admin", False),
    ("DELETE", "/api/{id}/service/delete", "admin", False),
    ("POST", "/api/{id}/service/token/create", "admin", False),
    ("GET", "/api/{id}/service/token/get/list", "admin", False),
    ("DELETE", "/api/{sid}/service/token/delete/{id}", "admin", False),
    ("POST", "/api/{id}/client/create", "admin", False),
    ("GET", "/api/{id}/client/get/list", "service", False),
    ("GET", "/api/{sid}/client/get/{id}", "service", False),
    ("POST", "/api/{sid}/client/update/{id}", "admin", False),
    ("DELETE", "/api/{sid}/client/delete/{id}", "service", False),
    ("POST", "/api/{sid}/client/secret/refresh/{id}", "service", False),
    ("POST", "/api/{sid}/client/secret/update/{id}", "service", False),
]


@pytest.mark.parametrize("path_id", OUT_OF_RANGE_IDS)
async def test_out_of_range_and_malformed_ids_in_every_path(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, path_id: str
) -> None:
    """Every operation with an id in its path, with ids no service or client has: never a 5xx, always the
    path's error format (a 2xx would mean the id named something)."""
    failures = []
    for method, template, token, rfc in ID_OPERATIONS:
        path = template.format(id=path_id, sid=service.id)
        headers = {"Authorization": f"Bearer {service.token}"} if token == "service" else {}
        headers |= ADMIN if token == "admin" else {}
        content = valid(basic_client) if rfc else json.dumps({"parameters": "a=b", "clientId": "1", "requestUri": "x"})
        headers["Content-Type"] = FORM if rfc else "application/json"
        response = await client.request(method, path, content=content, headers=headers)
        try:
            if template.endswith("/token/get/list") and response.status_code == 200:
                # Listing the tokens of a service that does not exist answers an empty list (not a 404):
                # nothing is revealed, so it is tolerated here.
                assert response.json() == [], response.text
                continue
            assert 400 <= response.status_code < 500, response.text
            if rfc:
                assert_rfc_error(response, response.status_code, response.json().get("error", "?"))
            else:
                assert_result_error(response, response.status_code)
        except (AssertionError, ValueError) as failure:
            failures.append(f"{method} {template} ({token or 'no'} token): {response.status_code} {failure}")
    assert not failures, "\n".join(failures)


async def test_page_bounds_out_of_range(client: httpx.AsyncClient, service: ServiceHandle) -> None:
    failures = []
    for start, end in [("9" * 30, None), (str(INT64_MAX + 1), str(INT64_MAX + 2)), ("-1", "5"), ("0", "9" * 30)]:
        query = f"start={start}" + (f"&end={end}" if end else "")
        for path, headers in [("/api/service/get/list", ADMIN), (f"/api/{service.id}/client/get/list", service.bearer)]:
            response = await client.get(f"{path}?{query}", headers=headers)
            try:
                assert_result_error(response, 400)
            except (AssertionError, ValueError) as failure:
                failures.append(f"GET {path}?{query}: {response.status_code} {failure}")
    assert not failures, "\n".join(failures)


def client_id_variants(client_id: int) -> dict[str, str]:
    text = str(client_id)
    return {
        "leading-zero": "0" + text,
        "plus-sign": "+" + text,
        "leading-space": " " + text,
        "trailing-space": text + " ",
        "decimal-point": text + ".0",
        "underscore": text[:3] + "_" + text[3:],
        "exponent": text + "e0",
        "arabic-indic-digits": text.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
        "fullwidth-digits": text.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
        "superscript-digits": text.translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")),
    }


FOREIGN_CLIENT_IDS = [
    pytest.param("0", id="zero"),
    pytest.param("00", id="double-zero"),
    pytest.param("-1", id="negative"),
    pytest.param(str(INT64_MAX), id="int64-max"),
    pytest.param(str(INT64_MAX + 1), id="int64-max-plus-1"),
    pytest.param("9" * 40, id="40-digits"),
    pytest.param("9" * 4000, id="4000-digits"),
    pytest.param("١٢٣", id="arabic-indic-123"),
]


async def client_id_doors(
    client: httpx.AsyncClient, service: ServiceHandle, public: ClientHandle, identifier: str, request_uri: str
) -> dict[str, httpx.Response]:
    """``identifier`` as the client id at every door that takes one."""
    basic = {"Authorization": "Basic " + base64.b64encode(f"{quote_plus(identifier)}:x".encode()).decode()}
    return {
        "rfc-form": await push_raw(client, service, valid(public, client_id=identifier)),
        "rfc-basic": await push_raw(client, service, valid(public, client_id=None), basic),
        "api-clientId": await api_push(
            client, service, {"parameters": valid(public, client_id=identifier), "clientId": identifier}
        ),
        "api-parameters": await api_push(client, service, {"parameters": valid(public, client_id=identifier)}),
        "resolve-pushed": await resolve(
            client, service, {"parameters": urlencode({"client_id": identifier, "request_uri": request_uri})}
        ),
        "resolve-plain": await resolve(client, service, {"parameters": valid(public, client_id=identifier)}),
        "consume": await consume(client, service, {"clientId": identifier, "requestUri": request_uri}),
        "management-get": await client.get(
            f"/api/{service.id}/client/get/{quote(identifier, safe='')}", headers=service.bearer
        ),
    }


def check_client_id_doors(responses: dict[str, httpx.Response], *, malformed: bool = False) -> list[str]:
    """Every door must treat the identifier as an unknown client, in its own format; a ``malformed`` one
    (with control characters) may instead be refused as a malformed request (400)."""
    failures = []
    for door, response in responses.items():
        try:
            if malformed and response.status_code == 400:
                if door.startswith("rfc"):
                    assert_rfc_error(response, 400)
                else:
                    assert_result_error(response, 400)
            elif door.startswith("rfc"):
                assert_rfc_error(response, 401, "invalid_client")
            elif door.startswith("api"):
                assert_envelope(response, ("BAD_REQUEST", "UNAUTHORIZED") if malformed else "UNAUTHORIZED")
            elif door.startswith(("resolve", "consume")):
                assert_envelope(response, "BAD_REQUEST")
            else:
                assert_result_error(response, 404)
        except (AssertionError, ValueError, KeyError) as failure:
            failures.append(f"{door}: {response.status_code} {response.text[:200]} ({failure})")
    return failures


@pytest.mark.parametrize(
    "variant",
    [
        "leading-zero",
        "plus-sign",
        "leading-space",
        "trailing-space",
        "decimal-point",
        "underscore",
        "exponent",
        "arabic-indic-digits",
        "fullwidth-digits",
        "superscript-digits",
    ],
)
async def test_non_canonical_client_id_is_an_unknown_client_everywhere(
    client: httpx.AsyncClient,
    app: FastAPI,
    service: ServiceHandle,
    public_client: ClientHandle,
    pushed: str,
    variant: str,
) -> None:
    """Client ids match as canonical decimal strings: a variant never authenticates, never resolves or
    consumes the client's request, and leaves that request usable by its owner."""
    identifier = client_id_variants(public_client.id)[variant]
    failures = check_client_id_doors(await client_id_doors(client, service, public_client, identifier, pushed))
    assert not failures, "\n".join(failures)
    assert len(await stored_requests(app)) == 1
    owner = await consume(client, service, {"clientId": str(public_client.id), "requestUri": pushed})
    assert assert_envelope(owner, "OK")["clientId"] == public_client.id


@pytest.mark.parametrize("identifier", FOREIGN_CLIENT_IDS)
async def test_out_of_range_client_id_is_an_unknown_client_everywhere(
    client: httpx.AsyncClient, service: ServiceHandle, public_client: ClientHandle, pushed: str, identifier: str
) -> None:
    failures = check_client_id_doors(await client_id_doors(client, service, public_client, identifier, pushed))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "identifier",
    [
        pytest.param("\x00", id="nul"),
        pytest.param("a\x00b", id="nul-inside"),
        pytest.param("\x07", id="bel"),
        pytest.param("\x1b[31m", id="ansi-escape"),
        pytest.param("\u202e1", id="right-to-left-override"),
        pytest.param("\ufeff", id="bom"),
    ],
)
async def test_control_characters_in_client_ids(
    client: httpx.AsyncClient, service: ServiceHandle, public_client: ClientHandle, pushed: str, identifier: str
) -> None:
    """Control characters in a client id: an unknown client or a malformed request, never a 5xx (PostgreSQL
    refuses NUL in text values, so a NUL must not reach a query)."""
    responses = await client_id_doors(client, service, public_client, identifier, pushed)
    failures = check_client_id_doors(responses, malformed=True)
    assert not failures, "\n".join(failures)


# --- 6. NUL and lone surrogates in the JSON of the management and backend APIs ----------------------------

JSON_STRING_OPERATIONS = [
    # (method, path, token, body with a "{bad}" placeholder)
    ("POST", "/api/service/create", "admin", {"serviceName": "{bad}"}),
    ("POST", "/api/service/create", "admin", {"serviceName": "s", "description": "{bad}"}),
    ("POST", "/api/{sid}/service/update", "service", {"serviceName": "{bad}"}),
    ("POST", "/api/{sid}/service/update", "service", {"description": "{bad}"}),
    ("POST", "/api/{sid}/service/token/create", "admin", {"description": "{bad}"}),
    ("POST", "/api/{sid}/client/create", "service", {"clientName": "{bad}", "redirectUris": [REDIRECT_URI]}),
    ("POST", "/api/{sid}/client/create", "service", {"description": "{bad}", "redirectUris": [REDIRECT_URI]}),
    ("POST", "/api/{sid}/client/create", "service", {"clientIdAlias": "{bad}", "redirectUris": [REDIRECT_URI]}),
    (
        "POST",
        "/api/{sid}/client/create",
        "service",
        {"tokenAuthMethod": "TLS_CLIENT_AUTH", "tlsClientAuthSubjectDn": "CN={bad}", "redirectUris": [REDIRECT_URI]},
    ),
    ("POST", "/api/{sid}/client/update/{cid}", "service", {"clientName": "{bad}"}),
    ("POST", "/api/{sid}/pushed_auth_req", "service", {"parameters": "response_type=code", "clientId": "{bad}"}),
    ("POST", "/api/{sid}/pushed_auth_req", "service", {"parameters": "nonce={bad}"}),
    ("POST", "/api/{sid}/pushed_auth_req/resolve", "service", {"parameters": "client_id={bad}"}),
    ("POST", "/api/{sid}/pushed_auth_req/consume", "service", {"clientId": "{bad}", "requestUri": "urn:x"}),
    ("POST", "/api/{sid}/pushed_auth_req/consume", "service", {"clientId": "{cid}", "requestUri": "urn:{bad}"}),
]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("a\\u0000b", id="nul"),
        pytest.param("a\\ud800b", id="lone-surrogate"),
        pytest.param("a\\u0007\\u001bb", id="controls"),
    ],
)
async def test_bad_characters_in_json_strings(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, bad: str
) -> None:
    """Each JSON string field the APIs store or look up, carrying a NUL, a lone surrogate or control
    characters (as JSON escapes): a ResultError 400 or a processed answer, never a 5xx."""
    failures = []
    for method, template, token, fields in JSON_STRING_OPERATIONS:
        path = template.format(sid=service.id, cid=basic_client.id)
        body = json.dumps(fields).replace("{bad}", bad).replace("{cid}", str(basic_client.id))
        headers = (ADMIN if token == "admin" else service.bearer) | {"Content-Type": "application/json"}
        response = await client.request(method, path, content=body, headers=headers)
        try:
            assert_api_answer(response)
        except (AssertionError, ValueError) as failure:
            failures.append(f"{method} {template} {body[:80]}: {response.status_code} {failure}")
    assert not failures, "\n".join(failures)


# --- 7. hostile JSON (Hypothesis): NaN, 1e400, NUL, unpaired surrogates, deep nesting ---------------------

HOSTILE = settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1"}, private=True)


@pytest.fixture
async def rar_service(factory: Factory) -> ServiceHandle:
    return await factory.service(supportedAuthorizationDetailsTypes=["payment_initiation"])


@pytest.fixture
async def rar_client(factory: Factory, rar_service: ServiceHandle) -> ClientHandle:
    return await factory.client(rar_service, clientType="PUBLIC")


def jws(header: str, claims: str) -> str:
    """A compact JWS over hand-written header and claims JSON (which may hold what json.dumps would not
    write), signed with EC_KEY."""

    def segment(text: str) -> bytes:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=")

    signing_input = segment(header) + b"." + segment(claims)
    signature = JWSRegistry().get_alg("ES256").sign(signing_input, EC_KEY)
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


IN_A_DETAIL = hostile_json.map(lambda value: f'[{{"type":"payment_initiation","x":{value}}}]')
# Refused before the value is read as JSON: DEL and C1 controls (which JSON need not escape), and the
# deepest nesting once percent-encoded (over PAR_MAX_PARAMETER_BYTES: 413).
BEFORE_JSON = ("control characters", "exceeds")


@HOSTILE
@given(details=st.one_of(hostile_json, IN_A_DETAIL))
async def test_any_authorization_details_at_both_front_doors(
    client: httpx.AsyncClient, rar_service: ServiceHandle, rar_client: ClientHandle, details: str
) -> None:
    """RFC 9396 §5: "invalid_authorization_details", or a stored request; never a 5xx."""
    params = par_params(rar_client, authorization_details=details)
    response = await client.post(rar_service.par_path, data=params)
    assert_rfc_answer(response)
    body = response.json()
    if response.status_code != 201 and not any(words in body["error_description"] for words in BEFORE_JSON):
        assert body["error"] == "invalid_authorization_details", body
    answer = assert_envelope(
        await api_push(client, rar_service, {"parameters": urlencode(params)}),
        ("CREATED", "BAD_REQUEST", "PAYLOAD_TOO_LARGE"),
    )
    if answer["action"] == "BAD_REQUEST" and not any(words in answer["responseContent"] for words in BEFORE_JSON):
        assert relayed_error(answer) == "invalid_authorization_details"


@HOSTILE
@given(claims=object_with("iss"), header=st.one_of(st.just('{"alg":"ES256","kid":"ec-1"}'), object_with("alg")))
async def test_any_client_assertion_claims(
    client: httpx.AsyncClient, service: ServiceHandle, header: str, claims: str, factory: Factory
) -> None:
    """Client assertions (RFC 7523 §3) carrying hostile JSON: 401 invalid_client, never a 5xx. Without a
    client_id parameter, an assertion whose iss names no client is 400 "client_id is required"."""
    key_client = await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(EC_KEY))
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": jws(header, claims)}
    # A compact JWS needs no percent-encoding: its name=value pair is this long in the body.
    pair_bytes = len("client_assertion=") + len(form["client_assertion"])
    oversized = pair_bytes > Settings.model_fields["max_parameter_bytes"].default
    for params in ({**par_params(key_client), **form}, {**par_params(key_client, client_id=None), **form}):
        response = await client.post(service.par_path, data=params)
        expected = (401, "invalid_client") if "client_id" in params else response.status_code
        error = assert_rfc_error(response, response.status_code, response.json().get("error", "?"))["error"]
        if oversized:  # refused before it is read (PAR_MAX_PARAMETER_BYTES)
            assert (response.status_code, error) == (413, "invalid_request")
            continue
        assert (response.status_code, error) in (expected, (401, "invalid_client"), (400, "invalid_request"))
        if "client_id" in params:
            assert (response.status_code, error) == (401, "invalid_client")
        answer = assert_envelope(
            await api_push(client, service, {"parameters": urlencode(params)}), ("UNAUTHORIZED", "BAD_REQUEST")
        )
        assert relayed_error(answer) == error


@HOSTILE
@given(header=object_with("jwk"), claims=object_with("jti"))
async def test_any_dpop_proof(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, header: str, claims: str
) -> None:
    """DPoP proofs (RFC 9449 §4.3) carrying hostile JSON: 400 invalid_dpop_proof, never a 5xx."""
    headers = {**basic_client.basic(), "DPoP": jws(header, claims)}
    response = await client.post(service.par_path, data=par_params(basic_client), headers=headers)
    if response.status_code == 431:  # the deepest nesting is over PAR_MAX_HEADER_BYTES
        assert_rfc_error(response, 431, "invalid_request")
    else:
        assert_rfc_error(response, 400, "invalid_dpop_proof")


@HOSTILE
@given(jwks=object_with("keys"))
async def test_any_jwks_at_client_registration(client: httpx.AsyncClient, service: ServiceHandle, jwks: str) -> None:
    body = {"redirectUris": [REDIRECT_URI], "tokenAuthMethod": "PRIVATE_KEY_JWT", "jwks": jwks}
    response = await client.post(f"/api/{service.id}/client/create", json=body, headers=service.bearer)
    assert_api_answer(response)


@HOSTILE
@given(
    service_body=object_with("serviceName"),
    client_body=object_with("clientName"),
    push_body=object_with("parameters"),
)
async def test_any_json_body_at_the_api(
    client: httpx.AsyncClient, service: ServiceHandle, service_body: str, client_body: str, push_body: str
) -> None:
    """Management and backend bodies: processed, or a ResultError 400; never a 5xx."""
    json_type = {"Content-Type": "application/json"}
    for path, headers, body in (
        ("/api/service/create", ADMIN, service_body),
        (f"/api/{service.id}/client/create", service.bearer, client_body),
        (f"/api/{service.id}/pushed_auth_req", service.bearer, push_body),
        (f"/api/{service.id}/pushed_auth_req/resolve", service.bearer, push_body),
    ):
        response = await client.post(path, content=body, headers=headers | json_type)
        assert_api_answer(response)
