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
from typing import Any
from urllib.parse import urlsplit

from app.core import json_input
from app.core.client_auth import (
    CLIENT_AUTHENTICATION_PARAMETERS,
    CLIENT_ID_MISMATCH,
    BasicCredentials,
    ClientAuthContext,
    ClientAuthentication,
    authenticate_client,
    claimed_client_id,
    form_decoded,
)
from app.core.dpop import (
    DpopPolicy,
    UseDpopNonce,
    replay_expires_at,
    replay_key,
    validate_dpop_jkt,
    verify_dpop_proof,
)
from app.core.errors import (
    InvalidAuthorizationDetails,
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
from app.core.jar import merge_with_outer, request_object_parameters, verify_request_object
from app.core.model import ClientAuthMethod, ClientRecord, GrantType, PushedRequestRecord, ResponseType, ServiceRecord
from app.core.params import ParameterLimits, RequestParameters, parse_parameters
from app.core.pkce import PkcePolicy, validate_code_challenge
from app.core.ports import ClientDirectory, PushedRequestStore
from app.core.secrets import REQUEST_URI_PREFIX, new_request_reference, reference_hash

SUCCESS_RESULT_CODE = "A245001"
MAX_REDIRECT_URI_LENGTH = 2000
MTLS_AUTH_METHODS = frozenset({ClientAuthMethod.TLS_CLIENT_AUTH, ClientAuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH})
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# An http redirect URI on a loopback IP literal, split at its port: (scheme and host, port, the rest).
_LOOPBACK_IP_URI = re.compile(r"(http://(?:127\.0\.0\.1|\[::1\]))(?::([0-9]{1,5}))?([/?].*)?", re.DOTALL)
MAX_PORT = 65535


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
    htm: str | None = None  # DPoP: the method and URI the proof must name (default POST and the PAR endpoint)
    htu: str | None = None
    dpop_nonce_required: bool = False  # per call, at the backend API
    client_certificate: str | None = None  # PEM or RFC 9440, from the TLS terminator or the backend API
    # The backend API's clientId/clientSecret may arrive still form-encoded (``client_auth.form_decoded``).
    basic_may_be_form_encoded: bool = False


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
    dpop_nonce: str | None = None  # RFC 9449 §8: sent as the DPoP-Nonce header
    client_id: int | None = None  # for logs and metrics: known once the client is identified

    @property
    def error(self) -> str | None:
        return self.response_content.get("error")

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_ACTION[self.action]

    @classmethod
    def from_error(
        cls,
        error: OAuthError,
        client_auth_method: ClientAuthMethod | None = None,
        *,
        dpop_nonce: str | None = None,
        client_id: int | None = None,
    ) -> PushOutcome:
        return cls(
            action=_ACTION_BY_HTTP_STATUS.get(error.status_code, PushAction.BAD_REQUEST),
            result_code=error.result_code,
            result_message=error.result_message,
            response_content=error.to_body(),
            client_auth_method=client_auth_method,
            basic_challenge=isinstance(error, InvalidClient) and error.used_authorization_header,
            dpop_nonce=dpop_nonce,
            client_id=client_id,
        )


async def _identify_and_authenticate(
    request: PushRequest,
    params: RequestParameters,
    *,
    service: ServiceRecord,
    clients: ClientDirectory,
    auth: ClientAuthContext,
    now: datetime,
) -> tuple[ClientRecord, ClientAuthMethod]:
    """Find the client the request names and authenticate it.

    Basic credentials the backend API received that fail as they are, and would change when
    form-decoded, are tried once more decoded (RFC 6749 §2.3.1; ``client_auth.form_decoded``). Only
    secrets are checked here, so the second try spends no single-use value; the caller still sees one
    outcome, and the rate limits count it once. When the decoded client id does not even match the
    parameters' ``client_id``, the values were not form-encoded: the first failure is the answer."""
    try:
        return await _authenticate_basic_as(
            request.basic, request, params, service=service, clients=clients, auth=auth, now=now
        )
    except (InvalidClient, InvalidRequest) as error:
        if isinstance(error, InvalidRequest) and error.result_code != CLIENT_ID_MISMATCH:
            raise
        decoded = form_decoded(request.basic) if request.basic and request.basic_may_be_form_encoded else None
        if decoded is None:
            raise
        first_failure = error
    try:
        return await _authenticate_basic_as(
            decoded, request, params, service=service, clients=clients, auth=auth, now=now
        )
    except InvalidRequest as retry_failure:
        if retry_failure.result_code == CLIENT_ID_MISMATCH:
            raise first_failure from None
        raise


async def _authenticate_basic_as(
    basic: BasicCredentials | None,
    request: PushRequest,
    params: RequestParameters,
    *,
    service: ServiceRecord,
    clients: ClientDirectory,
    auth: ClientAuthContext,
    now: datetime,
) -> tuple[ClientRecord, ClientAuthMethod]:
    client = await clients.get_client(service.id, claimed_client_id(params, basic))
    method = await authenticate_client(
        client,
        ClientAuthentication(params=params, basic=basic, certificate=request.client_certificate),
        service=service,
        context=auth,
        now=now,
    )
    assert client is not None  # authenticate_client refuses unknown clients
    return client, method


async def push(
    request: PushRequest,
    *,
    service: ServiceRecord,
    clients: ClientDirectory,
    pushed_requests: PushedRequestStore,
    auth: ClientAuthContext,
    limits: ParameterLimits,
    now: datetime,
) -> PushOutcome:
    """Authenticate the client (read from ``clients``), validate its request and store it in
    ``pushed_requests`` (RFC 9126 §2.1 steps 1-3).

    Nothing is stored unless every check passes (single-use values excepted: a DPoP proof or client
    assertion is spent even when the request fails). OAuth errors become outcomes; anything else (a
    storage failure) propagates to the caller, which answers ``server_error``.
    """
    auth_method: ClientAuthMethod | None = None
    client_id: int | None = None
    nonce_required = service.dpop_nonce_required or request.dpop_nonce_required
    # RFC 9449 §8.2: a fresh nonce "MAY" accompany every answer; we send one whenever nonces are in use.
    fresh_nonce = auth.dpop_nonces_for(service).issue(now) if nonce_required else None
    try:
        params = parse_parameters(request.parameters, limits)
        proof_jkt = await _verify_dpop(request, service=service, auth=auth, nonce_required=nonce_required, now=now)
        client, auth_method = await _identify_and_authenticate(
            request, params, service=service, clients=clients, auth=auth, now=now
        )
        client_id = client.id
        signed = "request" in params
        if signed:
            claims = await verify_request_object(
                params.get("request") or "",
                client=client,
                client_keys=auth.client_keys,
                policy=auth.request_object_policy(service, client),
                now=now,
            )
            params = merge_with_outer(params, request_object_parameters(claims))
        stored = params.without(CLIENT_AUTHENTICATION_PARAMETERS)
        if proof_jkt is not None:
            pushed_jkt = stored.get("dpop_jkt")
            if pushed_jkt is not None and pushed_jkt != proof_jkt:
                # RFC 9449 §10.1: when both are present the thumbprints must match (DPOP-04).
                raise InvalidRequest("dpop_jkt does not match the key of the DPoP proof")
            # RFC 9449 §10.1: the server "MUST ... behave as if" the proof's thumbprint "had been sent" as dpop_jkt.
            stored = stored.with_value("dpop_jkt", proof_jkt)
        normalised = validate_authorization_request(stored, service=service, client=client, pushed=True, signed=signed)
        reference = new_request_reference()
        stored_request = await pushed_requests.add(
            PushedRequestRecord(
                reference_hash=reference_hash(reference),
                service_id=service.id,
                client_id=client.id,
                parameters=stored.encode(),
                request=normalised,
                created_at=now,
                expires_at=now + timedelta(seconds=service.pushed_auth_req_duration),
            )
        )
        if not stored_request:
            raise InvalidClient(
                "the client is not registered with this service",
                result_code="A247307",
                used_authorization_header=request.basic is not None,
            )
    except UseDpopNonce as error:
        return PushOutcome.from_error(error, auth_method, dpop_nonce=error.nonce, client_id=client_id)
    except OAuthError as error:
        return PushOutcome.from_error(error, auth_method, dpop_nonce=fresh_nonce, client_id=client_id)
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
        dpop_nonce=fresh_nonce,
        client_id=client.id,
    )


