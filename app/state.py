"""The composition root: ``build_state(settings)`` wires everything the server holds for its lifetime
(engine, stores, caches, the pushed-request writer, hasher, rate limits, metrics) into one ``AppState``,
used by the app (``app.main``) and the CLI (``app.cli``)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from limits.aio.storage import RedisStorage, Storage
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.api.client_address import TrustedProxies
from app.api.observability import Metrics
from app.api.rate_limit import RateLimits
from app.core import json_input, result_codes
from app.core.client_auth import PushContext, PushPolicy, SlowHashChecks
from app.core.client_keys import ClientKeys
from app.core.errors import InvalidClient
from app.core.model import ClientRecord, ServiceRecord
from app.core.params import ParameterBounds
from app.core.ports import PushedRequestStore, SecretHashStore
from app.core.secrets import SecretBox, SecretHasher
from app.db.cache import RecordCache
from app.db.engine import (
    RequestConnection,
    UncancelledCheck,
    autocommit,
    create_engine_from_settings,
    create_session_factory,
)
from app.db.models import Service
from app.db.pushed_requests import PushedRequestWriter, SqlPushedRequestStore, pushed_request_writer
from app.db.rate_limit_counters import SqlRateLimitStorage, SyncedCounters
from app.db.redis_pushed_requests import RedisPushedRequests, RedisPushedRequestStore, redis_client, redis_options
from app.db.replay import RedisReplayStore, SqlReplayStore
from app.db.repositories import SqlClients, find_service_id_by_token, find_service_row, service_record
from app.db.schema import SchemaRevisions, database_revisions, schema_revisions
from app.jwks_fetcher import JwksFetcher, JwksFetchError
from app.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hasher: SecretHasher
    secret_box: SecretBox
    jwks_fetcher: JwksFetcher
    replay_store: SqlReplayStore | RedisReplayStore
    metrics: Metrics
    schema: SchemaRevisions  # the migrations this code ships, for readiness
    rate_limits: RateLimits
    services: RecordCache[int, ServiceRecord]
    clients: RecordCache[tuple[int, str], ClientRecord]
    tokens: RecordCache[str, int]  # service access token digest -> its service
    writer: PushedRequestWriter[Any]
    redis: Redis | None = None  # PAR_REDIS_URL: one client for replay entries and pushed requests
    pushed_requests: RedisPushedRequests | None = None  # PAR_PUSHED_REQUEST_STORE=redis; None: the database
    clock: Callable[[], datetime] = utc_now  # replaceable so tests can stand at an expiry boundary
    # Derived from the fields above once, not per request (a push used to pay an HMAC for the nonce key).
    parameter_bounds: ParameterBounds = field(init=False)
    push_policy: PushPolicy = field(init=False)  # what a push's context holds but its connection-bound stores
    _autocommit_engine: AsyncEngine = field(init=False)  # the requests' connections (``request_connection``)
    schema_check: UncancelledCheck[frozenset[str]] = field(init=False)  # /readyz: the schema's revisions

    def __post_init__(self) -> None:
        settings = self.settings
        limits = ParameterBounds(
            max_parameters=settings.max_parameters,
            max_parameter_bytes=settings.max_parameter_bytes,
            max_total_bytes=settings.max_body_bytes,
        )
        push_policy = PushPolicy(
            hasher=self.hasher,
            secret_box=self.secret_box,
            clock_skew=timedelta(seconds=settings.clock_skew_seconds),
            max_assertion_lifetime=timedelta(seconds=settings.max_assertion_lifetime_seconds),
            dpop_nonce_key=hmac.new(settings.pepper_bytes, b"par-server dpop nonces", hashlib.sha256).digest(),
            dpop_max_age=timedelta(seconds=settings.dpop_proof_max_age_seconds),
            max_request_object_lifetime=timedelta(seconds=settings.max_request_object_lifetime_seconds),
            imported_hash_checks=SlowHashChecks(
                in_flight=settings.imported_hash_checks_in_flight, waiting=settings.imported_hash_checks_waiting
            ),
        )
        object.__setattr__(self, "parameter_bounds", limits)  # frozen: set once, here
        object.__setattr__(self, "push_policy", push_policy)
        object.__setattr__(self, "_autocommit_engine", autocommit(self.engine))
        object.__setattr__(self, "schema_check", UncancelledCheck(partial(database_revisions, self.engine)))

    def request_connection(self) -> RequestConnection:
        """The connection a push, resolve or consume uses (``async with``), checked out only if it needs
        one (``app.db.engine.RequestConnection``)."""
        return RequestConnection(self._autocommit_engine)

    def push_context_for(self, connection: RequestConnection, *, secret_hashes: SecretHashStore) -> PushContext:
        """The client authentication context of one push, recording replays on its connection and giving
        that connection back before fetching a client's keys (``client_keys_from``); ``secret_hashes`` is
        the push's ``client_directory``, which replaces imported hashes in the client cache too."""
        return PushContext(
            self.push_policy,
            secret_hashes,
            client_keys_from(self.jwks_fetcher, connection),
            self.replay_store.bound(connection),
        )

    async def aclose(self) -> None:
        await self.writer.aclose()  # its writers give their connections back before the pool closes
        await self.jwks_fetcher.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.rate_limits.storage.aclose()
        shared = self.rate_limits.storage.shared
        if isinstance(shared, RedisStorage):
            # limits has no close(); its redis-py bridge keeps the client in .storage (untyped).
            client: Redis = getattr(shared.bridge, "storage")  # noqa: B009
            await client.aclose()
        await self.engine.dispose()

    async def find_service(self, connection: RequestConnection, service_id: int) -> ServiceRecord | None:
        """The service as the protocol rules see it (cached, ``app.db.cache``); None if it does not exist."""
        service = self.services.get(service_id)
        if service is None:
            row = await find_service_row(connection, service_id)
            if row is None:
                return None
            service = self.service_record(row)
            self.services.put(service_id, service)
        return service

    async def find_token_service(self, connection: RequestConnection, token_digest: str) -> int | None:
        """The service a live service access token (by its lookup digest) acts for, cached (``app.db.cache``):
        a revoked token stops at once on the replica that revoked it and within ``PAR_RECORD_CACHE_SECONDS``
        on the others. None if no live token has that digest."""
        service_id = self.tokens.get(token_digest)
        if service_id is None:
            service_id = await find_service_id_by_token(connection, token_digest)
            if service_id is not None:
                self.tokens.put(token_digest, service_id)
        return service_id

    def client_directory(self, connection: RequestConnection, *, cached: bool) -> SqlClients:
        """The clients, from the database on the request's connection: through the cache for a push
        (``cached``), fresh for resolve and consume (PAR-33)."""
        return SqlClients(connection, clients=self.clients if cached else None)

    def pushed_request_store(self, connection: RequestConnection) -> PushedRequestStore:
        """The pushed requests of one request: in the database (added through the batched ``writer``), or
        in Redis (``pushed_requests``)."""
        if self.pushed_requests is not None:
            return RedisPushedRequestStore(connection, self.pushed_requests)
        return SqlPushedRequestStore(connection, self.writer)

    def forget_records(self) -> None:
        """After a management change: this replica sees it at once (others within the cache's ttl)."""
        self.services.clear()
        self.clients.clear()
        self.tokens.clear()

    def service_record(self, row: Service) -> ServiceRecord:
        return service_record(
            row,
            public_base_url=self.settings.public_base_url,
            default_duration=self.settings.default_pushed_auth_req_duration,
            default_session_duration=self.settings.default_authorization_session_duration,
            default_dpop_nonce_duration=self.settings.default_dpop_nonce_duration,
            default_max_state_length=self.settings.default_max_state_length,
            default_max_nonce_length=self.settings.default_max_nonce_length,
        )


