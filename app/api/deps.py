"""Application state and typed dependencies shared by the routers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.errors import ApiBadRequest, ApiForbidden, ApiNotFound, ApiUnauthorized
from app.core.model import ServiceRecord
from app.core.params import ParameterLimits
from app.core.secrets import SecretHasher, constant_time_equals
from app.db.models import Service
from app.db.repositories import ServiceRepository, ServiceTokenRepository, service_record
from app.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hasher: SecretHasher
    clock: Callable[[], datetime] = utc_now  # replaceable so tests can stand at an expiry boundary

    @property
    def parameter_limits(self) -> ParameterLimits:
        return ParameterLimits(
            max_parameters=self.settings.max_parameters,
            max_parameter_bytes=self.settings.max_parameter_bytes,
            max_total_bytes=self.settings.max_body_bytes,
        )

    def service_record(self, row: Service) -> ServiceRecord:
        return service_record(
            row,
            public_base_url=self.settings.public_base_url,
            default_duration=self.settings.default_pushed_auth_req_duration,
            default_session_duration=self.settings.default_authorization_session_duration,
            default_max_state_length=self.settings.default_max_state_length,
            default_max_nonce_length=self.settings.default_max_nonce_length,
        )


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.par
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise ApiUnauthorized("Authorization header is missing")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise ApiBadRequest(
            "Credentials in Authorization header are malformed: expected 'Bearer <token>'", result_code="A001203"
        )
    return token.strip()


def is_admin_token(state: AppState, token: str) -> bool:
    admin = state.settings.admin_token
    return admin is not None and constant_time_equals(token, admin.get_secret_value())


async def require_admin(request: Request, state: StateDep) -> None:
    if not is_admin_token(state, bearer_token(request)):
        raise ApiUnauthorized("the access token is not the admin token", result_code="A003201")


async def authorize_service_call(
    request: Request, state: AppState, session: AsyncSession, service_id: int, *, allow_admin: bool = True
) -> Service:
    """Check the caller may act on ``service_id`` and return the service.

    A service access token acts only on its own service (403 otherwise, without revealing whether the
    other service exists); the admin token acts on every service.
    """
    token = bearer_token(request)
    if not (allow_admin and is_admin_token(state, token)):
        token_service_id = await ServiceTokenRepository(session).get_service_id_by_digest(
            state.hasher.lookup_digest(token)
        )
        if token_service_id is None:
            raise ApiUnauthorized("the access token is unknown or revoked", result_code="A003201")
        if token_service_id != service_id:
            raise ApiForbidden("the access token does not grant access to this service", result_code="A003204")
    service = await ServiceRepository(session).get_or_none(service_id)
    if service is None:
        raise ApiNotFound(f"service {service_id} does not exist", result_code="A003202")
    return service