async def _verify_dpop(
    request: PushRequest, *, service: ServiceRecord, auth: ClientAuthContext, nonce_required: bool, now: datetime
) -> str | None:
    """RFC 9449 §10.1: "the DPoP header ... at the PAR endpoint"; returns the proof key's thumbprint."""
    if request.dpop_proof is None:
        return None
    htu = request.htu or service.pushed_auth_req_endpoint
    policy = DpopPolicy(clock_skew=auth.clock_skew, max_age=auth.dpop_max_age, nonce_required=nonce_required)
    proof = verify_dpop_proof(
        request.dpop_proof,
        htm=request.htm or "POST",
        htu=htu,
        policy=policy,
        nonces=auth.dpop_nonces_for(service),
        now=now,
    )
    # RFC 9449 §11.1: proofs are accepted once; remembered until their iat window has passed.
    if not await auth.replay_store.remember(replay_key(proof, htu), expires_at=replay_expires_at(proof, policy)):
        raise InvalidDpopProof("the DPoP proof was already used (jti replay)")
    return proof.jkt


def validate_authorization_request(
    params: RequestParameters, *, service: ServiceRecord, client: ClientRecord, pushed: bool, signed: bool = False
) -> dict[str, Any]:
    """Validate an authorization request and return its normalised form: pushed ones at the PAR endpoint
    (``pushed``; ``signed`` when they came in a verified request object), plain ones and re-checks of
    pushed ones at the authorization endpoint.

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
        raise RequestNotSupported("request objects are accepted at the pushed authorization request endpoint only")
    if not signed and (service.request_object_required or client.request_object_required):
        # RFC 9126 §2.3 / PAR-22: a request that is not a signed request object is rejected with invalid_request.
        raise InvalidRequest("this client must push a signed request object (request parameter)", result_code="A008309")
    dpop_jkt = params.get("dpop_jkt")
    if dpop_jkt is not None:
        validate_dpop_jkt(dpop_jkt)
    if client.dpop_required and dpop_jkt is None:
        raise InvalidRequest(
            "this client must bind its request to a DPoP key (DPoP proof or dpop_jkt)", result_code="A001301"
        )
    if service.fapi2 and dpop_jkt is None and client.token_auth_method not in MTLS_AUTH_METHODS:
        # FAPI 2.0 §5.3.2.1 (FAPI-12): sender-constrained: DPoP (here, dpop_jkt or a proof) or mutual TLS.
        raise InvalidRequest("FAPI 2.0 requires a sender-constrained request: a DPoP proof, dpop_jkt, or mutual TLS")

    response_type = _validate_response_type(params.get("response_type"), service=service, client=client)
    redirect_uri = validate_redirect_uri(
        params.get("redirect_uri"),
        client=client,
        allow_unregistered=pushed and service.allow_unregistered_pushed_redirect_uris,
    )
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
            # Public clients cannot authenticate, so PKCE is their only code binding.
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
        "authorizationDetails": _validate_authorization_details(
            params.get("authorization_details"), service=service, client=client
        ),
        "resources": _validate_resources(params.get_all("resource")) or None,
        "signedRequestObject": True if signed else None,
    }
    normalised.update({key: value for key, value in optional.items() if value is not None})
    return normalised


def _validate_authorization_details(
    value: str | None, *, service: ServiceRecord, client: ClientRecord
) -> list[dict[str, Any]] | None:
    """RFC 9396 §2: "The request parameter authorization_details contains, in JSON notation, an array of
    objects. Each JSON object contains the data to specify the authorization requirements for a certain
    type of resource." §2: "type: ... REQUIRED"; §5: unknown types are "invalid_authorization_details"."""
    if value is None:
        return None
    try:
        details = json_input.loads(value)
    except json_input.JsonInputError as error:
        raise InvalidAuthorizationDetails(f"authorization_details is not acceptable JSON: {error}") from None
    if not isinstance(details, list) or not details:
        raise InvalidAuthorizationDetails("authorization_details must be a non-empty JSON array")
    for index, detail in enumerate(details):
        if not isinstance(detail, dict) or not isinstance(detail.get("type"), str) or not detail["type"]:
            raise InvalidAuthorizationDetails(f"authorization_details[{index}] must be an object with a string type")
        if detail["type"] not in service.supported_authorization_details_types:
            raise InvalidAuthorizationDetails(
                f"authorization_details[{index}] has a type this service does not support"
            )
        if client.authorization_details_types and detail["type"] not in client.authorization_details_types:
            raise InvalidAuthorizationDetails(f"authorization_details[{index}] has a type this client may not use")
    return details


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


