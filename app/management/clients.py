"""Clients: register (one, or a file of them), list, get, update, delete, and refresh or set their secret."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import mtls, result_codes
from app.core.errors import ApiBadRequest, ApiConflict, ApiError, ApiNotFound
from app.core.model import SECRET_AUTH_METHODS, ClientAuthMethod, ClientType, FapiMode, GrantType, ResponseType
from app.core.registration import (
    resolve_client_type_and_method,
    validate_alias,
    validate_client_authentication,
    validate_fapi2_client,
    validate_request_sign_alg,
)
from app.core.secrets import HashCostLimits, UnusableHash, client_secret_problem, new_numeric_id
from app.db.models import Client, Service
from app.db.repositories import ClientRepository, alias_index_violated
from app.management.context import ManagementContext, Page, ServiceAccess, any_service, utc_now
from app.management.conversion import client_changes, client_out
from app.management.schemas import ClientIn, ClientListOut, ClientOut, ClientSecretRefreshOut

# Stored in every new client, before the fields its registrant gives.
NEW_CLIENT = {
    "client_type": None,
    "token_auth_method": None,
    "redirect_uris": [],
    "response_types": [ResponseType.CODE.name],
    "grant_types": [GrantType.AUTHORIZATION_CODE.name],
    "requestable_scopes": None,
    "authorization_details_types": [],
    "par_required": False,
    "request_object_required": False,
    "pkce_required": False,
    "pkce_s256_required": False,
    "dpop_required": False,
}


async def _apply(row: Client, body: ClientIn, *, service: Service, clients: ClientRepository) -> None:
    """Set the fields the caller gave onto ``row`` (absent and null ones stay, an empty string clears one)
    and check that the result is coherent, with the service and its other clients."""
    # An absent field keeps its stored value (a new client has none, so the missing one is derived).
    client_type, method = resolve_client_type_and_method(
        body.client_type or (ClientType[row.client_type] if row.client_type else None),
        body.token_auth_method or (ClientAuthMethod[row.token_auth_method] if row.token_auth_method else None),
    )
    if method.name not in service.supported_token_auth_methods:
        raise ApiBadRequest(
            f"token auth method {method.name} is not enabled for this service (supportedTokenAuthMethods)"
        )
    validate_fapi2_client(method, fapi2=FapiMode.FAPI2_SECURITY.name in service.fapi_modes)
    row.client_type, row.token_auth_method = client_type.name, method.name
    if body.client_id_alias is not None:
        alias = validate_alias(body.client_id_alias) if body.client_id_alias else None
        if alias and await clients.alias_taken(service.id, alias, except_id=row.id):
            raise alias_conflict(alias)
        row.client_id_alias = alias
    for column, value in client_changes(body).items():
        setattr(row, column, value)
    if body.extension is not None and body.extension.requestable_scopes_enabled is not None:
        row.requestable_scopes = (
            list(body.extension.requestable_scopes or []) if body.extension.requestable_scopes_enabled else None
        )
    validate_request_sign_alg(row.request_sign_alg)
    validate_client_authentication(
        method,
        sign_alg=row.token_auth_sign_alg,
        has_jwks=row.jwks is not None,
        has_jwks_uri=row.jwks_uri is not None,
        tls_attributes={field: getattr(row, name) for name, field in mtls.TLS_CLIENT_AUTH_FIELD_NAMES.items()},
    )


def alias_conflict(alias: str) -> ApiConflict:
    return ApiConflict(f"clientIdAlias '{alias}' is already used in this service")


@contextmanager
def alias_race_refused(body: ClientIn) -> Iterator[None]:
    """Around a client's transaction: two calls giving one alias at once may both find it free; the
    database's unique index refuses the later write, which then gets the answer it would have got had it
    come second (its transaction is rolled back, nothing of it stored)."""
    try:
        yield
    except IntegrityError as error:
        if not (body.client_id_alias and alias_index_violated(error)):
            raise
        raise alias_conflict(body.client_id_alias) from None


async def _register(
    context: ManagementContext, service: Service, body: ClientIn, clients: ClientRepository
) -> tuple[Client, str | None]:
    """The new client and its secret in clear (given or generated), if it has one to show."""
    now = utc_now()
    row = Client(id=new_numeric_id(), service_id=service.id, created_at=now, modified_at=now, **NEW_CLIENT)
    await _apply(row, body, service=service, clients=clients)
    secret = _given_secret(context, row, body) or _new_secret_if_needed(context, row)
    await clients.add(row)
    return row, secret


async def create_client(
    context: ManagementContext, access: ServiceAccess, service_id: int, body: ClientIn
) -> ClientOut:
    """A secret generated for the client, or given in clear, is in this answer only."""
    with alias_race_refused(body):
        async with context.sessions.begin() as session:
            # Locked (shared) while the client is checked against the service's profile and written.
            service = await access(session, service_id, lock="share")
            row, secret = await _register(context, service, body, ClientRepository(session))
    return client_out(row, secret=secret)


@dataclass(frozen=True, slots=True)
class ImportedClient:
    index: int  # in the file
    client: ClientOut  # with the secret generated for it; one the file gave is not repeated


@dataclass(frozen=True, slots=True)
class RefusedRecord:
    index: int
    error: str  # never the record's values: they may hold secrets


@dataclass(slots=True)
class ClientImport:
    created: list[ImportedClient] = field(default_factory=list)
    refused: list[RefusedRecord] = field(default_factory=list)


class _Refused(Exception):
    """Rolls the import's transaction back."""


