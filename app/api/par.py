"""The RFC 9126 pushed authorization request endpoint: a thin adapter over ``app.core.par.push``, served
directly (``app.api.direct``)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.deps import AppState, IdPath, StateDep, audit
from app.api.errors import BASIC_CHALLENGE, NO_STORE, error_response
from app.api.rate_limit import Caller, RateLimits, Refusal
from app.api.schemas import OAUTH_ERRORS
from app.core.client_auth import BasicCredentials, parse_basic_authorization
from app.core.errors import InvalidClient, InvalidDpopProof, InvalidRequest, OAuthError
from app.core.model import ClientAuthMethod, ServiceRecord
from app.core.par import PushAction, PushOutcome, PushRequest, push
from app.core.params import ParameterLimits, parse_parameters, refuse_credentials_in_query
from app.core.urls import PAR_PATH
from app.db.engine import RequestConnection

router = APIRouter(tags=["RFC 9126"], responses=OAUTH_ERRORS)
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


async def execute_push(
    state: AppState, connection: RequestConnection, service: ServiceRecord, request: PushRequest
) -> PushOutcome:
    """Run one push. Its pushed request is committed (``app.db.writer``) before the caller answers, so
    a 201 is only sent for a stored request."""
    return await push(
        request,
        service=service,
        store=state.push_store(connection),
        auth=state.client_auth_for(connection),
        limits=state.parameter_limits,
        now=state.clock(),
    )


@dataclass(frozen=True, slots=True)
class Throttle:
    """The rate limits of one push, at either front door."""

    limits: RateLimits
    caller: Caller
    request: Request

    @classmethod
    def of(
        cls,
        state: AppState,
        front_door: str,
        service_id: int,
        request: Request,
        client_id: str | None,
        *,
        relayed: bool = False,
        token: str | None = None,
    ) -> Throttle:
        """The limits of a push by ``client_id`` (as claimed). ``relayed``: an authorization server
        forwards it (the backend API), authenticated by ``token``."""
        limits = state.rate_limits
        address = limits.trusted_proxies.client_address(request, relayed=relayed)
        return cls(limits, Caller(front_door, service_id, address, client_id, token), request)

    async def admit(self) -> Refusal | None:
        return await self.limits.admit(self.caller)

    async def record(self, outcome: PushOutcome) -> None:
        """Spend from the budgets the outcome concerns, and describe it for the log line and metrics."""
        audit(
            self.request,
            operation="push",
            front_door=self.caller.front_door,
            service_id=self.caller.service_id,
            client_id=outcome.client_id,
            outcome=outcome.action.value.lower(),
            error=outcome.error,
        )
        await self.limits.record(
            self.caller,
            authenticated_confidential=outcome.action is not PushAction.UNAUTHORIZED
            and outcome.client_auth_method not in (None, ClientAuthMethod.NONE),
            failed_authentication=outcome.action is PushAction.UNAUTHORIZED,
        )


def peek_client_id(parameters: str | bytes, basic: BasicCredentials | None, limits: ParameterLimits) -> str | None:
    """The client a request names, for its rate limit, before anything is validated."""
    if basic is not None:
        return basic.client_id
    try:
        return parse_parameters(parameters, limits).get("client_id")
    except OAuthError:
        return None


def too_many_requests(path: str, refusal: Refusal) -> JSONResponse:
    """RFC 9126 §2.3 / RFC 6585 §4: 429 with Retry-After, in the format of the path."""
    return error_response(
        path,
        429,
        f"too many requests ({refusal.scope}); retry after {refusal.retry_after} s",
        {"Retry-After": str(refusal.retry_after)},
    )


def outcome_response(outcome: PushOutcome) -> JSONResponse:
    headers = dict(NO_STORE)
    if outcome.basic_challenge:
        headers["WWW-Authenticate"] = BASIC_CHALLENGE
    if outcome.dpop_nonce is not None:
        # RFC 9449 §8: "DPoP-Nonce" carries the nonce the client must use (on errors and successes alike).
        headers["DPoP-Nonce"] = outcome.dpop_nonce
    return JSONResponse(outcome.response_content, status_code=outcome.http_status, headers=headers)


@router.post(
    PAR_PATH,
    status_code=201,
    summary="Push an authorization request (RFC 9126 §2)",
    response_description='`{"request_uri": "urn:ietf:params:oauth:request_uri:...", "expires_in": 60}`',
    openapi_extra={"requestBody": {"required": True, "content": {FORM_MEDIA_TYPE: {"schema": {"type": "object"}}}}},
)
async def pushed_authorization_request(service_id: IdPath, request: Request, state: StateDep) -> JSONResponse:
    """RFC 9126 §2.1: "The client sends the parameters that comprise an authorization request directly to
    the PAR endpoint ... using the application/x-www-form-urlencoded format"."""
    refuse_credentials_in_query(request.scope["query_string"].decode("latin-1"))
    media_type, _, media_params = request.headers.get("content-type", "").partition(";")
    if media_type.strip().lower() != FORM_MEDIA_TYPE:
        raise InvalidRequest(f"the request body must be {FORM_MEDIA_TYPE}")
    charset = media_params.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        raise InvalidRequest("the request body must be encoded in UTF-8")
    body = await request.body()
    basic = _basic_credentials(request)
    throttle = Throttle.of(state, "rfc9126", service_id, request, peek_client_id(body, basic, state.parameter_limits))
    refusal = await throttle.admit()
    if refusal is not None:
        return too_many_requests(request.scope["path"], refusal)
    async with state.request_connection() as connection:
        service = await state.find_service(connection, service_id)
        if service is None:
            return error_response(request.scope["path"], 404, f"service {service_id} does not exist")
        push_request = PushRequest(
            parameters=body,
            basic=basic,
            dpop_proof=_dpop_proof(request),
            client_certificate=_client_certificate(request, state),
        )
        outcome = await execute_push(state, connection, service, push_request)
    await throttle.record(outcome)
    return outcome_response(outcome)


def _basic_credentials(request: Request) -> BasicCredentials | None:
    values = request.headers.getlist("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise InvalidClient("more than one Authorization header", used_authorization_header=True)
    return parse_basic_authorization(values[0])


def _client_certificate(request: Request, state: AppState) -> str | None:
    """MTLS-06: the certificate a TLS-terminating proxy verified, in RFC 9440's Client-Cert header by
    default; trusted only when the operator says the proxy sets it (and strips it from clients)."""
    if not state.settings.trust_client_certificate_header:
        return None
    return request.headers.get(state.settings.client_certificate_header)


def _dpop_proof(request: Request) -> str | None:
    """RFC 9449 §4.3: "There is not more than one DPoP HTTP request header field"."""
    proofs = request.headers.getlist("dpop")
    if len(proofs) > 1:
        raise InvalidDpopProof("more than one DPoP header")
    return proofs[0] if proofs else None
