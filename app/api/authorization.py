"""The authorization endpoint's half of PAR: resolve and consume a request_uri (service token, JSON);
served directly (``@served_directly``: ``app.api.direct``)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from app.api.backend_call import backend_call, parameters_required
from app.api.deps import IdPath, StateDep
from app.api.direct import served_directly
from app.api.observability import audit
from app.api.openapi import SERVICE_OR_ADMIN
from app.api.responses import JsonAnswer
from app.api.schemas import (
    API_ERRORS,
    AuthorizationOut,
    ConsumeIn,
    ResolveIn,
    epoch_millis,
    request_body,
    without_none,
)
from app.core import authorization, result_codes
from app.core.authorization import AuthorizationOutcome
from app.core.errors import ApiBadRequest

router = APIRouter(
    prefix="/api/{service_id}/pushed_auth_req", tags=["Authorization endpoint API"], responses=API_ERRORS
)


# Both answer an AuthorizationOut and leave unset fields out.
answering = partial(router.post, response_model=AuthorizationOut, response_model_exclude_none=True)


@answering(
    "/resolve",
    summary="Resolve the authorization endpoint's parameters (client_id + request_uri, or a plain request)",
    openapi_extra={**request_body(ResolveIn, "application/json"), "security": SERVICE_OR_ADMIN},
)
@served_directly
async def resolve(service_id: IdPath, request: Request, state: StateDep) -> JsonAnswer:
    """Repeatable until the request is consumed or its window closes; does not consume unless the
    service sets ``consumeRequestUriOnResolve``."""
    async with backend_call(
        request,
        state,
        service_id,
        ResolveIn,
        require=parameters_required(result_codes.AUTHORIZATION_PARAMETERS_MISSING),
    ) as call:
        outcome = await authorization.resolve(
            call.required,
            service=call.service,
            clients=state.client_directory(call.connection, cached=False),
            pushed_requests=state.pushed_request_store(call.connection),
            limits=state.parameter_bounds,
            now=state.clock(),
        )
    _audit(request, "resolve", service_id, outcome)
    return _answer(outcome)


@answering(
    "/consume",
    summary="Consume a request_uri once, when the authorization is granted",
    openapi_extra={**request_body(ConsumeIn, "application/json"), "security": SERVICE_OR_ADMIN},
)
@served_directly
async def consume(service_id: IdPath, request: Request, state: StateDep) -> JsonAnswer:
    async with backend_call(request, state, service_id, ConsumeIn, require=_consumption) as call:
        client_id, request_uri = call.required
        outcome = await authorization.consume(
            client_id,
            request_uri,
            service=call.service,
            clients=state.client_directory(call.connection, cached=False),
            pushed_requests=state.pushed_request_store(call.connection),
            now=state.clock(),
        )
    _audit(request, "consume", service_id, outcome)
    return _answer(outcome)


def _consumption(body: ConsumeIn) -> tuple[str, str]:
    """The client id and request_uri a consume requires."""
    if not body.client_id or not body.request_uri:
        raise ApiBadRequest("the request body must contain 'clientId' and 'requestUri'")
    return body.client_id, body.request_uri


def _audit(request: Request, operation: str, service_id: int, outcome: AuthorizationOutcome) -> None:
    audit(
        request,
        operation=operation,
        service_id=service_id,
        client_id=outcome.client.id if outcome.client else None,
        outcome=outcome.action.value.lower(),
        error=outcome.error,
    )


def _answer(outcome: AuthorizationOutcome) -> JsonAnswer:
    """AuthorizationOut's fields (which document this answer), in its order, unset ones left out."""
    client = outcome.client
    answer = {
        "resultCode": outcome.result_code,
        "resultMessage": outcome.result_message,
        "action": outcome.action.value,
        "responseContent": outcome.response_content,
        "clientId": client.id if client else None,
        "clientIdAlias": client.alias if client else None,
        "requestUri": outcome.request_uri,
        "parameters": outcome.parameters,
        "request": outcome.request,
        "expiresAt": epoch_millis(outcome.expires_at) if outcome.expires_at else None,
    }
    return JsonAnswer(without_none(answer))
