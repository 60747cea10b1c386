"""The Authlete-compatible backend API: ``POST /api/{serviceId}/pushed_auth_req`` (served directly,
``@served_directly``: ``app.api.direct``), the same push as at the RFC 9126 endpoint (``app.api.push_pipeline``).

An authorization server forwards its client's PAR request here and relays ``responseContent`` with
the HTTP status that ``action`` names, as with Authlete's own API (``app.core.par.HTTP_STATUS_BY_ACTION``:
CREATED is 201, BAD_REQUEST 400, UNAUTHORIZED 401, and so on).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from app.api.backend_call import backend_call, parameters_required
from app.api.deps import IdPath, StateDep, bearer_token
from app.api.direct import served_directly
from app.api.errors import route_path
from app.api.openapi import SERVICE_OR_ADMIN
from app.api.push_pipeline import Throttle, execute_push, peek_client_id, too_many_requests
from app.api.responses import JsonAnswer
from app.api.schemas import API_ERRORS, PushedAuthReqIn, PushedAuthReqOut, request_body, without_none
from app.core import result_codes
from app.core.client_auth import BasicCredentials, form_decoded
from app.core.errors import ApiBadRequest
from app.core.par import PushRequest
from app.state import AppState

# Authlete's responseContent: the JSON to relay, ASCII-escaped as json.dumps writes it; one encoder for every call.
_response_content = json.JSONEncoder(separators=(",", ":")).encode
router = APIRouter(prefix="/api/{service_id}", tags=["Authlete-compatible backend API"], responses=API_ERRORS)


@router.post(
    "/pushed_auth_req",
    response_model=PushedAuthReqOut,
    response_model_exclude_none=True,
    summary="Process a pushed authorization request on behalf of an authorization server",
    openapi_extra={
        **request_body(PushedAuthReqIn, "application/json", "application/x-www-form-urlencoded"),
        "security": SERVICE_OR_ADMIN,
    },
)
@served_directly
async def pushed_auth_req(service_id: IdPath, request: Request, state: StateDep) -> JsonAnswer:
    async with backend_call(
        request,
        state,
        service_id,
        PushedAuthReqIn,
        require=parameters_required(result_codes.PUSH_PARAMETERS_MISSING),
        allow_form=True,
    ) as call:
        body = call.body
        if body.oauth_client_attestation is not None or body.oauth_client_attestation_pop is not None:
            # Refused rather than ignored: a client relying on attestation must not be let through on less.
            raise ApiBadRequest(
                "attestation-based client authentication (oauthClientAttestation, oauthClientAttestationPop) "
                "is not supported"
            )
        basic = BasicCredentials(body.client_id, body.client_secret or "") if body.client_id is not None else None
        # One budget for every encoding of a client id: the decoded retry is no way around it.
        claim = peek_client_id(call.required, (basic and form_decoded(basic)) or basic, state.parameter_bounds)
        throttle = Throttle.of(
            state,
            "backend",
            service_id,
            request,
            claim.client_id,
            relayed=True,
            token=_token_digest(request, state) if state.settings.rate_limit_per_service_token else None,
        )
        await call.connection.release()  # not held while the limiter may read counters it has not seen
        refusal = await throttle.admit()
        if refusal is not None:
            return too_many_requests(route_path(request.scope), refusal)
        push_request = PushRequest(
            parameters=claim.parameters,
            basic=basic,
            dpop_proof=body.dpop,
            htm=body.htm,
            htu=body.htu,
            dpop_nonce_required=bool(body.dpop_nonce_required),
            client_certificate=body.client_certificate,
            basic_may_be_form_encoded=True,
        )
        outcome = await execute_push(state, call.connection, call.service, push_request)
    await throttle.record(outcome)
    # PushedAuthReqOut's fields (which document this answer), in its order, unset ones left out.
    answer = {
        "resultCode": outcome.result_code,
        "resultMessage": outcome.result_message,
        "action": outcome.action.value,
        "responseContent": _response_content(outcome.response_content),
        "requestUri": outcome.request_uri,
        "clientAuthMethod": outcome.client_auth_method.name if outcome.client_auth_method else None,
        "dpopNonce": outcome.dpop_nonce,
    }
    return JsonAnswer(without_none(answer))


def _token_digest(request: Request, state: AppState) -> str:
    """The service access token, as its budget's key (only with a budget: it costs each call an HMAC)."""
    return state.hasher.lookup_digest(bearer_token(request))
