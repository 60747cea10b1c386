"""Authlete-shaped management API: services (admin token), service access tokens, clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, Depends, Request, Response
from pydantic.alias_generators import to_camel
from sqlalchemy.exc import IntegrityError

from app.api.bodies import SafeJsonRoute
from app.api.deps import (
    IdPath,
    PageQuery,
    StateDep,
    authorize_service_call,
    require_admin,
)
from app.api.schemas import (
    API_ERRORS,
    ClientExtension,
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
    epoch_millis,
)
from app.core.errors import ApiBadRequest, ApiConflict, ApiNotFound
from app.core.model import (
    FAPI2_AUTH_METHODS,
    SECRET_AUTH_METHODS,
    AudiencePolicy,
    ClientAuthMethod,
    ClientType,
    FapiMode,
    GrantType,
    ResponseType,
)
from app.core.registration import (
    FAPI2_METHOD_NAMES,
    resolve_client_type_and_method,
    validate_alias,
    validate_client_authentication,
    validate_endpoint_url,
    validate_fapi2_client,
    validate_issuer,
    validate_jwks,
    validate_redirect_uri,
    validate_request_sign_alg,
)
from app.core.secrets import HashCostLimits, UnusableHash, client_secret_problem, new_numeric_id
from app.core.urls import default_issuer, default_par_endpoint
from app.db.models import Client, Service, ServiceAccessToken
from app.db.repositories import ClientRepository, ServiceRepository, ServiceTokenRepository, alias_index_violated
from app.state import AppState, utc_now


async def no_store(response: Response) -> None:
    """Answers here may show a secret or token once; none may be cached (RFC 9111 §5.2.2.5)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


# A change that commits drops this replica's record caches (``AppState.forget_records``), so its pushes see
# it from the next one on. Only then: a refused or read-only call (even an unauthenticated one) must not let
# anyone empty the caches that every push relies on. Creations need none: unknown ids are never cached.
router = APIRouter(
    prefix="/api",
    tags=["Management API"],
    dependencies=[Depends(no_store)],
    responses=API_ERRORS,
    route_class=SafeJsonRoute,
)
AdminDep = Depends(require_admin)
MAX_PAGE = 1000

DEFAULT_RESPONSE_TYPES = [ResponseType.CODE]
DEFAULT_GRANT_TYPES = [GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN]
DEFAULT_AUTH_METHODS = list(ClientAuthMethod)
TLS_FIELDS = (
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
)


def _page(start: int, end: int | None) -> tuple[int, int]:
    end = start + 5 if end is None else end  # Authlete's default page
    if start < 0 or end < start or end - start > MAX_PAGE:
        raise ApiBadRequest(f"start and end must satisfy 0 <= start <= end <= start + {MAX_PAGE}")
    return start, end


# --- services -----------------------------------------------------------------------------------------


def service_out(state: AppState, row: Service) -> ServiceOut:
    record = state.service_record(row)
    return ServiceOut(
        api_key=row.id,
        service_name=row.name,
        description=row.description,
        issuer=record.issuer,
        authorization_endpoint=row.authorization_endpoint,
        token_endpoint=row.token_endpoint,
        pushed_auth_req_endpoint=record.pushed_auth_req_endpoint,
        pushed_auth_req_duration=record.pushed_auth_req_duration,
        authorization_session_duration=record.authorization_session_duration,
        consume_request_uri_on_resolve=row.consume_request_uri_on_resolve,
        client_assertion_audience_policy=row.client_assertion_audience_policy,
        client_assertion_aud_restricted_to_issuer=record.client_assertion_audience_policy is AudiencePolicy.FAPI2,
        supported_authorization_details_types=list(row.supported_authorization_details_types),
        request_object_required=row.request_object_required,
        dpop_nonce_required=row.dpop_nonce_required,
        dpop_nonce_duration=record.dpop_nonce_duration,
        fapi_modes=list(row.fapi_modes),
        allow_unregistered_pushed_redirect_uris=row.allow_unregistered_pushed_redirect_uris,
        par_required=row.par_required,
        supported_scopes=row.supported_scopes,
        supported_response_types=list(row.supported_response_types),
        supported_grant_types=list(row.supported_grant_types),
        supported_token_auth_methods=list(row.supported_token_auth_methods),
        pkce_required=row.pkce_required,
        pkce_s256_required=row.pkce_s256_required,
        max_state_length=record.max_state_length,
        max_nonce_length=record.max_nonce_length,
        created_at=epoch_millis(row.created_at),
        modified_at=epoch_millis(row.modified_at),
    )


