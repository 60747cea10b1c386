"""Repositories: SQL only, one per aggregate, built on an ``AsyncSession`` the caller owns."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar, cast

from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import json_input
from app.core.fapi import apply_fapi_modes
from app.core.model import (
    AudiencePolicy,
    ClientAuthMethod,
    ClientRecord,
    ClientType,
    FapiMode,
    GrantType,
    ResponseType,
    ScopeDefinition,
    ServiceRecord,
)
from app.core.urls import default_issuer, default_par_endpoint
from app.db.cache import RecordCache
from app.db.engine import RequestConnection, driver_statement
from app.db.models import CLIENT_ALIAS_INDEX, Client, PushedRequest, Service, ServiceAccessToken

# FOR SHARE ("share") and FOR NO KEY UPDATE ("update") exclude each other; neither excludes the
# pushed-request writer's foreign-key checks (FOR KEY SHARE), which FOR UPDATE would.
RowLock = Literal["share", "update"]
RowT = TypeVar("RowT", Service, Client, ServiceAccessToken)
ServiceRowT = TypeVar("ServiceRowT", Client, ServiceAccessToken)


def locked(query: Select[RowT], lock: RowLock | None) -> Select[RowT]:
    """``query`` locking the rows it reads until the transaction ends (PostgreSQL; SQLite has no row
    locks and ignores it)."""
    if lock is None:
        return query
    return query.with_for_update(read=lock == "share", key_share=lock == "update")


class Repository(Generic[RowT]):
    """What the management repositories share: a session the caller owns, adding rows, and pages of rows
    oldest first."""

    model: type[RowT]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: RowT) -> RowT:
        self.session.add(row)
        await self.session.flush()
        return row

    async def _page(self, *conditions: ColumnElement[bool], start: int, end: int) -> tuple[Sequence[RowT], int]:
        total = await self.session.scalar(select(func.count()).select_from(self.model).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(self.model)
            .where(*conditions)
            .order_by(self.model.created_at, self.model.id)
            .offset(start)
            .limit(max(end - start, 0))
        )
        return rows.all(), total


class ServiceScopedRepository(Repository[ServiceRowT]):
    """Rows that belong to one service (clients, access tokens)."""

    def _of(self, service_id: int, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
        return and_(self.model.service_id == service_id, *conditions)


class ServiceRepository(Repository[Service]):
    model = Service

    async def get_or_none(self, service_id: int) -> Service | None:
        return await self.session.get(Service, service_id)

    async def get(self, service_id: int, *, lock: RowLock | None = None) -> Service | None:
        """``get_or_none``, or ``lock`` when a lock is asked for."""
        return await (
            self.get_or_none(service_id) if lock is None else self.lock(service_id, exclusive=lock == "update")
        )

    async def lock(self, service_id: int, *, exclusive: bool) -> Service | None:
        """The service as it is now, locked until the transaction ends: a call that checks its clients
        against the service (or the service against its clients) and then writes must not interleave with
        a call changing the other side. Clients take it shared (several may register at once), a change
        of the service exclusively.

        SQLite has no row locks: a no-op UPDATE, as the transaction's first write, takes the database's
        write lock (waiting up to its busy_timeout), so the reads that follow see the latest commit and
        no other writer commits before this transaction does."""
        query = select(Service)
        if self.session.get_bind().dialect.name == "sqlite":
            unchanged = {"modified_at": _services.c.modified_at}  # not the key: no foreign-key checks
            await self.session.execute(update(_services).where(_services.c.id == service_id).values(unchanged))
        else:
            query = locked(query, "update" if exclusive else "share")
        rows = await self.session.scalars(
            query.where(Service.id == service_id).execution_options(populate_existing=True)
        )
        return rows.one_or_none()

    async def list(self, *, start: int, end: int) -> tuple[Sequence[Service], int]:
        return await self._page(start=start, end=end)

    async def delete(self, service: Service) -> None:
        # Explicit deletes so that SQLite without foreign-key enforcement behaves like PostgreSQL.
        for table in (PushedRequest, Client, ServiceAccessToken):
            await self.session.execute(delete(table).where(table.service_id == service.id))
        await self.session.delete(service)


class ServiceTokenRepository(ServiceScopedRepository[ServiceAccessToken]):
    model = ServiceAccessToken

    async def get_service_id_by_digest(self, token_digest: str) -> int | None:
        return await self.session.scalar(
            select(ServiceAccessToken.service_id).where(
                ServiceAccessToken.token_digest == token_digest, ServiceAccessToken.revoked_at.is_(None)
            )
        )

    async def list(self, service_id: int) -> Sequence[ServiceAccessToken]:
        rows = await self.session.scalars(
            select(ServiceAccessToken).where(self._of(service_id)).order_by(ServiceAccessToken.created_at)
        )
        return rows.all()

    async def revoke(self, *, service_id: int, token_id: int, now: datetime) -> bool:
        result = await self.session.execute(
            update(ServiceAccessToken)
            .where(self._of(service_id, ServiceAccessToken.id == token_id, ServiceAccessToken.revoked_at.is_(None)))
            .values(revoked_at=now)
        )
        return bool(getattr(result, "rowcount", 0))


def client_identifier(identifier: str) -> int | str | None:
    """What a request's client identifier names: a numeric client id (canonical decimal only), an alias,
    or nothing (None) when it cannot name any client."""
    if identifier.isascii() and identifier.isdigit():
        # Canonical decimal within BIGINT only: "0123" names nothing, and a longer number cannot be
        # bound (nor, past 4300 digits, even converted by int()).
        if len(identifier) > 19 or str(int(identifier)) != identifier or int(identifier) > 2**63 - 1:
            return None
        return int(identifier)
    if "\x00" in identifier:
        return None  # PostgreSQL text cannot hold NUL; no alias has one (app/core/registration.py)
    return identifier


def client_lookup(service_id: int, identifier: str) -> ColumnElement[bool] | None:
    """The client a request names (``client_identifier``) within one service, as a condition."""
    named = client_identifier(identifier)
    if named is None:
        return None
    if isinstance(named, int):
        return and_(Client.service_id == service_id, Client.id == named)
    return and_(Client.service_id == service_id, Client.client_id_alias == named)


class ClientRepository(ServiceScopedRepository[Client]):
    model = Client

    async def get_or_none(self, service_id: int, identifier: str, *, lock: RowLock | None = None) -> Client | None:
        """By numeric client id (canonical decimal only) or by alias, within one service. Locked (NO KEY
        UPDATE: pushes of the client go on meanwhile), so that a concurrent deletion either waits for this
        transaction or is seen by it (None), never removes the row under a pending UPDATE."""
        condition = client_lookup(service_id, identifier)
        if condition is None:
            return None
        return await self.session.scalar(locked(select(Client).where(condition), lock))

    async def alias_taken(self, service_id: int, alias: str, *, except_id: int | None = None) -> bool:
        query = select(Client.id).where(self._of(service_id, Client.client_id_alias == alias))
        if except_id is not None:
            query = query.where(Client.id != except_id)
        return await self.session.scalar(query) is not None

    async def list(self, service_id: int, *, start: int, end: int) -> tuple[Sequence[Client], int]:
        return await self._page(self._of(service_id), start=start, end=end)

    async def ids_not_using(self, service_id: int, methods: Iterable[str], *, limit: int) -> Sequence[int]:
        """Up to ``limit`` clients of the service whose token auth method is none of ``methods``."""
        rows = await self.session.scalars(
            select(Client.id)
            .where(self._of(service_id, Client.token_auth_method.not_in(list(methods))))
            .order_by(Client.id)
            .limit(limit)
        )
        return rows.all()

    async def delete(self, client: Client) -> None:
        await self.session.execute(delete(PushedRequest).where(PushedRequest.client_id == client.id))
        await self.session.delete(client)


def alias_index_violated(error: IntegrityError) -> bool:
    """Whether a write broke the one-alias-per-service unique index: two calls giving one alias at once
    may both pass ``ClientRepository.alias_taken`` before either commits."""
    constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)  # PostgreSQL
    if constraint is not None:
        return bool(constraint == CLIENT_ALIAS_INDEX)
    return str(error.orig) == "UNIQUE constraint failed: client.service_id, client.client_id_alias"  # SQLite


class PushedRequestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count_live(self, now: datetime) -> int:
        return (
            await self.session.scalar(
                select(func.count()).select_from(PushedRequest).where(PushedRequest.expires_at > now)
            )
            or 0
        )

    async def purge_expired(self, *, before: datetime, batch_size: int) -> int:
        """Delete up to ``batch_size`` expired rows; a short transaction per batch keeps locks brief."""
        expired = (
            select(PushedRequest.reference_hash)
            .where(PushedRequest.expires_at <= before)
            .limit(batch_size)
            .scalar_subquery()
        )
        result = await self.session.execute(delete(PushedRequest).where(PushedRequest.reference_hash.in_(expired)))
        return int(getattr(result, "rowcount", 0) or 0)


# The statements of the hot paths (push, resolve, consume), built once: building a statement and
# computing its cache key cost a resolve more CPU than running it (bench/RESULTS.md); those of pushed
# requests are in ``app.db.pushed_requests``.
_clients = cast(Table, Client.__table__)
_services = cast(Table, Service.__table__)
_tokens = cast(Table, ServiceAccessToken.__table__)
READ_CLIENT_BY_ID = select(*_clients.c).where(
    _clients.c.service_id == bindparam("service_id"), _clients.c.id == bindparam("client")
)
READ_CLIENT_BY_ALIAS = select(*_clients.c).where(
    _clients.c.service_id == bindparam("service_id"), _clients.c.client_id_alias == bindparam("client")
)
READ_SERVICE = select(*_services.c).where(_services.c.id == bindparam("service_id"))
READ_TOKEN_SERVICE = select(_tokens.c.service_id).where(
    _tokens.c.token_digest == bindparam("token_digest"), _tokens.c.revoked_at.is_(None)
)
# Resolve and consume read the client fresh, each time: on PostgreSQL on the driver connection
# (``app.db.engine.DriverStatements``), a third of the CPU of SQLAlchemy's AsyncConnection (bench/RESULTS.md).
DRIVER_READ_CLIENT_BY_ID = driver_statement(READ_CLIENT_BY_ID)
DRIVER_READ_CLIENT_BY_ALIAS = driver_statement(READ_CLIENT_BY_ALIAS)
ClientRow = namedtuple("ClientRow", [column.key for column in _clients.c])  # type: ignore[misc]  # noqa: PYI024
REPLACE_SECRET_HASH = (
    update(_clients)
    .where(_clients.c.id == bindparam("client_id"), _clients.c.secret_hash == bindparam("imported_hash"))
    .values(secret_hash=bindparam("keyed_hash"))
)


class SqlClients:
    """``app.core.ports.ClientDirectory`` and ``SecretHashStore`` of one request, on its connection
    (autocommit, Core statements: the ORM's sessions and unit of work cost a push more CPU than the
    database did). A push reads through the cache (``clients``, ``app.db.cache``); resolve and consume
    read fresh, without one (PAR-33: they apply the client's current registration)."""

    __slots__ = ("_cache", "_connection")

    def __init__(
        self, connection: RequestConnection, *, clients: RecordCache[tuple[int, str], ClientRecord] | None = None
    ) -> None:
        self._connection = connection
        self._cache = clients

    async def get_client(self, service_id: int, client_identifier: str) -> ClientRecord | None:
        """From the cache when it holds the client, else read (and cached)."""
        key = (service_id, client_identifier)
        cached = self._cache.get(key) if self._cache is not None else None
        if cached is not None:
            return cached
        client = await self._read(service_id, client_identifier)
        if client is not None and self._cache is not None:
            self._cache.put(key, client)
        return client

    async def _read(self, service_id: int, client_identifier_text: str) -> ClientRecord | None:
        """The client a request names (``client_identifier``), read with a Core statement."""
        named = client_identifier(client_identifier_text)
        if named is None:
            return None
        parameters = {"service_id": service_id, "client": named}
        driver = await self._connection.driver()
        if driver is not None:
            found = await driver.first(
                DRIVER_READ_CLIENT_BY_ID if isinstance(named, int) else DRIVER_READ_CLIENT_BY_ALIAS, parameters
            )
            # client_record reads no time: the driver's need no conversion to UTC here
            return client_record(cast(Client, ClientRow._make(found))) if found is not None else None
        statement = READ_CLIENT_BY_ID if isinstance(named, int) else READ_CLIENT_BY_ALIAS
        connection = await self._connection.get()
        row = (await connection.execute(statement, parameters)).first()
        return client_record(cast(Client, row)) if row is not None else None  # a Row with the model's names

    async def release(self) -> None:
        await self._connection.release()

    async def replace_secret_hash(self, client: ClientRecord, imported_hash: str, keyed_hash: str) -> str | None:
        """One conditional UPDATE, atomic on its own, on SQLite and PostgreSQL alike."""
        connection = await self._connection.get()
        replaced = await connection.execute(
            REPLACE_SECRET_HASH, {"client_id": client.id, "imported_hash": imported_hash, "keyed_hash": keyed_hash}
        )
        stored: str | None = keyed_hash
        if replaced.rowcount != 1:  # updated, rehashed by a concurrent push, or deleted meanwhile
            stored = await connection.scalar(select(_clients.c.secret_hash).where(_clients.c.id == client.id))
        if self._cache is not None:  # the next push reads the keyed hash, not the slow one again
            for identifier in (str(client.id), client.alias):
                if identifier is not None:
                    self._cache.discard((client.service_id, identifier))
        return stored


async def find_service_row(request_connection: RequestConnection, service_id: int) -> Service | None:
    connection = await request_connection.get()
    row = (await connection.execute(READ_SERVICE, {"service_id": service_id})).first()
    return cast(Service, row) if row is not None else None  # a Row with the model's attribute names


async def find_service_id_by_token(request_connection: RequestConnection, token_digest: str) -> int | None:
    """The service a live (unrevoked) service access token belongs to."""
    connection = await request_connection.get()
    return (await connection.execute(READ_TOKEN_SERVICE, {"token_digest": token_digest})).scalar_one_or_none()


# --- rows to domain records -------------------------------------------------------------------------


def service_record(
    row: Service,
    *,
    public_base_url: str,
    default_duration: int,
    default_session_duration: int,
    default_max_state_length: int,
    default_max_nonce_length: int,
    default_dpop_nonce_duration: int,
) -> ServiceRecord:
    """The service as the protocol rules see it: defaults filled in, and its FAPI modes applied on top of
    the stored settings (``app.core.fapi``)."""
    stored = ServiceRecord(
        id=row.id,
        name=row.name,
        issuer=row.issuer or default_issuer(public_base_url, row.id),
        pushed_auth_req_endpoint=row.pushed_auth_req_endpoint or default_par_endpoint(public_base_url, row.id),
        token_endpoint=row.token_endpoint,
        client_assertion_audience_policy=AudiencePolicy(row.client_assertion_audience_policy),
        pushed_auth_req_duration=row.pushed_auth_req_duration or default_duration,
        authorization_session_duration=row.authorization_session_duration or default_session_duration,
        consume_request_uri_on_resolve=row.consume_request_uri_on_resolve,
        par_required=row.par_required,
        supported_scopes=tuple(_scope(entry) for entry in row.supported_scopes),
        supported_response_types=frozenset(ResponseType[name] for name in row.supported_response_types),
        supported_token_auth_methods=frozenset(ClientAuthMethod[name] for name in row.supported_token_auth_methods),
        pkce_required=row.pkce_required,
        pkce_s256_required=row.pkce_s256_required,
        max_state_length=row.max_state_length or default_max_state_length,
        max_nonce_length=row.max_nonce_length or default_max_nonce_length,
        supported_authorization_details_types=frozenset(row.supported_authorization_details_types),
        request_object_required=row.request_object_required,
        dpop_nonce_required=row.dpop_nonce_required,
        dpop_nonce_duration=row.dpop_nonce_duration or default_dpop_nonce_duration,
        allow_unregistered_pushed_redirect_uris=row.allow_unregistered_pushed_redirect_uris,
    )
    return apply_fapi_modes(stored, {FapiMode[name] for name in row.fapi_modes})


def client_record(row: Client) -> ClientRecord:
    return ClientRecord(
        id=row.id,
        service_id=row.service_id,
        alias=row.client_id_alias,
        client_type=ClientType[row.client_type],
        token_auth_method=ClientAuthMethod[row.token_auth_method],
        secret_hash=row.secret_hash,
        redirect_uris=tuple(row.redirect_uris),
        response_types=frozenset(ResponseType[name] for name in row.response_types),
        grant_types=frozenset(GrantType[name] for name in row.grant_types),
        requestable_scopes=frozenset(row.requestable_scopes) if row.requestable_scopes is not None else None,
        par_required=row.par_required,
        request_object_required=row.request_object_required,
        pkce_required=row.pkce_required,
        pkce_s256_required=row.pkce_s256_required,
        dpop_required=row.dpop_required,
        token_auth_sign_alg=row.token_auth_sign_alg,
        request_sign_alg=row.request_sign_alg,
        authorization_details_types=frozenset(row.authorization_details_types),
        jwks=_stored_jwks(row.jwks),
        jwks_uri=row.jwks_uri,
        encrypted_secret=row.encrypted_secret,
        tls_client_auth_subject_dn=row.tls_client_auth_subject_dn,
        tls_client_auth_san_dns=row.tls_client_auth_san_dns,
        tls_client_auth_san_uri=row.tls_client_auth_san_uri,
        tls_client_auth_san_ip=row.tls_client_auth_san_ip,
        tls_client_auth_san_email=row.tls_client_auth_san_email,
    )


def _stored_jwks(text: str | None) -> dict[str, Any] | None:
    """The registered JWKS; one that no longer parses (registered before ``app.core.json_input``
    checked it) is no keys, so the client's assertions fail as ``invalid_client`` instead of a 500."""
    if not text:
        return None
    try:
        document = json_input.loads(text)
    except json_input.JsonInputError:
        return None
    return document if isinstance(document, dict) else None


def _scope(entry: dict[str, Any]) -> ScopeDefinition:
    return ScopeDefinition(
        name=entry["name"], description=entry.get("description"), default_entry=bool(entry.get("defaultEntry"))
    )
