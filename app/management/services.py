"""Services: create (with a first access token), list, get, update, delete."""

from __future__ import annotations

from app.core.errors import ApiConflict
from app.core.model import FAPI2_AUTH_METHODS, ClientAuthMethod, FapiMode, GrantType, ResponseType
from app.core.registration import FAPI2_METHOD_NAMES, resolve_client_type_and_method
from app.core.secrets import new_numeric_id
from app.core.urls import default_issuer, default_par_endpoint
from app.db.models import Service
from app.db.repositories import ClientRepository, ServiceRepository
from app.management.context import ManagementContext, Page, ServiceAccess, service_or_404, utc_now
from app.management.conversion import service_changes, service_out
from app.management.schemas import ServiceCreated, ServiceIn, ServiceListOut, ServiceOut
from app.management.tokens import add_token

# Stored in every new service, before the fields its creator gives.
NEW_SERVICE = {
    "par_required": False,
    "supported_scopes": [],
    "supported_response_types": [ResponseType.CODE.name],
    "supported_grant_types": [GrantType.AUTHORIZATION_CODE.name, GrantType.REFRESH_TOKEN.name],
    "supported_token_auth_methods": [method.name for method in ClientAuthMethod],
    "pkce_required": False,
    "pkce_s256_required": False,
    "consume_request_uri_on_resolve": False,
    "supported_authorization_details_types": [],
    "request_object_required": False,
    "dpop_nonce_required": False,
    "fapi_modes": [],
    "allow_unregistered_pushed_redirect_uris": False,
}


def answer(context: ManagementContext, row: Service) -> ServiceOut:
    return service_out(row, context.service_record(row))


def _apply(context: ManagementContext, row: Service, body: ServiceIn) -> None:
    """Set the fields the caller gave (``app.management.conversion``) onto ``row``."""
    base_url = context.settings.public_base_url
    derived = {
        "issuer": default_issuer(base_url, row.id),
        "pushed_auth_req_endpoint": default_par_endpoint(base_url, row.id),
    }
    stored_fapi2 = FapiMode.FAPI2_SECURITY.name in (row.fapi_modes or ())
    for column, value in service_changes(body, derived=derived, stored_fapi2=stored_fapi2).items():
        setattr(row, column, value)
    for method in body.supported_token_auth_methods or ():
        resolve_client_type_and_method(None, method)  # refuses methods this server cannot verify yet


async def create_service(context: ManagementContext, body: ServiceIn) -> ServiceCreated:
    """The service and its first access token, in one transaction."""
    now = utc_now()
    row = Service(id=new_numeric_id(), name="par-server service", created_at=now, modified_at=now, **NEW_SERVICE)
    _apply(context, row, body)
    async with context.sessions.begin() as session:
        await ServiceRepository(session).add(row)
        token = await add_token(context, session, row.id, "created with the service", now)
    return ServiceCreated(**answer(context, row).model_dump(), service_access_token=token.access_token)


async def list_services(context: ManagementContext, page: Page) -> ServiceListOut:
    async with context.sessions() as session:
        rows, total = await ServiceRepository(session).list(start=page.start, end=page.end)
    return ServiceListOut(
        start=page.start, end=page.end, total_count=total, services=[answer(context, row) for row in rows]
    )


async def get_service(context: ManagementContext, access: ServiceAccess, service_id: int) -> ServiceOut:
    async with context.sessions() as session:
        row = await access(session, service_id)
    return answer(context, row)


async def update_service(
    context: ManagementContext, access: ServiceAccess, service_id: int, body: ServiceIn
) -> ServiceOut:
    """Fields that are absent or null keep their value."""
    async with context.sessions.begin() as session:
        # Locked: a client registering meanwhile must see either the old profile or the new one, and
        # the check of the clients below must see every client registered under the old one.
        row = await access(session, service_id, lock="update")
        was_fapi2 = FapiMode.FAPI2_SECURITY.name in row.fapi_modes
        _apply(context, row, body)
        if not was_fapi2 and FapiMode.FAPI2_SECURITY.name in row.fapi_modes:
            await _refuse_clients_fapi2_excludes(ClientRepository(session), service_id)
        row.modified_at = utc_now()
    context.forget_records()
    return answer(context, row)


async def _refuse_clients_fapi2_excludes(clients: ClientRepository, service_id: int) -> None:
    """Switching a service to FAPI 2.0 while it has clients that FAPI 2.0 would stop from pushing is
    refused: they must first move to an allowed method (or go), rather than start failing unannounced."""
    shown = 5
    excluded = await clients.ids_not_using(service_id, [m.name for m in FAPI2_AUTH_METHODS], limit=shown + 1)
    if excluded:
        listed = ", ".join(str(client_id) for client_id in excluded[:shown])
        raise ApiConflict(
            f"FAPI 2.0 mode allows only {FAPI2_METHOD_NAMES} clients; first change or delete client(s) {listed}"
            + (" and others" if len(excluded) > shown else "")
        )


async def delete_service(context: ManagementContext, service_id: int) -> None:
    """The service with its clients, tokens and pushed requests."""
    async with context.sessions.begin() as session:
        services = ServiceRepository(session)
        # Locked: calls adding rows to the service (clients, tokens) finish first, or find it gone.
        await services.delete(service_or_404(await services.lock(service_id, exclusive=True), service_id))
    context.forget_records()
