"""Pushed Authorization Requests (RFC 9126 §2): one push operation behind both front doors.

The RFC 9126 endpoint and the Authlete-compatible backend API both call :func:`push`, which answers
with a :class:`PushOutcome` in Authlete's terms (an ``action`` and the ``responseContent`` to relay);
the RFC endpoint maps the action to its HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from app.core import result_codes
from app.core.authorization_request import validate_authorization_request
from app.core.client_auth import (
    CLIENT_AUTHENTICATION_PARAMETERS,
    BasicCredentials,
    ClientAuthentication,
    PushContext,
    authenticate_client,
    claimed_client_id,
    form_decoded,
)
from app.core.dpop import DpopPolicy, UseDpopNonce, replay_expires_at, replay_key, verify_dpop_proof
from app.core.errors import InvalidClient, InvalidDpopProof, InvalidRequest, OAuthError
from app.core.jar import merge_with_outer, request_object_parameters, verify_request_object
from app.core.model import ClientAuthMethod, ClientRecord, PushedRequestRecord, ServiceRecord
from app.core.params import ParameterBounds, RequestParameters, parse_parameters
from app.core.ports import ClientDirectory, PushedRequestStore
from app.core.secrets import REQUEST_URI_PREFIX, new_request_reference, reference_hash


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

    parameters: str | bytes | RequestParameters  # as received, or already parsed (``parse_parameters``)
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
    auth: PushContext,
    now: datetime,
) -> tuple[ClientRecord, ClientAuthMethod]:
    """Find the client the request names and authenticate it.

    Basic credentials the backend API received that fail as they are, and would change when
    form-decoded, are tried once more decoded (RFC 6749 §2.3.1; ``client_auth.form_decoded``). Only
    secrets are checked here, so the second try spends no single-use value; the caller still sees one
    outcome, and the rate limits count it once. When the decoded client id does not even match the
    parameters' ``client_id``, the values were not form-encoded: the first failure is the answer."""

    async def authenticate_as(basic: BasicCredentials | None) -> tuple[ClientRecord, ClientAuthMethod]:
        client = await clients.get_client(service.id, claimed_client_id(params, basic))
        credentials = ClientAuthentication(params=params, basic=basic, certificate=request.client_certificate)
        method = await authenticate_client(client, credentials, service=service, context=auth, now=now)
        assert client is not None  # authenticate_client refuses unknown clients
        return client, method

    try:
        return await authenticate_as(request.basic)
    except (InvalidClient, InvalidRequest) as error:
        if isinstance(error, InvalidRequest) and error.result_code != result_codes.CLIENT_ID_MISMATCH:
            raise
        decoded = form_decoded(request.basic) if request.basic and request.basic_may_be_form_encoded else None
        if decoded is None:
            raise
        first_failure = error
    try:
        return await authenticate_as(decoded)
    except InvalidRequest as retry_failure:
        if retry_failure.result_code == result_codes.CLIENT_ID_MISMATCH:
            raise first_failure from None
        raise


async def push(
    request: PushRequest,
    *,
    service: ServiceRecord,
    clients: ClientDirectory,
    pushed_requests: PushedRequestStore,
    auth: PushContext,
    limits: ParameterBounds,
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
    fresh_nonce = auth.policy.dpop_nonces_for(service).issue(now) if nonce_required else None
    try:
        params = (
            request.parameters
            if isinstance(request.parameters, RequestParameters)
            else parse_parameters(request.parameters, limits)
        )
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
                policy=auth.policy.request_object_policy(service, client),
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
                result_code=result_codes.CLIENT_NOT_REGISTERED,
                used_authorization_header=request.basic is not None,
            )
    except UseDpopNonce as error:
        return PushOutcome.from_error(error, auth_method, dpop_nonce=error.nonce, client_id=client_id)
    except OAuthError as error:
        return PushOutcome.from_error(error, auth_method, dpop_nonce=fresh_nonce, client_id=client_id)
    request_uri = REQUEST_URI_PREFIX + reference
    return PushOutcome(
        action=PushAction.CREATED,
        result_code=result_codes.PUSH_REGISTERED,
        result_message=(
            f"[{result_codes.PUSH_REGISTERED}] Successfully registered a request object for client ({client.id}), "
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
    request: PushRequest, *, service: ServiceRecord, auth: PushContext, nonce_required: bool, now: datetime
) -> str | None:
    """RFC 9449 §10.1: "the DPoP header ... at the PAR endpoint"; returns the proof key's thumbprint."""
    if request.dpop_proof is None:
        return None
    htu = request.htu or service.pushed_auth_req_endpoint
    policy = DpopPolicy(
        clock_skew=auth.policy.clock_skew, max_age=auth.policy.dpop_max_age, nonce_required=nonce_required
    )
    proof = verify_dpop_proof(
        request.dpop_proof,
        htm=request.htm or "POST",
        htu=htu,
        policy=policy,
        nonces=auth.policy.dpop_nonces_for(service),
        now=now,
    )
    # RFC 9449 §11.1: proofs are accepted once; remembered until their iat window has passed.
    if not await auth.replay_store.remember(replay_key(proof, htu), expires_at=replay_expires_at(proof, policy)):
        raise InvalidDpopProof("the DPoP proof was already used (jti replay)")
    return proof.jkt
