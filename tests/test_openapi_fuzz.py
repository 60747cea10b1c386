"""Fuzzing with a bounded budget: schemathesis against every operation of the OpenAPI document, and
Hypothesis against the parsers that see raw client input first.

Schemathesis runs on SQLite only (its in-process ASGI client drives the app from its own event loop
thread, so the app here is built from a migrated SQLite copy rather than the ``app`` fixture). Every
operation gets at most ``FUZZ_EXAMPLES`` examples; the checks are: no 5xx, the response content type and
schema where the OpenAPI document has one for the status, and every error in the format README.md
documents for its path (RFC 6749 §5.2 JSON outside ``/api/``, Authlete's ``ResultError`` under it).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote_plus

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from app.core.client_auth import BasicCredentials, parse_basic_authorization
from app.core.errors import InvalidClient, OAuthError
from app.core.params import ParameterBounds, RequestParameters, parse_parameters
from app.main import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.factories import REDIRECT_URI
from tests.hostile_json import ANY_CHARACTER, hostile_json

FUZZ_EXAMPLES = 25
HOSTILE_FUZZ_EXAMPLES = 10
# schemathesis' in-process transport cancels the app when a response takes longer than this (10 s by
# default). A request cancelled while it holds the SQLite connection can leave that connection, and
# the write lock, held for good (app.db.engine.UncancelledCheck), and every later example fails with
# 503: one request slowed by a loaded machine must not fail the rest. This bound only catches a hang.
REQUEST_TIMEOUT_SECONDS = 120
RESULT_CODE = re.compile(r"A\d{6}")
LIMITS = ParameterBounds(max_parameters=100, max_parameter_bytes=16_384, max_total_bytes=65_536)
SMALL_LIMITS = ParameterBounds(max_parameters=4, max_parameter_bytes=40, max_total_bytes=120)


# --- schemathesis: every operation ---------------------------------------------------------------------

# The operation's type parameters say nothing the checks below use.
FuzzCase = Case[Any]


def asgi_app(app: FastAPI) -> asgi.ASGIApp:
    """schemathesis types an ASGI scope and message as dict, Starlette as MutableMapping; the app is the same."""
    return cast(asgi.ASGIApp, app)


class FuzzTarget:
    """The app under fuzzing with a service, its token, and two clients to aim path parameters at."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        with asgi.get_client(asgi_app(app)) as http:  # the event loop thread schemathesis itself will use
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            created = http.post("/api/service/create", json={"serviceName": "fuzz"}, headers=admin)
            assert created.status_code == 200, created.text
            self.service_id: int = created.json()["apiKey"]
            self.service_token: str = created.json()["serviceAccessToken"]
            self.admin = admin
            self.service = {"Authorization": f"Bearer {self.service_token}"}
            self.managed_client_id = self._client(http, {})["clientId"]
            pushing = self._client(http, {"tokenAuthMethod": "CLIENT_SECRET_BASIC"})
            raw = f"{quote_plus(str(pushing['clientId']))}:{quote_plus(pushing['clientSecret'])}"
            self.basic = {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}

    def _client(self, http: Any, fields: dict[str, Any]) -> dict[str, Any]:
        body = {"clientName": "fuzz", "redirectUris": [REDIRECT_URI], **fields}
        response = http.post(f"/api/{self.service_id}/client/create", json=body, headers=self.service)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def headers_for(self, case: FuzzCase) -> dict[str, str]:
        """Admin-only operations get the admin token, other /api operations the service token, and the
        RFC 9126 endpoint the Basic credentials of a registered client."""
        path = case.operation.path
        if path.startswith("/api/"):
            admin_only = path in ("/api/service/create", "/api/service/get/list") or any(
                part in path for part in ("/service/delete", "/service/token/")
            )
            return self.admin if admin_only else self.service
        return self.basic if path.endswith("/par") else {}

    def aim(self, case: FuzzCase) -> None:
        """Point generated ids at the real service and client, so operations reach past the 404s; ids that
        are not integers (negative mode) stay as generated, and so do client ids of odd length. Deletions
        keep random ids: deleting the service or client would leave the other operations nothing to reach."""
        parameters = case.path_parameters or {}
        deleting = case.method.upper() == "DELETE"
        if isinstance(parameters.get("service_id"), int) and not case.operation.path.endswith("/service/delete"):
            parameters["service_id"] = self.service_id
        client_id = parameters.get("client_id")
        if isinstance(client_id, str) and not deleting and len(client_id) % 2 == 0:
            parameters["client_id"] = str(self.managed_client_id)


