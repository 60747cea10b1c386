"""Authlete-shaped management API: services (admin token), service access tokens, clients. HTTP only: the
use cases are ``app.management``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.bodies import SafeJsonRoute
from app.api.deps import IdPath, PageQuery, StateDep, authorize_service_call, require_admin, require_known_token
from app.api.openapi import ADMIN_ONLY, SERVICE_OR_ADMIN
from app.api.schemas import API_ERRORS
from app.db.models import Service
from app.db.repositories import RowLock
from app.management import clients, services, tokens
from app.management.context import Page, ServiceAccess
from app.management.schemas import (
    ClientIn,
    ClientListOut,
    ClientOut,
    ClientSecretRefreshOut,
    ClientSecretUpdateIn,
    ServiceCreated,
    ServiceIn,
    ServiceListOut,
    ServiceOut,
    ServiceTokenCreated,
    ServiceTokenIn,
    ServiceTokenOut,
)


async def no_store(response: Response) -> None:
    """Answers here may show a secret or token once; none may be cached (RFC 9111 §5.2.2.5)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


# A change that commits drops this replica's record caches (``AppState.forget_records``), so its pushes see
# it from the next one on. Only then: a refused or read-only call (even an unauthenticated one) must not let
# anyone empty the caches that every push relies on. Creations need none: unknown ids are never cached.
class AuthenticatedJsonRoute(SafeJsonRoute):
    """A management route: the caller's token is known (``require_known_token``) before its body is read,
    then the route's own dependencies decide what the token may do. Its OpenAPI operation names the
    token it takes: the admin token alone where ``require_admin`` is among those dependencies."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        admin_only = any(dependency.dependency is require_admin for dependency in self.dependencies)
        self.openapi_extra = {"security": ADMIN_ONLY if admin_only else SERVICE_OR_ADMIN, **(self.openapi_extra or {})}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated_handler(request: Request) -> Response:
            await require_known_token(request, request.app.state.par)
            return await handler(request)

        return authenticated_handler


router = APIRouter(
    prefix="/api",
    tags=["Management API"],
    dependencies=[Depends(no_store)],
    responses=API_ERRORS,
    route_class=AuthenticatedJsonRoute,
)
AdminDep = Depends(require_admin)
NO_CONTENT = 204


async def caller_access(request: Request, state: StateDep) -> ServiceAccess:
    """The caller's bearer token decides which service it may act on (``authorize_service_call``)."""

    async def access(session: AsyncSession, service_id: int, *, lock: RowLock | None = None) -> Service:
        return await authorize_service_call(request, state, session, service_id, lock=lock)

    return access


AccessDep = Annotated[ServiceAccess, Depends(caller_access)]


# --- services -----------------------------------------------------------------------------------------


@router.post(
    "/service/create",
    dependencies=[AdminDep],
    response_model=ServiceCreated,
    response_model_exclude_none=True,
    summary="Create a service; answers with its first access token, shown once",
)
async def service_create(body: ServiceIn, state: StateDep) -> ServiceCreated:
    return await services.create_service(state, body)


@router.get(
    "/service/get/list", dependencies=[AdminDep], response_model=ServiceListOut, response_model_exclude_none=True
)
async def service_list(state: StateDep, start: PageQuery = 0, end: PageQuery | None = None) -> ServiceListOut:
    return await services.list_services(state, Page.asked(start, end))


@router.get("/{service_id}/service/get", response_model=ServiceOut, response_model_exclude_none=True)
async def service_get(service_id: IdPath, state: StateDep, access: AccessDep) -> ServiceOut:
    return await services.get_service(state, access, service_id)


@router.post(
    "/{service_id}/service/update",
    response_model=ServiceOut,
    response_model_exclude_none=True,
    summary="Update a service: fields that are absent or null keep their value",
)
async def service_update(service_id: IdPath, body: ServiceIn, state: StateDep, access: AccessDep) -> ServiceOut:
    return await services.update_service(state, access, service_id, body)


@router.delete(
    "/{service_id}/service/delete",
    dependencies=[AdminDep],
    status_code=NO_CONTENT,
    summary="Delete a service with its clients, tokens and pushed requests",
)
async def service_delete(service_id: IdPath, state: StateDep) -> Response:
    await services.delete_service(state, service_id)
    return Response(status_code=NO_CONTENT)


