"""The routers' typed dependencies (path ids, the application state) and request authorization: the
admin token, and service access tokens acting on their own service."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Literal, TypeVar

from fastapi import Depends, Path, Query, Request
from pydantic import BeforeValidator, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import result_codes
from app.core.errors import ApiBadRequest, ApiForbidden, ApiNotFound, ApiUnauthorized
from app.core.secrets import constant_time_equals
from app.db.models import Service
from app.db.repositories import ServiceRepository, ServiceTokenRepository
from app.state import AppState

ServiceT = TypeVar("ServiceT")

# Ids are BIGINT columns: a larger (or negative) number names nothing, and SQLite and PostgreSQL refuse to
# bind it (OverflowError / NumericValueOutOfRange: a 500). Refused at the door instead, as a malformed path.
DB_INT_MAX = 2**63 - 1
# One spelling per id in a path: ASCII digits without sign, spaces, underscores or leading zeros, so
# "/services/1_0/par" or "/services/%201/par" name nothing (404) rather than services 10 and 1, as
# pydantic's lax int parsing would read them.
_CANONICAL_ID = re.compile(r"0|[1-9][0-9]{0,18}")


def canonical_id(value: object) -> object:
    if isinstance(value, str) and not _CANONICAL_ID.fullmatch(value):
        raise ValueError("not an id: decimal digits without a sign or leading zeros")
    return value


DatabaseId = Annotated[int, BeforeValidator(canonical_id), Field(ge=0, le=DB_INT_MAX)]
IdPath = Annotated[DatabaseId, Path()]
PageQuery = Annotated[int, Query(ge=0, le=DB_INT_MAX)]


async def get_state(request: Request) -> AppState:
    # async on purpose: FastAPI runs a plain-def dependency in a thread pool, a thread hand-off per request.
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
            "Credentials in Authorization header are malformed: expected 'Bearer <token>'",
            result_code=result_codes.API_BAD_REQUEST,
        )
    return token.strip()


def is_admin_token(state: AppState, token: str) -> bool:
    admin = state.settings.admin_token
    return admin is not None and constant_time_equals(token, admin.get_secret_value())


async def require_admin(request: Request, state: StateDep) -> None:
    if not is_admin_token(state, bearer_token(request)):
        raise ApiUnauthorized("the access token is not the admin token", result_code=result_codes.API_TOKEN_INVALID)


async def require_known_token(request: Request, state: AppState) -> None:
    """401 unless the bearer token is the admin token or a live service access token, checked before the
    request's body is read: a caller without credentials learns nothing about its body and cannot make
    the server parse one. Which service the token may act on is checked afterwards, as before."""
    token = bearer_token(request)
    if is_admin_token(state, token):
        return
    async with state.request_connection() as connection:
        if await state.find_token_service(connection, state.hasher.lookup_digest(token)) is None:
            raise ApiUnauthorized("the access token is unknown or revoked", result_code=result_codes.API_TOKEN_INVALID)


async def authorize_service(
    request: Request,
    state: AppState,
    service_id: int,
    *,
    token_service: Callable[[str], Awaitable[int | None]],
    find_service: Callable[[int], Awaitable[ServiceT | None]],
) -> ServiceT:
    """Check the caller may act on ``service_id`` and return the service (``find_service``), looked up
    once the caller is known to be allowed.

    A service access token acts only on its own service (``token_service``: the service a token's lookup
    digest belongs to, None if unknown or revoked): 403 otherwise, without revealing whether the other
    service exists. The admin token acts on every service.
    """
    token = bearer_token(request)
    if not is_admin_token(state, token):
        token_service_id = await token_service(state.hasher.lookup_digest(token))
        if token_service_id is None:
            raise ApiUnauthorized("the access token is unknown or revoked", result_code=result_codes.API_TOKEN_INVALID)
        if token_service_id != service_id:
            raise ApiForbidden(
                "the access token does not grant access to this service",
                result_code=result_codes.SERVICE_ACCESS_FORBIDDEN,
            )
    service = await find_service(service_id)
    if service is None:
        raise ApiNotFound(f"service {service_id} does not exist", result_code=result_codes.SERVICE_NOT_FOUND)
    return service


async def authorize_service_call(
    request: Request,
    state: AppState,
    session: AsyncSession,
    service_id: int,
    *,
    lock: Literal["share", "update"] | None = None,
) -> Service:
    """``authorize_service`` for the management API, in ``session``: the token read fresh, the service's row
    locked as ``lock`` says (``ServiceRepository.lock``). The backend API's calls read both from the caches
    instead (``app.api.backend_call``)."""
    services = ServiceRepository(session)
    return await authorize_service(
        request,
        state,
        service_id,
        token_service=ServiceTokenRepository(session).get_service_id_by_digest,
        find_service=services.get_or_none if lock is None else partial(services.lock, exclusive=lock == "update"),
    )