# The app is built at import (building does not touch its database) because schemathesis needs the
# OpenAPI document to collect one test per operation; its database is made by the fuzz_target fixture.
# (``schemathesis.pytest.from_fixture`` would defer all of it, but 4.32 reads ``Node._nodeid``, which
# pytest 9.2 no longer has.)
FUZZ_DATABASE = Path(tempfile.gettempdir()) / f"par-server-fuzz-{os.getpid()}" / "par.db"
FUZZ_APP = create_app(make_settings(f"sqlite+aiosqlite:///{FUZZ_DATABASE}"))


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document. FastAPI warns while building it (a duplicate operationId, see
    test_operation_ids_are_unique) and pytest turns warnings into errors, which would make /openapi.json
    a 500 under test; FastAPI caches the document, so it is built once here with that warning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
        return app.openapi()


schema = schemathesis.openapi.from_dict(openapi_document(FUZZ_APP))
schema.app = FUZZ_APP  # what from_asgi does: calls go to the app in-process


@pytest.fixture(scope="module")
def fuzz_target(sqlite_template: Path) -> Iterator[FuzzTarget]:
    FUZZ_DATABASE.parent.mkdir(exist_ok=True)
    shutil.copyfile(sqlite_template, FUZZ_DATABASE)
    try:
        yield FuzzTarget(FUZZ_APP)
    finally:
        asgi.shutdown_lifespans()  # the app's shutdown (engine disposal), in schemathesis' loop thread
        shutil.rmtree(FUZZ_DATABASE.parent, ignore_errors=True)


def error_in_documented_format(ctx: CheckContext, response: Response, case: FuzzCase) -> bool | None:
    """README "API overview": RFC 6749 §5.2 JSON outside /api/, ResultError (or an action envelope) under
    it; both application/json with Cache-Control: no-store."""
    del ctx
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    assert response.headers.get("cache-control") == ["no-store"], response.headers
    body = response.json()
    if case.operation.path.startswith("/api/"):
        assert set(body) == {"resultCode", "resultMessage"}, body
        assert RESULT_CODE.fullmatch(body["resultCode"]), body
        assert body["resultMessage"].startswith(f"[{body['resultCode']}] "), body
    else:
        assert set(body) == {"error", "error_description"}, body
        assert isinstance(body["error"], str) and isinstance(body["error_description"], str), body
    return None


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation(case: FuzzCase, fuzz_target: FuzzTarget) -> None:
    """No 5xx, documented responses conform, and every error is in its path's documented format.

    ``positive_data_acceptance`` is not checked: OpenAPI cannot say that the form parameters of the RFC
    endpoint are free-form yet refused when repeated, or that a body's fields depend on each other.
    ``status_code_conformance`` is not checked either: the operations document only their 2xx (and a
    422 the app never sends, see test_openapi_documents_no_422), so every 4xx would be reported."""
    fuzz_target.aim(case)
    case.call_and_validate(
        headers=fuzz_target.headers_for(case),
        timeout=REQUEST_TIMEOUT_SECONDS,
        checks=[
            not_a_server_error,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
            error_in_documented_format,
        ],
    )


def assert_documented_error(path: str, response: Any) -> None:
    """``error_in_documented_format`` for a response of the raw ASGI client."""
    assert response.status_code < 500, response.text
    if response.status_code < 400:
        return
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert response.headers["cache-control"] == "no-store", response.headers
    body = response.json()
    if path.startswith("/api/"):
        assert set(body) == {"resultCode", "resultMessage"}, body
        assert RESULT_CODE.fullmatch(body["resultCode"]), body
    else:
        assert set(body) == {"error", "error_description"}, body