def apply_service_fields(row: Service, body: ServiceIn, *, public_base_url: str) -> None:
    """Copy the fields the caller gave onto ``row``: absent and null ones stay as they are (the SDKs send
    every field), an empty string clears one."""
    if body.service_name is not None:
        row.name = body.service_name
    if body.description is not None:
        row.description = body.description or None
    # A read-modify-write that sends back the derived default keeps it derived, so it goes on following
    # PAR_PUBLIC_BASE_URL.
    derived = {
        "issuer": default_issuer(public_base_url, row.id),
        "pushed_auth_req_endpoint": default_par_endpoint(public_base_url, row.id),
    }
    for field in ("issuer", "authorization_endpoint", "token_endpoint", "pushed_auth_req_endpoint"):
        value = getattr(body, field)
        if value is None:
            continue
        if value:
            value = validate_issuer(value) if field == "issuer" else validate_endpoint_url(to_camel(field), value)
        setattr(row, field, None if value == derived.get(field) else value or None)
    for field in (
        "pushed_auth_req_duration",
        "authorization_session_duration",
        "max_state_length",
        "max_nonce_length",
        "dpop_nonce_duration",
    ):
        value = getattr(body, field)
        if value is not None:
            setattr(row, field, value or None)  # 0 = the server default
    for flag in (
        "par_required",
        "pkce_required",
        "pkce_s256_required",
        "consume_request_uri_on_resolve",
        "request_object_required",
        "dpop_nonce_required",
        "allow_unregistered_pushed_redirect_uris",
    ):
        if getattr(body, flag) is not None:
            setattr(row, flag, getattr(body, flag))
    if body.supported_authorization_details_types is not None:
        row.supported_authorization_details_types = list(dict.fromkeys(body.supported_authorization_details_types))
    if body.fapi_modes is not None:
        row.fapi_modes = [mode.name for mode in body.fapi_modes]
    policy = body.client_assertion_audience_policy
    restricted = body.client_assertion_aud_restricted_to_issuer
    if restricted is not None:
        implied = AudiencePolicy.FAPI2 if restricted else AudiencePolicy.RFC9126
        if policy is not None and policy != implied.value:
            raise ApiBadRequest(
                f"clientAssertionAudRestrictedToIssuer={str(restricted).lower()} contradicts "
                f"clientAssertionAudiencePolicy={policy}"
            )
        policy = implied.value
    if policy is not None:
        row.client_assertion_audience_policy = policy
    if body.supported_scopes is not None:
        row.supported_scopes = [scope.model_dump(by_alias=True) for scope in body.supported_scopes]
    if body.supported_response_types is not None:
        row.supported_response_types = [rt.name for rt in body.supported_response_types]
    if body.supported_grant_types is not None:
        row.supported_grant_types = [gt.name for gt in body.supported_grant_types]
    if body.supported_token_auth_methods is not None:
        for method in body.supported_token_auth_methods:
            resolve_client_type_and_method(None, method)  # refuses methods this server cannot verify yet
        row.supported_token_auth_methods = [m.name for m in body.supported_token_auth_methods]


async def create_service(state: AppState, body: ServiceIn) -> ServiceCreated:
    """Shared by the API and the CLI: the service and its first access token in one transaction."""
    now = utc_now()
    row = Service(
        id=new_numeric_id(),
        name=body.service_name or "par-server service",
        par_required=False,
        supported_scopes=[],
        supported_response_types=[rt.name for rt in DEFAULT_RESPONSE_TYPES],
        supported_grant_types=[gt.name for gt in DEFAULT_GRANT_TYPES],
        supported_token_auth_methods=[m.name for m in DEFAULT_AUTH_METHODS],
        pkce_required=False,
        pkce_s256_required=False,
        consume_request_uri_on_resolve=False,
        supported_authorization_details_types=[],
        request_object_required=False,
        dpop_nonce_required=False,
        fapi_modes=[],
        allow_unregistered_pushed_redirect_uris=False,
        created_at=now,
        modified_at=now,
    )
    apply_service_fields(row, body, public_base_url=state.settings.public_base_url)
    token = state.hasher.generate_service_token()
    async with state.sessions.begin() as session:
        await ServiceRepository(session).add(row)
        await ServiceTokenRepository(session).add(
            service_id=row.id,
            token_digest=state.hasher.lookup_digest(token),
            description="created with the service",
            now=now,
        )
    return ServiceCreated(**service_out(state, row).model_dump(), service_access_token=token)


