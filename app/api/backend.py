"""The Authlete-compatible backend API: ``POST /api/{serviceId}/pushed_auth_req``.

An authorization server forwards its client's PAR request here and relays ``responseContent`` with
the HTTP status that ``action`` names (reference/authlete-api.md §2.2).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.api.deps import StateDep, authorize_service_call, utc_now
from app.api.errors import NO_STORE
from app.api.schemas import PushedAuthReqIn, PushedAuthReqOut
from app.core.client_auth import BasicCredentials
from app.core.errors import ApiBadRequest
from app.core.par import PushRequest, push
from app.db.repositories import SqlPushStore

router = APIRouter(prefix="/api/{service_id}", tags=["Authlete-compatible backend API"])


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
async def pushed_auth_req(service_id: int, request: Request, state: StateDep) -> JSONResponse:
    body = await _read_body(request)
    if body.parameters is None:
        raise ApiBadRequest("the request body does not contain 'parameters'", result_code="A245201")
    basic = BasicCredentials(body.client_id, body.client_secret or "") if body.client_id is not None else None
    async with state.sessions.begin() as session:
        service = await authorize_service_call(request, state, session, service_id)
        outcome = await push(
            PushRequest(parameters=body.parameters, basic=basic, dpop_proof=body.dpop),
            service=state.service_record(service),
            store=SqlPushStore(session),
            hasher=state.hasher,
            limits=state.parameter_limits,
            now=utc_now(),
        )
    answer = PushedAuthReqOut(
        result_code=outcome.result_code,
        result_message=outcome.result_message,
        action=outcome.action.value,
        response_content=json.dumps(outcome.response_content, separators=(",", ":")),
        request_uri=outcome.request_uri,
        client_auth_method=outcome.client_auth_method.name if outcome.client_auth_method else None,
    )
    return JSONResponse(answer.model_dump(by_alias=True, exclude_none=True), headers=NO_STORE)


async def _read_body(request: Request) -> PushedAuthReqIn:
    """JSON (what the SDKs send) or a form (the Authlete spec lists both)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    raw: Any
    if media_type == "application/json":
        try:
            raw = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ApiBadRequest("the request body is not valid JSON") from None
    elif media_type == "application/x-www-form-urlencoded":
        form = await request.form()
        raw = {key: form.getlist(key) if key == "clientCertificatePath" else form.get(key) for key in form}
    else:
        raise ApiBadRequest("the request body must be application/json or application/x-www-form-urlencoded")
    if not isinstance(raw, dict):
        raise ApiBadRequest("the request body must be a JSON object")
    try:
        return PushedAuthReqIn.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ApiBadRequest(f"invalid '{field}': {first['msg']}") from None