async def import_clients(
    context: ManagementContext, service_id: int, records: Sequence[object], *, keep_valid: bool
) -> ClientImport:
    """Register the clients of a list of client/create bodies in one transaction: every refused record
    is reported, and nothing is stored if any is refused, unless ``keep_valid``."""
    outcome = ClientImport()
    try:
        async with context.sessions.begin() as session:
            service = await any_service(session, service_id, lock="share")
            clients = ClientRepository(session)
            for index, record in enumerate(records):
                try:
                    body = ClientIn.model_validate(record)
                    row, secret = await _register(context, service, body, clients)
                except ValidationError as error:
                    outcome.refused.append(RefusedRecord(index, _problems(error)))
                    continue
                except ApiError as error:
                    outcome.refused.append(RefusedRecord(index, error.description))
                    continue
                shown = secret if secret is not None and secret != body.client_secret else None
                outcome.created.append(ImportedClient(index, client_out(row, secret=shown)))
            if outcome.refused and not keep_valid:
                raise _Refused
    except _Refused:
        outcome.created.clear()
    return outcome


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'record'}: {problem['msg']}"
        for problem in error.errors(include_input=False, include_url=False)
    )


async def _client_or_404(clients: ClientRepository, service_id: int, client_id: str, *, locked: bool) -> Client:
    row = await clients.get_or_none(service_id, client_id, lock="update" if locked else None)
    if row is None:
        raise ApiNotFound(
            f"client {client_id[:40]} does not exist in this service", result_code=result_codes.CLIENT_NOT_FOUND
        )
    return row


async def list_clients(context: ManagementContext, access: ServiceAccess, service_id: int, page: Page) -> ClientListOut:
    async with context.sessions() as session:
        await access(session, service_id)
        rows, total = await ClientRepository(session).list(service_id, start=page.start, end=page.end)
    return ClientListOut(start=page.start, end=page.end, total_count=total, clients=[client_out(r) for r in rows])


async def get_client(context: ManagementContext, access: ServiceAccess, service_id: int, client_id: str) -> ClientOut:
    async with context.sessions() as session:
        await access(session, service_id)
        row = await _client_or_404(ClientRepository(session), service_id, client_id, locked=False)
    return client_out(row)


async def update_client(
    context: ManagementContext, access: ServiceAccess, service_id: int, client_id: str, body: ClientIn
) -> ClientOut:
    """Fields that are absent or null keep their value. A change to a secret-based method issues a
    secret, shown in this answer only."""
    with alias_race_refused(body):
        async with context.sessions.begin() as session:
            service = await access(session, service_id, lock="share")
            clients = ClientRepository(session)
            row = await _client_or_404(clients, service_id, client_id, locked=True)
            await _apply(row, body, service=service, clients=clients)
            secret = _new_secret_if_needed(context, row)
            row.modified_at = utc_now()
    context.forget_records()
    return client_out(row, secret=secret)


async def delete_client(context: ManagementContext, access: ServiceAccess, service_id: int, client_id: str) -> None:
    async with context.sessions.begin() as session:
        await access(session, service_id, lock="share")
        clients = ClientRepository(session)
        await clients.delete(await _client_or_404(clients, service_id, client_id, locked=True))
    context.forget_records()


async def refresh_client_secret(
    context: ManagementContext, access: ServiceAccess, service_id: int, client_id: str
) -> ClientSecretRefreshOut:
    """A new secret, shown once; the old one stops working."""
    async with context.sessions.begin() as session:
        row = await _secret_client(access, session, service_id, client_id)
        secret = _set_new_secret(context, row)
        row.modified_at = utc_now()
    context.forget_records()
    return _secret_answer(
        result_codes.CLIENT_SECRET_REFRESHED, f"The client secret of client {row.id} was refreshed.", secret
    )