@router.post(
    "/service/create",
    dependencies=[AdminDep],
    response_model=ServiceCreated,
    response_model_exclude_none=True,
    summary="Create a service; answers with its first access token, shown once",
)
async def service_create(body: ServiceIn, state: StateDep) -> ServiceCreated:
    return await create_service(state, body)


@router.get(
    "/service/get/list", dependencies=[AdminDep], response_model=ServiceListOut, response_model_exclude_none=True
)
async def service_list(state: StateDep, start: PageQuery = 0, end: PageQuery | None = None) -> ServiceListOut:
    start, end = _page(start, end)
    async with state.sessions() as session:
        rows, total = await ServiceRepository(session).list(start=start, end=end)
    return ServiceListOut(start=start, end=end, total_count=total, services=[service_out(state, r) for r in rows])


@router.get("/{service_id}/service/get", response_model=ServiceOut, response_model_exclude_none=True)
async def service_get(service_id: IdPath, request: Request, state: StateDep) -> ServiceOut:
    async with state.sessions() as session:
        row = await authorize_service_call(request, state, session, service_id)
    return service_out(state, row)


@router.post(
    "/{service_id}/service/update",
    response_model=ServiceOut,
    response_model_exclude_none=True,
    summary="Update a service: fields that are absent or null keep their value",
)
async def service_update(service_id: IdPath, body: ServiceIn, request: Request, state: StateDep) -> ServiceOut:
    async with state.sessions.begin() as session:
        # Locked: a client registering meanwhile must see either the old profile or the new one, and
        # the check of the clients below must see every client registered under the old one.
        row = await authorize_service_call(request, state, session, service_id, lock="update")
        was_fapi2 = FapiMode.FAPI2_SECURITY.name in row.fapi_modes
        apply_service_fields(row, body, public_base_url=state.settings.public_base_url)
        if not was_fapi2 and FapiMode.FAPI2_SECURITY.name in row.fapi_modes:
            await _refuse_clients_fapi2_excludes(ClientRepository(session), service_id)
        row.modified_at = utc_now()
    state.forget_records()
    return service_out(state, row)


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


@router.delete(
    "/{service_id}/service/delete",
    dependencies=[AdminDep],
    status_code=204,
    summary="Delete a service with its clients, tokens and pushed requests",
)
async def service_delete(service_id: IdPath, state: StateDep) -> Response:
    async with state.sessions.begin() as session:
        repository = ServiceRepository(session)
        # Locked: calls adding rows to the service (clients, tokens) finish first, or find it gone.
        row = await repository.lock(service_id, exclusive=True)
        if row is None:
            raise ApiNotFound(f"service {service_id} does not exist", result_code="A003202")
        await repository.delete(row)
    state.forget_records()
    return Response(status_code=204)


# --- service access tokens ----------------------------------------------------------------------------


def token_out(row: ServiceAccessToken) -> ServiceTokenOut:
    return ServiceTokenOut(
        id=row.id,
        description=row.description,
        created_at=epoch_millis(row.created_at),
        revoked_at=epoch_millis(row.revoked_at) if row.revoked_at else None,
    )


async def create_service_token(state: AppState, service_id: int, description: str | None) -> ServiceTokenCreated:
    token = state.hasher.generate_service_token()
    now = utc_now()
    async with state.sessions.begin() as session:
        # Locked (shared): a concurrent deletion of the service waits, or is seen here (404).
        if await ServiceRepository(session).lock(service_id, exclusive=False) is None:
            raise ApiNotFound(f"service {service_id} does not exist", result_code="A003202")
        token_id = await ServiceTokenRepository(session).add(
            service_id=service_id, token_digest=state.hasher.lookup_digest(token), description=description, now=now
        )
    return ServiceTokenCreated(
        id=token_id, description=description, created_at=epoch_millis(now), revoked_at=None, access_token=token
    )


@router.post(
    "/{service_id}/service/token/create",
    dependencies=[AdminDep],
    response_model=ServiceTokenCreated,
    summary="Issue another service access token (shown once)",
)
async def service_token_create(
    service_id: IdPath, state: StateDep, body: ServiceTokenIn | None = None
) -> ServiceTokenCreated:
    return await create_service_token(state, service_id, body.description if body else None)