# --- service access tokens ----------------------------------------------------------------------------


@router.post(
    "/{service_id}/service/token/create",
    dependencies=[AdminDep],
    response_model=ServiceTokenCreated,
    summary="Issue another service access token (shown once)",
)
async def service_token_create(
    service_id: IdPath, state: StateDep, body: ServiceTokenIn | None = None
) -> ServiceTokenCreated:
    return await tokens.create_service_token(state, service_id, body.description if body else None)


@router.get("/{service_id}/service/token/get/list", dependencies=[AdminDep], response_model=list[ServiceTokenOut])
async def service_token_list(service_id: IdPath, state: StateDep) -> list[ServiceTokenOut]:
    return await tokens.list_service_tokens(state, service_id)


@router.delete(
    "/{service_id}/service/token/delete/{token_id}",
    dependencies=[AdminDep],
    status_code=NO_CONTENT,
    summary="Revoke a service access token",
)
async def service_token_revoke(service_id: IdPath, token_id: IdPath, state: StateDep) -> Response:
    await tokens.revoke_service_token(state, service_id, token_id)
    return Response(status_code=NO_CONTENT)


# --- clients ------------------------------------------------------------------------------------------


@router.post(
    "/{service_id}/client/create",
    response_model=ClientOut,
    response_model_exclude_none=True,
    summary="Register a client; a generated clientSecret is returned once",
)
async def client_create(service_id: IdPath, body: ClientIn, state: StateDep, access: AccessDep) -> ClientOut:
    return await clients.create_client(state, access, service_id, body)


@router.get("/{service_id}/client/get/list", response_model=ClientListOut, response_model_exclude_none=True)
async def client_list(
    service_id: IdPath,
    state: StateDep,
    access: AccessDep,
    start: PageQuery = 0,
    end: PageQuery | None = None,
) -> ClientListOut:
    return await clients.list_clients(state, access, service_id, Page.asked(start, end))


@router.get("/{service_id}/client/get/{client_id}", response_model=ClientOut, response_model_exclude_none=True)
async def client_get(service_id: IdPath, client_id: str, state: StateDep, access: AccessDep) -> ClientOut:
    return await clients.get_client(state, access, service_id, client_id)


@router.post(
    "/{service_id}/client/update/{client_id}",
    response_model=ClientOut,
    response_model_exclude_none=True,
    summary="Update a client: fields that are absent or null keep their value",
)
async def client_update(
    service_id: IdPath, client_id: str, body: ClientIn, state: StateDep, access: AccessDep
) -> ClientOut:
    return await clients.update_client(state, access, service_id, client_id, body)


@router.delete("/{service_id}/client/delete/{client_id}", status_code=NO_CONTENT)
async def client_delete(service_id: IdPath, client_id: str, state: StateDep, access: AccessDep) -> Response:
    await clients.delete_client(state, access, service_id, client_id)
    return Response(status_code=NO_CONTENT)


REFRESH_PATH = "/{service_id}/client/secret/refresh/{client_id}"
# Authlete serves the refresh on GET and POST alike; one route per method keeps operation ids unique.
REFRESH_ROUTE: dict[str, Any] = {
    "response_model": ClientSecretRefreshOut,
    "response_model_exclude_none": True,
    "summary": "Replace the client secret; the new one is shown once and the old one stops working",
}


@router.get(REFRESH_PATH, **REFRESH_ROUTE)
@router.post(REFRESH_PATH, **REFRESH_ROUTE)
async def client_secret_refresh(
    service_id: IdPath, client_id: str, state: StateDep, access: AccessDep
) -> ClientSecretRefreshOut:
    return await clients.refresh_client_secret(state, access, service_id, client_id)


@router.post(
    "/{service_id}/client/secret/update/{client_id}",
    response_model=ClientSecretRefreshOut,
    response_model_exclude_none=True,
    summary="Set the client secret to a given value; the old one stops working",
)
async def client_secret_update(
    service_id: IdPath, client_id: str, body: ClientSecretUpdateIn, state: StateDep, access: AccessDep
) -> ClientSecretRefreshOut:
    return await clients.update_client_secret(state, access, service_id, client_id, body.client_secret)
