"""The RFC 9126 pushed authorization request endpoint: a thin adapter over ``app.core.par.push``
(``app.api.push_pipeline``), served directly (``@served_directly``: ``app.api.direct``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import IdPath, StateDep
from app.api.direct import served_directly
from app.api.errors import CHALLENGED, error_response, route_path
from app.api.openapi import CLIENT_AUTHENTICATION
from app.api.push_pipeline import Throttle, execute_push, peek_client_id, too_many_requests
from app.api.responses import NO_STORE_HEADERS, JsonAnswer
from app.api.schemas import OAUTH_ERRORS
from app.core.client_auth import BasicCredentials, parse_basic_authorization
from app.core.errors import InvalidClient, InvalidDpopProof, InvalidRequest
from app.core.par import PushOutcome, PushRequest
from app.core.params import refuse_credentials_in_query
from app.core.urls import PAR_PATH
from app.state import AppState

router = APIRouter(tags=["RFC 9126"], responses=OAUTH_ERRORS)
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_CONTENT_TYPE, _AUTHORIZATION, _DPOP = b"content-type", b"authorization", b"dpop"
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# What OpenAPI can say of the form: every parameter a string, given once; the client's credentials here
# for the methods that carry them in the body (the others: the operation's security requirement).
PUSH_FORM: dict[str, Any] = {
    "type": "object",
    "description": "The authorization request's parameters (RFC 9126 §2.1), each given once, with the client's "
    "credentials when it authenticates in the body.",
    "properties": {
        "client_id": {"type": "string", "description": "Required unless given as Basic credentials."},
        "client_secret": {"type": "string", "description": "client_secret_post (RFC 6749 §2.3.1)."},
        "client_assertion_type": {
            "type": "string",
            "enum": [_JWT_BEARER],
            "description": "private_key_jwt and client_secret_jwt (RFC 7523 §2.2), with client_assertion.",
        },
        "client_assertion": {
            "type": "string",
            "description": "A JWT (RFC 7523 §3) signed with the client's private key (private_key_jwt) or with "
            "its secret (client_secret_jwt).",
        },
        "response_type": {"type": "string"},
        "redirect_uri": {"type": "string"},
        "scope": {"type": "string"},
        "state": {"type": "string"},
        "code_challenge": {"type": "string", "description": "RFC 7636 §4.2."},
        "code_challenge_method": {"type": "string"},
        "request": {"type": "string", "description": "A request object (RFC 9101)."},
    },
    "additionalProperties": {"type": "string"},
}


def outcome_response(outcome: PushOutcome) -> JsonAnswer:
    headers = CHALLENGED if outcome.basic_challenge else NO_STORE_HEADERS
    if outcome.dpop_nonce is not None:
        # RFC 9449 §8: "DPoP-Nonce" carries the nonce the client must use (on errors and successes alike).
        headers = (*headers, (b"dpop-nonce", outcome.dpop_nonce.encode("latin-1")))
    return JsonAnswer(outcome.response_content, outcome.http_status, headers)


@router.post(
    PAR_PATH,
    status_code=201,
    summary="Push an authorization request (RFC 9126 §2)",
    response_description='`{"request_uri": "urn:ietf:params:oauth:request_uri:...", "expires_in": 60}`',
    openapi_extra={
        "requestBody": {"required": True, "content": {FORM_MEDIA_TYPE: {"schema": PUSH_FORM}}},
        "security": CLIENT_AUTHENTICATION,
    },
)
@served_directly
async def pushed_authorization_request(service_id: IdPath, request: Request, state: StateDep) -> JsonAnswer:
    """RFC 9126 §2.1: "The client sends the parameters that comprise an authorization request directly to
    the PAR endpoint ... using the application/x-www-form-urlencoded format"."""
    refuse_credentials_in_query(request.scope["query_string"].decode("latin-1"))
    certificate_header = _client_certificate_header(state)
    headers = _header_values(request, _CONTENT_TYPE, _AUTHORIZATION, _DPOP, *certificate_header)
    content_types = headers[_CONTENT_TYPE]
    media_type, _, media_params = (content_types[0] if content_types else "").partition(";")
    if media_type.strip().lower() != FORM_MEDIA_TYPE:
        raise InvalidRequest(f"the request body must be {FORM_MEDIA_TYPE}")
    charset = media_params.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        raise InvalidRequest("the request body must be encoded in UTF-8")
    body = await request.body()
    basic = _basic_credentials(headers[_AUTHORIZATION])
    claim = peek_client_id(body, basic, state.parameter_bounds)
    throttle = Throttle.of(state, "rfc9126", service_id, request, claim.client_id)
    refusal = await throttle.admit()
    if refusal is not None:
        return too_many_requests(route_path(request.scope), refusal)
    async with state.request_connection() as connection:
        service = await state.find_service(connection, service_id)
        if service is None:
            return error_response(route_path(request.scope), 404, f"service {service_id} does not exist")
        push_request = PushRequest(
            parameters=claim.parameters,
            basic=basic,
            dpop_proof=_dpop_proof(headers[_DPOP]),
            client_certificate=_client_certificate(headers, certificate_header),
        )
        outcome = await execute_push(state, connection, service, push_request)
    await throttle.record(outcome)
    return outcome_response(outcome)


def _header_values(request: Request, *names: bytes) -> dict[bytes, list[str]]:
    """The values of the headers ``names`` (lower case, as ASGI servers give names), in order and decoded
    as Starlette's ``Headers.getlist`` decodes them, read in one pass over the raw headers: each
    ``Headers`` lookup is a pass of its own, and a push needs three or four."""
    values: dict[bytes, list[str]] = {name: [] for name in names}
    for name, value in request.scope["headers"]:
        found = values.get(name)
        if found is not None:
            found.append(value.decode("latin-1"))
    return values


def _basic_credentials(authorization: list[str]) -> BasicCredentials | None:
    if not authorization:
        return None
    if len(authorization) > 1:
        raise InvalidClient("more than one Authorization header", used_authorization_header=True)
    return parse_basic_authorization(authorization[0])


def _client_certificate_header(state: AppState) -> tuple[bytes, ...]:
    """MTLS-06: the header carrying the certificate a TLS-terminating proxy verified (RFC 9440's
    Client-Cert by default); none is read unless the operator says the proxy sets it (and strips it from
    clients)."""
    if not state.settings.trust_client_certificate_header:
        return ()
    return (state.settings.client_certificate_header.lower().encode("latin-1"),)


def _client_certificate(headers: dict[bytes, list[str]], certificate_header: tuple[bytes, ...]) -> str | None:
    """The first value of the trusted certificate header, if there is one."""
    for name in certificate_header:
        if headers[name]:
            return headers[name][0]
    return None


def _dpop_proof(proofs: list[str]) -> str | None:
    """RFC 9449 §4.3: "There is not more than one DPoP HTTP request header field"."""
    if len(proofs) > 1:
        raise InvalidDpopProof("more than one DPoP header")
    return proofs[0] if proofs else None