@router.get("/{service_id}/service/token/get/list", dependencies=[AdminDep], response_model=list[ServiceTokenOut])
async def service_token_list(service_id: IdPath, state: StateDep) -> list[ServiceTokenOut]:
    async with state.sessions() as session:
        if await ServiceRepository(session).get_or_none(service_id) is None:
            raise ApiNotFound(f"service {service_id} does not exist", result_code="A003202")
        return [token_out(row) for row in await ServiceTokenRepository(session).list(service_id)]


@router.delete(
    "/{service_id}/service/token/delete/{token_id}",
    dependencies=[AdminDep],
    status_code=204,
    summary="Revoke a service access token",
)
async def service_token_revoke(service_id: IdPath, token_id: IdPath, state: StateDep) -> Response:
    async with state.sessions.begin() as session:
        if not await ServiceTokenRepository(session).revoke(service_id=service_id, token_id=token_id, now=utc_now()):
            raise ApiNotFound(f"no active token {token_id} in service {service_id}")
    state.forget_records()
    return Response(status_code=204)


# --- clients ------------------------------------------------------------------------------------------


def client_out(row: Client, *, secret: str | None = None) -> ClientOut:
    return ClientOut(
        client_id=row.id,
        client_id_alias=row.client_id_alias,
        client_id_alias_enabled=row.client_id_alias is not None,
        client_secret=secret,
        client_name=row.client_name,
        description=row.description,
        client_type=row.client_type,
        token_auth_method=row.token_auth_method,
        redirect_uris=list(row.redirect_uris),
        response_types=list(row.response_types),
        grant_types=list(row.grant_types),
        jwks=row.jwks,
        jwks_uri=row.jwks_uri,
        token_auth_sign_alg=row.token_auth_sign_alg,
        request_sign_alg=row.request_sign_alg,
        tls_client_auth_subject_dn=row.tls_client_auth_subject_dn,
        tls_client_auth_san_dns=row.tls_client_auth_san_dns,
        tls_client_auth_san_uri=row.tls_client_auth_san_uri,
        tls_client_auth_san_ip=row.tls_client_auth_san_ip,
        tls_client_auth_san_email=row.tls_client_auth_san_email,
        par_required=row.par_required,
        request_object_required=row.request_object_required,
        pkce_required=row.pkce_required,
        pkce_s256_required=row.pkce_s256_required,
        dpop_required=row.dpop_required,
        authorization_details_types=list(row.authorization_details_types),
        extension=ClientExtension(
            requestable_scopes_enabled=row.requestable_scopes is not None,
            requestable_scopes=list(row.requestable_scopes or []),
        ),
        created_at=epoch_millis(row.created_at),
        modified_at=epoch_millis(row.modified_at),
    )