def validate_redirect_uri(value: str | None, *, client: ClientRecord, allow_unregistered: bool = False) -> str:
    """RFC 9126 §2.3: a missing or unregistered redirect_uri is answered with invalid_request.

    RFC 9126 §2.4: with ``allow_unregistered`` (a service policy), an authenticated client may push a
    redirect URI it did not register; §7.2: "only clients that have authentication credentials" may, and
    it is still syntax-checked: https, or http on a loopback address (FAPI-15, RFC 8252 §7.3).
    """
    if value is None:
        raise InvalidRequest("the redirect_uri parameter is required", result_code="A253302")
    parts = urlsplit(value)
    if not parts.scheme or parts.fragment or "#" in value:
        # RFC 6749 §3.1.2: "The endpoint URI MUST NOT include a fragment component" and is absolute.
        raise InvalidRequest(
            "the redirect_uri is malformed: it must be absolute and have no fragment", result_code="A253304"
        )
    # RFC 6749 §3.1.2.3 / RFC 9700 §2.1: exact string matching against the registered URIs.
    if value in client.redirect_uris or _matches_loopback_ip_uri(value, client.redirect_uris):
        return value
    if allow_unregistered and client.token_auth_method is not ClientAuthMethod.NONE:
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
        if (parts.scheme == "https" or loopback) and parts.hostname and len(value) <= MAX_REDIRECT_URI_LENGTH:
            return value
        raise InvalidRequest(
            "an unregistered redirect_uri must use https (or http on a loopback address)", result_code="A253304"
        )
    raise InvalidRequest("the redirect_uri is not registered for this client", result_code="A253303")


def _matches_loopback_ip_uri(value: str, registered: tuple[str, ...]) -> bool:
    """RFC 8252 §7.3: "The authorization server MUST allow any port to be specified at the time of the
    request for loopback IP redirect URIs, to accommodate clients that obtain an available ephemeral port
    from the operating system at the time of the request." (PAR-39) Only for ``http`` on the IP literals
    127.0.0.1 and [::1]; everything but the port still matches exactly. ``localhost`` is not given this
    (§8.3: its use "is NOT RECOMMENDED"), so it matches exactly, port included."""
    pushed = _LOOPBACK_IP_URI.fullmatch(value)
    if pushed is None or int(pushed.group(2) or 0) > MAX_PORT:
        return False
    for uri in registered:
        match = _LOOPBACK_IP_URI.fullmatch(uri)
        if match is not None and match.group(1, 3) == pushed.group(1, 3):
            return True
    return False


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