def build_state(settings: Settings) -> AppState:
    """Everything the server holds for its lifetime, built from settings (used by the app and the CLI)."""
    json_input.set_max_depth(settings.max_json_depth)
    engine = create_engine_from_settings(settings)
    sessions = create_session_factory(engine)
    hasher = SecretHasher(settings.pepper_bytes)
    key = settings.secret_encryption_key_bytes
    secret_box = SecretBox(key) if key else SecretBox.derived_from_pepper(settings.pepper_bytes)
    fetcher = JwksFetcher(
        timeout_seconds=settings.jwks_fetch_timeout_seconds,
        max_bytes=settings.jwks_max_bytes,
        cache_ttl_seconds=settings.jwks_cache_seconds,
        refetch_min_interval_seconds=settings.jwks_refetch_min_interval_seconds,
        max_cache_entries=settings.jwks_cache_max_entries,
        allow_private_addresses=settings.jwks_allow_private_addresses,
    )
    redis = (
        redis_client(
            settings.redis_url,
            timeout=settings.redis_timeout_seconds,
            max_connections=settings.redis_max_connections,
        )
        if settings.redis_url
        else None
    )
    replay_store: SqlReplayStore | RedisReplayStore = (
        RedisReplayStore(redis) if redis is not None else SqlReplayStore(sessions)
    )
    pushed_requests = (
        RedisPushedRequests(
            redis,
            max_batch=settings.push_write_batch_max,
            concurrency=settings.push_write_concurrency,
            queue_timeout=settings.db_pool_timeout_seconds,
        )
        if redis is not None and settings.pushed_request_store == "redis"
        else None
    )
    metrics = Metrics()
    shared_counters: Storage = (
        RedisStorage(
            f"async+{settings.redis_url}", implementation="redispy", **redis_options(settings.redis_timeout_seconds)
        )
        if settings.redis_url
        else SqlRateLimitStorage(sessions, dialect=engine.dialect.name)
    )
    return AppState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        hasher=hasher,
        secret_box=secret_box,
        jwks_fetcher=fetcher,
        replay_store=replay_store,
        metrics=metrics,
        schema=_schema_revisions(),
        writer=pushed_request_writer(
            engine,
            max_batch=settings.push_write_batch_max,
            concurrency=settings.push_write_concurrency,
            queue_timeout=settings.db_pool_timeout_seconds,
            linger=settings.push_write_linger_seconds,
        ),
        redis=redis,
        pushed_requests=pushed_requests,
        services=RecordCache.from_settings(settings),
        clients=RecordCache.from_settings(settings),
        tokens=RecordCache.from_settings(settings),
        rate_limits=RateLimits(
            SyncedCounters(
                shared_counters,
                interval=settings.rate_limit_sync_seconds,
                max_counters=settings.rate_limit_max_counters,
            ),
            per_address=settings.rate_limit_per_address,
            per_client=settings.rate_limit_per_client,
            per_service_token=settings.rate_limit_per_service_token,
            failed_authentication=settings.rate_limit_failed_authentication,
            metrics=metrics,
            max_remembered_keys=settings.rate_limit_max_counters,
            trusted_proxies=TrustedProxies.parse(settings.trusted_proxies),
        ),
    )


