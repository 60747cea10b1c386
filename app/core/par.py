"""Pushed Authorization Requests (RFC 9126 §2): one push operation behind both front doors.

The RFC 9126 endpoint and the Authlete-compatible backend API both call :func:`push`, which answers
with a :class:`PushOutcome` in Authlete's terms (an ``action`` and the ``responseContent`` to relay);
the RFC endpoint maps the action to its HTTP status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from app.core.client_auth import (
    CLIENT_AUTHENTICATION_PARAMETERS,
    BasicCredentials,
    ClientAuthContext,
    ClientAuthentication,
    authenticate_client,
    claimed_client_id,
)
from app.core.errors import (
    InvalidClient,
    InvalidDpopProof,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    RequestNotSupported,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from app.core.model import ClientAuthMethod, ClientRecord, GrantType, PushedRequestRecord, ResponseType, ServiceRecord
from app.core.params import ParameterLimits, RequestParameters, parse_parameters
from app.core.pkce import PkcePolicy, validate_code_challenge
from app.core.secrets import REQUEST_URI_PREFIX, new_request_reference, reference_hash

SUCCESS_RESULT_CODE = "A245001"
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 9449 §10: dpop_jkt is a base64url SHA-256 JWK thumbprint (RFC 7638): 43 characters.
_JWK_THUMBPRINT = re.compile(r"[A-Za-z0-9\-_]{43}")


class PushAction(StrEnum):
    """What the caller should do with ``responseContent`` (Authlete ``PushedAuthReqResponse.Action``)."""

    CREATED = "CREATED"
    BAD_REQUEST = "BAD_REQUEST"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


HTTP_STATUS_BY_ACTION = {
    PushAction.CREATED: 201,
    PushAction.BAD_REQUEST: 400,
    PushAction.UNAUTHORIZED: 401,
    PushAction.FORBIDDEN: 403,
    PushAction.PAYLOAD_TOO_LARGE: 413,
    PushAction.INTERNAL_SERVER_ERROR: 500,
}
_ACTION_BY_HTTP_STATUS = {status: action for action, status in HTTP_STATUS_BY_ACTION.items()}


@dataclass(frozen=True, slots=True)
class PushRequest:
    """A pushed authorization request as either front door received it."""

    parameters: str | bytes
    basic: BasicCredentials | None = None
    dpop_proof: str | None = None
    client_certificate: str | None = None  # PEM or RFC 9440, from the TLS terminator or the backend API


@dataclass(frozen=True, slots=True)
class PushOutcome:
    action: PushAction
    result_code: str
    result_message: str
    response_content: dict[str, Any]
    request_uri: str | None = None
    client_auth_method: ClientAuthMethod | None = None
    # RFC 6749 §5.2: 401 plus WWW-Authenticate when the client used the Authorization header.
    basic_challenge: bool = False

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_ACTION[self.action]

    @classmethod
    def from_error(cls, error: OAuthError, client_auth_method: ClientAuthMethod | None = None) -> PushOutcome:
        return cls(
            action=_ACTION_BY_HTTP_STATUS.get(error.status_code, PushAction.BAD_REQUEST),
            result_code=error.result_code,
            result_message=error.result_message,
            response_content=error.to_body(),
            client_auth_method=client_auth_method,
            basic_challenge=isinstance(error, InvalidClient) and error.used_authorization_header,
        )


class PushStore(Protocol):
    """What pushing needs from storage; ``app.db`` implements it."""

    async def get_client(self, service_id: int, client_identifier: str) -> ClientRecord | None: ...

    async def add_pushed_request(self, record: PushedRequestRecord) -> None: ...


async def push(
    request: PushRequest,
    *,
    service: ServiceRecord,
    store: PushStore,
    auth: ClientAuthContext,
    limits: ParameterLimits,
    now: datetime,
) -> PushOutcome:
    """Authenticate the client, validate its request and store it (RFC 9126 §2.1 steps 1-3).

    Nothing is stored unless every check passes. OAuth errors become outcomes; anything else (a
    storage failure) propagates to the caller, which answers ``server_error``.
    """
    auth_method: ClientAuthMethod | None = None
    try:
        params = parse_parameters(request.parameters, limits)
        client_identifier = claimed_client_id(params, request.basic)
        client = await store.get_client(service.id, client_identifier)
        auth_method = await authenticate_client(
            client,
            ClientAuthentication(params=params, basic=request.basic, certificate=request.client_certificate),
            service=service,
            context=auth,
            now=now,
        )
        assert client is not None  # authenticate_client refuses unknown clients
        normalised = validate_authorization_request(
            params, service=service, client=client, dpop_proof=request.dpop_proof
        )
        reference = new_request_reference()
        await store.add_pushed_request(
            PushedRequestRecord(
                reference_hash=reference_hash(reference),
                service_id=service.id,
                client_id=client.id,
                parameters=params.without(CLIENT_AUTHENTICATION_PARAMETERS).encode(),
                request=normalised,
                created_at=now,
                expires_at=now + timedelta(seconds=service.pushed_auth_req_duration),
            )
        )
    except OAuthError as error:
        return PushOutcome.from_error(error, auth_method)
    request_uri = REQUEST_URI_PREFIX + reference
    return PushOutcome(
        action=PushAction.CREATED,
        result_code=SUCCESS_RESULT_CODE,
        result_message=(
            f"[{SUCCESS_RESULT_CODE}] Successfully registered a request object for client ({client.id}), "
            f"URI is {request_uri}."
        ),
        # RFC 9126 §2.2: "expires_in: A JSON number that represents the lifetime of the request URI in seconds"
        response_content={"expires_in": service.pushed_auth_req_duration, "request_uri": request_uri},
        request_uri=request_uri,
        client_auth_method=auth_method,
    )


def validate_authorization_request(
    params: RequestParameters, *, service: ServiceRecord, client: ClientRecord, dpop_proof: str | None
) -> dict[str, Any]:
    """Validate an authorization request and return its normalised form: pushed ones at the PAR endpoint,
    plain ones (and re-checks of pushed ones) at the authorization endpoint.

    RFC 9126 §2.1: "The authorization server MUST validate the pushed request as it would an
    authorization request sent to the authorization endpoint."
    """
    if "request_uri" in params:
        # RFC 9126 §2.1: "request_uri ... MUST NOT be provided in this case."
        raise InvalidRequest(
            "the request_uri parameter is not allowed at the pushed authorization request endpoint",
            result_code="A248301",
        )
    if "request" in params:
        raise RequestNotSupported("request objects (RFC 9101) are not supported by this server yet")
    if client.request_object_required:
        # RFC 9126 §2.3: a request that is not a signed request object "MUST" be rejected with invalid_request.
        raise InvalidRequest("this client must push a signed request object (request parameter)", result_code="A008309")
    if dpop_proof is not None:
        raise InvalidDpopProof("DPoP proofs are not supported by this server yet")
    dpop_jkt = params.get("dpop_jkt")
    if dpop_jkt is not None and not _JWK_THUMBPRINT.fullmatch(dpop_jkt):
        raise InvalidRequest("dpop_jkt must be a base64url SHA-256 JWK thumbprint (RFC 7638)")
    if client.dpop_required and dpop_jkt is None:
        raise InvalidRequest("this client must bind its request to a DPoP key (dpop_jkt)", result_code="A001301")

    response_type = _validate_response_type(params.get("response_type"), service=service, client=client)
    redirect_uri = validate_redirect_uri(params.get("redirect_uri"), client=client)
    scopes = _validate_scopes(params.get("scope"), service=service, client=client)
    state = params.get("state")
    if state is not None and len(state) > service.max_state_length:
        raise InvalidRequest(f"state exceeds {service.max_state_length} characters")
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > service.max_nonce_length:
        raise InvalidRequest(f"nonce exceeds {service.max_nonce_length} characters")
    if "openid" in scopes and "id_token" in response_type.words and nonce is None:
        # OpenID Connect Core §3.2.2.1: nonce is REQUIRED for flows returning an ID token from the
        # authorization endpoint.
        raise InvalidRequest("nonce is required when response_type includes id_token")
    pkce = validate_code_challenge(
        params.get("code_challenge"),
        params.get("code_challenge_method"),
        PkcePolicy(
            # The rule: public clients cannot authenticate, so PKCE is their only code binding.
            required=service.pkce_required or client.pkce_required or client.token_auth_method is ClientAuthMethod.NONE,
            s256_required=service.pkce_s256_required or client.pkce_s256_required,
        ),
    )
    normalised: dict[str, Any] = {
        "responseType": response_type.value,
        "redirectUri": redirect_uri,
        "scopes": scopes,
    }
    optional = {
        "state": state,
        "nonce": nonce,
        "codeChallenge": pkce.challenge if pkce else None,
        "codeChallengeMethod": pkce.method if pkce else None,
        "dpopJkt": dpop_jkt,
    }
    normalised.update({key: value for key, value in optional.items() if value is not None})
    resources = _validate_resources(params.get_all("resource"))
    if resources:
        normalised["resources"] = resources
    return normalised


def _validate_resources(values: list[str]) -> list[str]:
    """RFC 8707 §2: "Its value MUST be an absolute URI ... and MUST NOT include a fragment component"."""
    for value in values:
        parts = urlsplit(value)
        if not parts.scheme or parts.fragment or "#" in value:
            raise InvalidTarget("each resource must be an absolute URI without a fragment (RFC 8707)")
    return list(dict.fromkeys(values))


def _validate_response_type(value: str | None, *, service: ServiceRecord, client: ClientRecord) -> ResponseType:
    if value is None:
        raise InvalidRequest("the response_type parameter is required")
    response_type = ResponseType.parse(value)
    if response_type is None or response_type not in service.supported_response_types:
        raise UnsupportedResponseType("the response_type is not supported by this service")
    if response_type not in client.response_types:
        raise UnauthorizedClient("the client is not registered for this response_type")
    needs = set()
    if "code" in response_type.words:
        needs.add(GrantType.AUTHORIZATION_CODE)
    if response_type.words & {"token", "id_token"}:
        needs.add(GrantType.IMPLICIT)
    if not needs <= client.grant_types:
        raise UnauthorizedClient("the client's grant types do not allow this response_type")
    return response_type


def validate_redirect_uri(value: str | None, *, client: ClientRecord) -> str:
    """RFC 9126 §2.3: a missing or unregistered redirect_uri is answered with invalid_request."""
    if value is None:
        raise InvalidRequest("the redirect_uri parameter is required", result_code="A253302")
    parts = urlsplit(value)
    if not parts.scheme or parts.fragment or "#" in value:
        # RFC 6749 §3.1.2: "The endpoint URI MUST NOT include a fragment component" and is absolute.
        raise InvalidRequest(
            "the redirect_uri is malformed: it must be absolute and have no fragment", result_code="A253304"
        )
    # RFC 6749 §3.1.2.3 / RFC 9700 §2.1: exact string matching against the registered URIs.
    if value not in client.redirect_uris:
        raise InvalidRequest("the redirect_uri is not registered for this client", result_code="A253303")
    return value


def _validate_scopes(value: str | None, *, service: ServiceRecord, client: ClientRecord) -> list[str]:
    """RFC 6749 §3.3: scope is a space-delimited list of case-sensitive scope tokens."""
    if value is None:
        return []
    scopes = value.split(" ")
    if any(not _SCOPE_TOKEN.fullmatch(scope) for scope in scopes):
        raise InvalidScope("the scope parameter is malformed (RFC 6749 §3.3)")
    unique = list(dict.fromkeys(scopes))
    unsupported = [scope for scope in unique if scope not in service.scope_names]
    if unsupported:
        raise InvalidScope(f"scope '{unsupported[0]}' is not supported by this service")
    if client.requestable_scopes is not None:
        forbidden = [scope for scope in unique if scope not in client.requestable_scopes]
        if forbidden:
            raise InvalidScope(f"the client may not request scope '{forbidden[0]}'")
    return unique
