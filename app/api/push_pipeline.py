"""What a push does at either front door, the RFC 9126 endpoint (``app.api.par``) and the backend API
(``app.api.backend``): its rate limits (``Throttle``), a 429 when they refuse it, and the push itself
(``app.core.par.push`` on the request's connection)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from app.api.errors import error_response
from app.api.observability import audit
from app.api.rate_limit import Caller, RateLimits, Refusal
from app.api.responses import JsonAnswer
from app.core.client_auth import BasicCredentials
from app.core.errors import OAuthError
from app.core.model import ClientAuthMethod, ServiceRecord
from app.core.par import PushAction, PushOutcome, PushRequest, push
from app.core.params import ParameterBounds, RequestParameters, parse_parameters
from app.db.engine import RequestConnection
from app.state import AppState


async def execute_push(
    state: AppState, connection: RequestConnection, service: ServiceRecord, request: PushRequest
) -> PushOutcome:
    """Run one push. Its pushed request is committed (``app.db.batch_writer``) before the caller answers,
    so a 201 is only sent for a stored request."""
    clients = state.client_directory(connection, cached=True)
    return await push(
        request,
        service=service,
        clients=clients,
        pushed_requests=state.pushed_request_store(connection),
        auth=state.push_context_for(connection, secret_hashes=clients),
        limits=state.parameter_bounds,
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


@dataclass(frozen=True, slots=True)
class Claim:
    """Whom a push claims to be, for its rate limits, before anything is validated; and its parameters as
    the push takes them: parsed once, when finding the claimed client needed them parsed (a push without
    Basic credentials), and as received otherwise, or when they do not parse (the push says why)."""

    client_id: str | None
    parameters: str | bytes | RequestParameters


def peek_client_id(parameters: str | bytes, basic: BasicCredentials | None, limits: ParameterBounds) -> Claim:
    """The client a request names: its Basic credentials' or its parameters' ``client_id``."""
    if basic is not None:
        return Claim(basic.client_id, parameters)  # the parameters are parsed only once admitted
    try:
        parsed = parse_parameters(parameters, limits)
    except OAuthError:
        return Claim(None, parameters)
    return Claim(parsed.get("client_id"), parsed)


def too_many_requests(path: str, refusal: Refusal) -> JsonAnswer:
    """RFC 9126 §2.3 / RFC 6585 §4: 429 with Retry-After, in the format of the path."""
    return error_response(
        path,
        429,
        f"too many requests ({refusal.scope}); retry after {refusal.retry_after} s",
        {"Retry-After": str(refusal.retry_after)},
    )