def _schema_revisions() -> SchemaRevisions:
    try:
        return schema_revisions()
    except FileNotFoundError:
        return SchemaRevisions(frozenset(), frozenset())  # no migrations at hand: readiness reports them pending


def client_keys_from(fetcher: JwksFetcher, connection: RequestConnection) -> ClientKeys:
    """A client's public keys: its registered ``jwks``, or the document at its ``jwksUri``.

    A fetch (or a wait for another request's fetch of the same URI) can take the whole
    ``PAR_JWKS_FETCH_TIMEOUT_SECONDS`` at a server the client's registrant chose, and anyone can set one
    off with a made-up assertion: the request's pooled connection is given back first, so a slow
    ``jwksUri`` holds no connection that other requests (of any service) wait for. The request checks
    one out again if it still needs one (its replay entry)."""

    async def client_keys(client: ClientRecord, refresh: bool) -> dict[str, Any]:
        if client.jwks is not None:
            return client.jwks
        if client.jwks_uri is None:
            return {"keys": []}
        try:
            document = fetcher.cached(client.jwks_uri, refresh=refresh)
            if document is not None:
                return document
            await connection.release()
            return await fetcher.get(client.jwks_uri, refresh=refresh)
        except JwksFetchError as error:
            raise InvalidClient(
                f"the client's keys could not be fetched from its jwksUri: {error}",
                result_code=result_codes.CLIENT_KEYS_UNAVAILABLE,
                used_authorization_header=False,
            ) from error

    return client_keys
