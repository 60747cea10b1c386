"""The Authlete-compatible backend API: ``POST /api/{serviceId}/pushed_auth_req`` (served directly,
``app.api.direct``).

An authorization server forwards its client's PAR request here and relays ``responseContent`` with
the HTTP status that ``action`` names, as with Authlete's own API (``app.core.par.HTTP_STATUS_BY_ACTION``:
CREATED is 201, BAD_REQUEST 400, UNAUTHORIZED 401, and so on).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.bodies import read_body
from app.api.deps import AppState, IdPath, StateDep, authorize_backend_call, bearer_token
from app.api.errors import NO_STORE
from app.api.par import Throttle, execute_push, peek_client_id, too_many_requests
from app.api.schemas import API_ERRORS, PushedAuthReqIn, PushedAuthReqOut
from app.core.client_auth import BasicCredentials, form_decoded
from app.core.errors import ApiBadRequest
from app.core.par import PushRequest

router = APIRouter(prefix="/api/{service_id}", tags=["Authlete-compatible backend API"], responses=API_ERRORS)


@router.post(
    "/pushed_auth_req",
    response_model=PushedAuthReqOut,
    response_model_exclude_none=True,
    summary="Process a pushed authorization request on behalf of an authorization server",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": PushedAuthReqIn.model_json_schema(by_alias=True)},
                "application/x-www-form-urlencoded": {"schema": PushedAuthReqIn.model_json_schema(by_alias=True)},
            },
        }
    },
)
async def pushed_auth_req(service_id: IdPath, request: Request, state: StateDep) -> JSONResponse:
    body = await read_body(request, PushedAuthReqIn, allow_form=True)
    async with state.request_connection() as connection:
        service = await authorize_backend_call(request, state, connection, service_id)
        call = body.get()  # after authorization: an unauthenticated caller learns nothing about its body
        if call.parameters is None:
            raise ApiBadRequest("the request body does not contain 'parameters'", result_code="A245201")
        if call.oauth_client_attestation or call.oauth_client_attestation_pop:
            # Refused rather than ignored: a client relying on attestation must not be let through on less.
            raise ApiBadRequest(
                "attestation-based client authentication (oauthClientAttestation, oauthClientAttestationPop) "
                "is not supported"
            )
        basic = BasicCredentials(call.client_id, call.client_secret or "") if call.client_id is not None else None
        throttle = Throttle.of(
            state,
            "backend",
            service_id,
            request,
            # One budget for every encoding of a client id: the decoded retry is no way around it.
            peek_client_id(call.parameters, (basic and form_decoded(basic)) or basic, state.parameter_limits),
            relayed=True,
            token=_token_digest(request, state) if state.settings.rate_limit_per_service_token else None,
        )
        await connection.release()  # not held while the limiter may read counters it has not seen
        refusal = await throttle.admit()
        if refusal is not None:
            return too_many_requests(request.scope["path"], refusal)
        push_request = PushRequest(
            parameters=call.parameters,
            basic=basic,
            dpop_proof=call.dpop,
            htm=call.htm,
            htu=call.htu,
            dpop_nonce_required=bool(call.dpop_nonce_required),
            client_certificate=call.client_certificate,
            basic_may_be_form_encoded=True,
        )
        outcome = await execute_push(state, connection, service, push_request)
    await throttle.record(outcome)
    answer = PushedAuthReqOut(
        result_code=outcome.result_code,
        result_message=outcome.result_message,
        action=outcome.action.value,
        response_content=json.dumps(outcome.response_content, separators=(",", ":")),
        request_uri=outcome.request_uri,
        client_auth_method=outcome.client_auth_method.name if outcome.client_auth_method else None,
        dpop_nonce=outcome.dpop_nonce,
    )
    return JSONResponse(answer.model_dump(by_alias=True, exclude_none=True), headers=NO_STORE)


def _token_digest(request: Request, state: AppState) -> str:
    """The service access token, as its budget's key (only with a budget: it costs each call an HMAC)."""
    return state.hasher.lookup_digest(bearer_token(request))