@schema.parametrize()
@schema.given(hostile=hostile_json)
@settings(max_examples=HOSTILE_FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_json_body_with_hostile_json(case: FuzzCase, hostile: str, fuzz_target: FuzzTarget) -> None:
    """Each operation with a JSON body, the generated body with one member (or the whole body) replaced
    by JSON text json.dumps would not write (tests/hostile_json.py: NaN, 1e400, NUL, unpaired
    surrogates, deep nesting): never a 5xx, errors in the path's documented format."""
    if case.media_type != "application/json":
        return
    fuzz_target.aim(case)
    body = case.body if isinstance(case.body, dict) else {}
    members = [f"{json.dumps(name)}:{json.dumps(value)}" for name, value in body.items()][1:]
    first = next(iter(body), "x")
    text = "{" + ",".join([f"{json.dumps(first)}:{hostile}", *members]) + "}" if body else hostile
    headers = {**fuzz_target.headers_for(case), "Content-Type": "application/json"}
    with asgi.get_client(asgi_app(fuzz_target.app)) as http:
        response = http.request(
            case.method,
            case.formatted_path,
            data=text.encode(),
            headers=headers,
            params=case.query or None,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    assert_documented_error(case.operation.path, response)


def test_openapi_documents_no_422() -> None:
    """Validation errors are answered 400 (app/api/errors.py), so the document must not promise 422
    HTTPValidationError bodies the app never sends."""
    documented = [
        f"{method.upper()} {path}"
        for path, operations in schema.raw_schema["paths"].items()
        for method, operation in operations.items()
        if "422" in operation.get("responses", {})
    ]
    assert not documented, f"422 documented but never sent by: {documented}"


def test_operation_ids_are_unique() -> None:
    """OpenAPI 3.1 §4.8.10: operationId "MUST be unique among all operations described in the API"."""
    ids = [
        operation.get("operationId")
        for operations in schema.raw_schema["paths"].values()
        for operation in operations.values()
    ]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


# --- Hypothesis: the parsers of raw client input -----------------------------------------------------

# Characters that matter to the form grammar, plus control characters, non-ASCII and lone surrogates.
FORM_ALPHABET = st.one_of(
    st.sampled_from(
        list("&=%+;#?/ azAZ09") + ["%2", "%zz", "%00", "%FF", "%C3%A9", "%ED%A0%80", "\x00", "\x7f", "\ud800", "\udfff"]
    ),
    st.characters(exclude_categories=()),
)
FORM_TEXT = st.lists(FORM_ALPHABET, max_size=60).map("".join)
FUZZ = settings(max_examples=300, deadline=None, database=None)


def check_parse(raw: str | bytes, limits: ParameterBounds = LIMITS) -> RequestParameters | None:
    """parse_parameters answers RequestParameters or raises an OAuthError; nothing else escapes."""
    try:
        result = parse_parameters(raw, limits)
    except OAuthError as error:
        assert error.status_code in (400, 413)
        return None
    assert isinstance(result, RequestParameters)
    return result


@FUZZ
@given(st.binary(max_size=400))
def test_parse_parameters_arbitrary_bytes(raw: bytes) -> None:
    check_parse(raw)
    check_parse(raw, SMALL_LIMITS)


@FUZZ
@given(FORM_TEXT)
def test_parse_parameters_form_like_text(raw: str) -> None:
    check_parse(raw)
    check_parse(raw, SMALL_LIMITS)
    if not any("\ud800" <= character <= "\udfff" for character in raw):
        check_parse(raw.encode("utf-8"))


@FUZZ
@given(st.lists(st.tuples(FORM_TEXT, FORM_TEXT), max_size=8))
def test_accepted_parameters_round_trip(pairs: list[tuple[str, str]]) -> None:
    """What is accepted is text without control characters and survives its own encoding unchanged (the
    stored form of a pushed request is ``RequestParameters.encode()``)."""
    raw = "&".join(f"{name}={value}" for name, value in pairs)
    result = check_parse(raw)
    if result is None:
        return
    for name, value in result.pairs:
        assert name
        for text in (name, value):
            text.encode("utf-8")  # no lone surrogates: every accepted parameter is storable UTF-8 text
            assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
    assert check_parse(result.encode()) == result


@FUZZ
@given(st.text(max_size=120))
def test_parse_basic_authorization_arbitrary_text(header: str) -> None:
    try:
        credentials = parse_basic_authorization(header)
    except InvalidClient as error:
        assert error.used_authorization_header
        return
    assert isinstance(credentials, BasicCredentials) and credentials.client_id


@FUZZ
@given(st.sampled_from(["Basic ", "basic ", "BASIC  ", " Basic "]), st.binary(max_size=80))
def test_parse_basic_authorization_arbitrary_base64(scheme: str, payload: bytes) -> None:
    try:
        credentials = parse_basic_authorization(scheme + base64.b64encode(payload).decode())
    except InvalidClient:
        return
    assert isinstance(credentials, BasicCredentials)


@FUZZ
@given(st.text(min_size=1, max_size=40), st.text(max_size=40))
def test_parse_basic_authorization_round_trip(client_id: str, secret: str) -> None:
    """RFC 6749 §2.3.1: form-encode id and secret, join with ':', base64; parsing gives them back."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    credentials = parse_basic_authorization("Basic " + base64.b64encode(raw.encode()).decode())
    assert credentials == BasicCredentials(client_id=client_id, client_secret=secret)


@FUZZ
@given(st.sampled_from(["Basic ", "basic ", " Basic  "]), st.text(ANY_CHARACTER, max_size=60))
def test_parse_basic_authorization_any_characters(scheme: str, token: str) -> None:
    """Non-ASCII, control characters, surrogates after the scheme: invalid_client, never a ValueError."""
    try:
        credentials = parse_basic_authorization(scheme + token)
    except InvalidClient as error:
        assert error.used_authorization_header
        return
    assert isinstance(credentials, BasicCredentials)