async def update_client_secret(
    context: ManagementContext, access: ServiceAccess, service_id: int, client_id: str, secret: str
) -> ClientSecretRefreshOut:
    """The secret the caller gives; the old one stops working."""
    async with context.sessions.begin() as session:
        row = await _secret_client(access, session, service_id, client_id)
        _set_secret(context, row, secret)
        row.modified_at = utc_now()
    context.forget_records()
    return _secret_answer(
        result_codes.CLIENT_SECRET_UPDATED, f"The client secret of client {row.id} was updated.", secret
    )


async def _secret_client(access: ServiceAccess, session: AsyncSession, service_id: int, client_id: str) -> Client:
    """The client whose secret changes, locked; refused if its method uses no secret."""
    await access(session, service_id, lock="share")
    row = await _client_or_404(ClientRepository(session), service_id, client_id, locked=True)
    if ClientAuthMethod[row.token_auth_method] not in SECRET_AUTH_METHODS:
        raise ApiBadRequest(f"client {row.id} uses {row.token_auth_method}, which has no secret")
    return row


def _secret_answer(result_code: str, message: str, secret: str) -> ClientSecretRefreshOut:
    return ClientSecretRefreshOut(
        result_code=result_code, result_message=f"[{result_code}] {message}", new_client_secret=secret
    )


# --- secrets ------------------------------------------------------------------------------------------


def _given_secret(context: ManagementContext, row: Client, body: ClientIn) -> str | None:
    """A client adopting this server keeps its secret: given in clear (``clientSecret``), or as the hash
    its previous server kept (``clientSecretHash``), replaced by our keyed hash on its first successful
    authentication (``app.core.client_auth``). Returns the secret given in clear, if any."""
    secret, imported_hash = body.client_secret, body.client_secret_hash  # "" is given, and refused
    if secret is None and imported_hash is None:
        return None
    if secret is not None and imported_hash is not None:
        raise ApiBadRequest("give clientSecret or clientSecretHash, not both")
    method = ClientAuthMethod[row.token_auth_method]
    if method not in SECRET_AUTH_METHODS:
        raise ApiBadRequest(f"token auth method {method.name} uses no client secret; clientSecret is not accepted")
    if imported_hash is not None:
        if method is ClientAuthMethod.CLIENT_SECRET_JWT:
            raise ApiBadRequest(
                "a CLIENT_SECRET_JWT client needs its secret in clear (clientSecret): it is the key of its "
                "assertions, which a hash cannot give back"
            )
        settings = context.settings
        limits = HashCostLimits(
            max_bcrypt_cost=settings.imported_bcrypt_max_cost, max_pbkdf2_rounds=settings.imported_pbkdf2_max_rounds
        )
        try:
            row.secret_hash = context.hasher.importable_hash(imported_hash, limits)
        except UnusableHash as problem:
            raise ApiBadRequest(str(problem)) from None
        return None
    assert secret is not None
    _set_secret(context, row, secret)
    return secret


def _set_secret(context: ManagementContext, row: Client, secret: str) -> None:
    """Store a secret given by the caller, once it passes the strength rule (README "Adopting existing
    clients")."""
    settings = context.settings
    if problem := client_secret_problem(
        secret, min_length=settings.client_secret_min_length, max_length=settings.client_secret_max_length
    ):
        raise ApiBadRequest(problem)
    _store_secret(context, row, secret)


def _new_secret_if_needed(context: ManagementContext, row: Client) -> str | None:
    """Secrets exist only for the methods that use one; server-generated, stored as a keyed hash, and
    for client_secret_jwt also sealed, as its HMAC key must be read back. A client switching to
    client_secret_jwt gets a new secret: the old one was never kept in a readable form."""
    method = ClientAuthMethod[row.token_auth_method]
    if method not in SECRET_AUTH_METHODS:
        row.secret_hash = row.encrypted_secret = None
        return None
    if method is not ClientAuthMethod.CLIENT_SECRET_JWT:
        row.encrypted_secret = None
        if row.secret_hash is not None:
            return None
    elif row.encrypted_secret is not None:
        return None
    return _set_new_secret(context, row)


def _set_new_secret(context: ManagementContext, row: Client) -> str:
    secret = context.hasher.generate_client_secret()
    _store_secret(context, row, secret)
    return secret


def _store_secret(context: ManagementContext, row: Client, secret: str) -> None:
    row.secret_hash = context.hasher.hash(secret)
    if row.token_auth_method == ClientAuthMethod.CLIENT_SECRET_JWT.name:
        row.encrypted_secret = context.secret_box.seal(secret)