async def apply_client_fields(row: Client, body: ClientIn, *, service: Service, clients: ClientRepository) -> None:
    """Copy the given fields onto ``row`` (absent and null ones stay, an empty string clears one) and check
    that the result is coherent."""
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
    for field in ("client_name", "description"):
        if getattr(body, field) is not None:
            setattr(row, field, getattr(body, field) or None)
    if body.redirect_uris is not None:
        row.redirect_uris = [validate_redirect_uri(uri) for uri in body.redirect_uris]
    if body.response_types is not None:
        row.response_types = [rt.name for rt in body.response_types]
    if body.grant_types is not None:
        row.grant_types = [gt.name for gt in body.grant_types]
    if body.jwks is not None:
        row.jwks = validate_jwks(body.jwks) if body.jwks else None
    if body.jwks_uri is not None:
        row.jwks_uri = validate_endpoint_url("jwksUri", body.jwks_uri) if body.jwks_uri else None
    for flag in ("par_required", "request_object_required", "pkce_required", "pkce_s256_required", "dpop_required"):
        if getattr(body, flag) is not None:
            setattr(row, flag, getattr(body, flag))
    if body.authorization_details_types is not None:
        row.authorization_details_types = body.authorization_details_types
    if body.extension is not None and body.extension.requestable_scopes_enabled is not None:
        row.requestable_scopes = (
            list(body.extension.requestable_scopes or []) if body.extension.requestable_scopes_enabled else None
        )
    for field in ("token_auth_sign_alg", "request_sign_alg", *TLS_FIELDS):
        value = getattr(body, field)
        if value is not None:
            setattr(row, field, value or None)
    validate_request_sign_alg(row.request_sign_alg)
    validate_client_authentication(
        method,
        sign_alg=row.token_auth_sign_alg,
        has_jwks=row.jwks is not None,
        has_jwks_uri=row.jwks_uri is not None,
        tls_attributes={to_camel(field): getattr(row, field) for field in TLS_FIELDS},
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


async def create_client(
    state: AppState, service: Service, body: ClientIn, clients: ClientRepository
) -> tuple[Client, str | None]:
    now = utc_now()
    row = Client(
        id=new_numeric_id(),
        service_id=service.id,
        client_type=None,
        token_auth_method=None,
        redirect_uris=[],
        response_types=[rt.name for rt in DEFAULT_RESPONSE_TYPES],
        grant_types=[GrantType.AUTHORIZATION_CODE.name],
        requestable_scopes=None,
        authorization_details_types=[],
        par_required=False,
        request_object_required=False,
        pkce_required=False,
        pkce_s256_required=False,
        dpop_required=False,
        created_at=now,
        modified_at=now,
    )
    await apply_client_fields(row, body, service=service, clients=clients)
    secret = _given_secret(state, row, body) or _new_secret_if_needed(state, row)
    await clients.add(row)
    return row, secret


def _given_secret(state: AppState, row: Client, body: ClientIn) -> str | None:
    """A client adopting this server keeps its secret: given in clear (``clientSecret``), or as the hash
    its previous server kept (``clientSecretHash``), replaced by our keyed hash on its first successful
    authentication (``app.core.client_auth``). Returns the secret given in clear, if any."""
    secret, imported_hash = body.client_secret or None, body.client_secret_hash or None
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
        limits = HashCostLimits(
            max_bcrypt_cost=state.settings.imported_bcrypt_max_cost,
            max_pbkdf2_rounds=state.settings.imported_pbkdf2_max_rounds,
        )
        try:
            row.secret_hash = state.hasher.importable_hash(imported_hash, limits)
        except UnusableHash as problem:
            raise ApiBadRequest(str(problem)) from None
        return None
    assert secret is not None
    _set_secret(state, row, secret)
    return secret


def _set_secret(state: AppState, row: Client, secret: str) -> None:
    """Store a secret given by the caller, once it passes the strength rule (README "Adopting existing
    clients")."""
    settings = state.settings
    if problem := client_secret_problem(
        secret, min_length=settings.client_secret_min_length, max_length=settings.client_secret_max_length
    ):
        raise ApiBadRequest(problem)
    row.secret_hash = state.hasher.hash(secret)
    if row.token_auth_method == ClientAuthMethod.CLIENT_SECRET_JWT.name:
        row.encrypted_secret = state.secret_box.seal(secret)


def _new_secret_if_needed(state: AppState, row: Client) -> str | None:
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
    return _set_new_secret(state, row)


def _set_new_secret(state: AppState, row: Client) -> str:
    secret = state.hasher.generate_client_secret()
    row.secret_hash = state.hasher.hash(secret)
    if row.token_auth_method == ClientAuthMethod.CLIENT_SECRET_JWT.name:
        row.encrypted_secret = state.secret_box.seal(secret)
    return secret


@router.post(
    "/{service_id}/client/create",
    response_model=ClientOut,
    response_model_exclude_none=True,
    summary="Register a client; a generated clientSecret is returned once",
)
async def client_create(service_id: IdPath, body: ClientIn, request: Request, state: StateDep) -> ClientOut:
    with alias_race_refused(body):
        async with state.sessions.begin() as session:
            # Locked (shared) while the client is checked against the service's profile and written.
            service = await authorize_service_call(request, state, session, service_id, lock="share")
            row, secret = await create_client(state, service, body, ClientRepository(session))
    return client_out(row, secret=secret)


async def _client_or_404(
    clients: ClientRepository, service_id: int, client_id: str, *, for_update: bool = False
) -> Client:
    row = await clients.get_or_none(service_id, client_id, for_update=for_update)
    if row is None:
        raise ApiNotFound(f"client {client_id[:40]} does not exist in this service", result_code="A001213")
    return row


@router.get("/{service_id}/client/get/list", response_model=ClientListOut, response_model_exclude_none=True)
async def client_list(
    service_id: IdPath,
    request: Request,
    state: StateDep,
    start: PageQuery = 0,
    end: PageQuery | None = None,
) -> ClientListOut:
    start, end = _page(start, end)
    async with state.sessions() as session:
        await authorize_service_call(request, state, session, service_id)
        rows, total = await ClientRepository(session).list(service_id, start=start, end=end)
    return ClientListOut(start=start, end=end, total_count=total, clients=[client_out(r) for r in rows])


@router.get("/{service_id}/client/get/{client_id}", response_model=ClientOut, response_model_exclude_none=True)
async def client_get(service_id: IdPath, client_id: str, request: Request, state: StateDep) -> ClientOut:
    async with state.sessions() as session:
        await authorize_service_call(request, state, session, service_id)
        row = await _client_or_404(ClientRepository(session), service_id, client_id)
    return client_out(row)


@router.post(
    "/{service_id}/client/update/{client_id}",
    response_model=ClientOut,
    response_model_exclude_none=True,
    summary="Update a client: fields that are absent or null keep their value",
)
async def client_update(
    service_id: IdPath, client_id: str, body: ClientIn, request: Request, state: StateDep
) -> ClientOut:
    with alias_race_refused(body):
        async with state.sessions.begin() as session:
            service = await authorize_service_call(request, state, session, service_id, lock="share")
            clients = ClientRepository(session)
            row = await _client_or_404(clients, service_id, client_id, for_update=True)
            await apply_client_fields(row, body, service=service, clients=clients)
            # A change to a secret-based method issues a secret (shown in this answer only).
            secret = _new_secret_if_needed(state, row)
            row.modified_at = utc_now()
    state.forget_records()
    return client_out(row, secret=secret)


@router.delete("/{service_id}/client/delete/{client_id}", status_code=204)
async def client_delete(service_id: IdPath, client_id: str, request: Request, state: StateDep) -> Response:
    async with state.sessions.begin() as session:
        await authorize_service_call(request, state, session, service_id, lock="share")
        clients = ClientRepository(session)
        await clients.delete(await _client_or_404(clients, service_id, client_id, for_update=True))
    state.forget_records()
    return Response(status_code=204)


@router.get(
    "/{service_id}/client/secret/refresh/{client_id}",
    response_model=ClientSecretRefreshOut,
    response_model_exclude_none=True,
    summary="Replace the client secret; the new one is shown once and the old one stops working",
)
@router.post(
    "/{service_id}/client/secret/refresh/{client_id}",
    response_model=ClientSecretRefreshOut,
    response_model_exclude_none=True,
    summary="Replace the client secret; the new one is shown once and the old one stops working",
)
async def client_secret_refresh(
    service_id: IdPath, client_id: str, request: Request, state: StateDep
) -> ClientSecretRefreshOut:
    async with state.sessions.begin() as session:
        await authorize_service_call(request, state, session, service_id, lock="share")
        row = await _client_or_404(ClientRepository(session), service_id, client_id, for_update=True)
        if ClientAuthMethod[row.token_auth_method] not in SECRET_AUTH_METHODS:
            raise ApiBadRequest(f"client {row.id} uses {row.token_auth_method}, which has no secret")
        secret = _set_new_secret(state, row)
        row.modified_at = utc_now()
    state.forget_records()
    return ClientSecretRefreshOut(
        result_code="A086001",
        result_message=f"[A086001] The client secret of client {row.id} was refreshed.",
        new_client_secret=secret,
    )


@router.post(
    "/{service_id}/client/secret/update/{client_id}",
    response_model=ClientSecretRefreshOut,
    response_model_exclude_none=True,
    summary="Set the client secret to a given value; the old one stops working",
)
async def client_secret_update(
    service_id: IdPath, client_id: str, body: ClientSecretUpdateIn, request: Request, state: StateDep
) -> ClientSecretRefreshOut:
    async with state.sessions.begin() as session:
        await authorize_service_call(request, state, session, service_id, lock="share")
        row = await _client_or_404(ClientRepository(session), service_id, client_id, for_update=True)
        if ClientAuthMethod[row.token_auth_method] not in SECRET_AUTH_METHODS:
            raise ApiBadRequest(f"client {row.id} uses {row.token_auth_method}, which has no secret")
        _set_secret(state, row, body.client_secret)
        row.modified_at = utc_now()
    state.forget_records()
    return ClientSecretRefreshOut(
        result_code="A087001",
        result_message=f"[A087001] The client secret of client {row.id} was updated.",
        new_client_secret=body.client_secret,
    )
