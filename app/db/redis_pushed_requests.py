"""Pushed requests in Redis (``PAR_PUSHED_REQUEST_STORE=redis``), so that the service scales beyond one machine.

Why: every push is a write, and with replicas on one database that write is what the database spends
its time on. Redis keeps each pushed request under one key that expires with the request, so there is
nothing to purge and nothing to index. Services, clients and service access tokens stay in the
database; resolve and consume still read the client from there, fresh (PAR-33).

Guarantees, the same as the database store's for every caller:

* A push is answered only after Redis acknowledged its ``SET``: writes go through a batched writer
  (``app.db.batch_writer``: concurrent pushes share one pipeline round trip), so a 201 means Redis holds
  the request. Whether it survives a Redis restart is Redis's durability (``appendonly`` /
  ``appendfsync``), not ours: see README, "Redis for pushed requests".
* ``SET ... PXAT <expiry> NX``: the key expires when the request does (its expiry, rounded up to the
  millisecond), and a reference that already exists is never overwritten (an error, though it cannot
  happen with 256-bit random references; PAR-14).
* The key names the service: a request_uri is only known to the service that issued it (tenant
  isolation), as the database store's ``service_id`` condition does.
* ``mark_resolved`` and ``consume`` are Lua scripts, atomic in Redis: among any number of concurrent
  callers on any number of replicas exactly one consumes a request (PAR-31, RFC 9126 §7.3: "one-time
  use"), and the client binding is part of the script's condition (PAR-16, RFC 9126 §2.2: "MUST be
  bound to the client that posted the authorization request"), so a wrong client changes nothing.
  A consumed request is deleted: afterwards it is as unknown as an expired one, which the API
  answers identically (PAR-32).
* Time is the caller's ``now`` (the app's clock), compared with the stored expiry to the microsecond,
  never Redis's ``TIME``. The key's own expiry (Redis's clock) only reclaims memory; a Redis clock
  running ahead of the replicas' ends a request early by that much.
* The client is not bound by a foreign key: a client deleted through another replica can still push
  while this replica's cache holds it (``PAR_RECORD_CACHE_SECONDS``), but its requests cannot be
  resolved or consumed, since resolve and consume read the client fresh.
* The Redis client is built without retries: ``SET NX`` and ``consume`` are not idempotent, so a
  command whose reply was lost is not sent again; the caller gets a 503 (``app.api.errors``) instead.

The value is a short header line, then JSON of what never changes::

    <expires_at µs> <resolved_at µs, 0 if not resolved> <client id>\n{"p": parameters, "r": request, "c": created_at µs}

so the scripts read and rewrite the header without decoding the request (Lua's cjson would turn
empty JSON arrays into objects and 63-bit ids into doubles). Microseconds since the epoch stay below
2^53 until the year 2255, so Lua compares them exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry  # redis.retry.Retry is for the synchronous client
from redis.backoff import NoBackoff

from app.core import json_input
from app.core.errors import InvalidRequest
from app.core.model import PushedRequestRecord
from app.db.batch_writer import BatchWriter, Waiting
from app.db.engine import RequestConnection

KEY_PREFIX = "par:pushed:"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

# KEYS[1]: the request. ARGV: now (µs), the new expires_at (µs), the key's new expiry (ms).
# The database store's condition: not resolved, not consumed (a consumed request is gone), not expired.
MARK_RESOLVED = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local newline = string.find(value, '\\n', 1, true)
local expires, resolved, client = string.match(string.sub(value, 1, newline - 1), '^(%d+) (%d+) (%d+)$')
if resolved ~= '0' or tonumber(expires) <= tonumber(ARGV[1]) then return 0 end
local header = ARGV[2] .. ' ' .. ARGV[1] .. ' ' .. client
redis.call('SET', KEYS[1], header .. string.sub(value, newline), 'PXAT', ARGV[3])
return 1
"""

# KEYS[1]: the request (its service is in the key). ARGV: the client id, now (µs).
# Only the client it is bound to, only before it expires, only once: the value, then the key is gone.
CONSUME = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local newline = string.find(value, '\\n', 1, true)
local expires, resolved, client = string.match(string.sub(value, 1, newline - 1), '^(%d+) (%d+) (%d+)$')
if client ~= ARGV[1] or tonumber(expires) <= tonumber(ARGV[2]) then return false end
redis.call('DEL', KEYS[1])
return value
"""


class ReferenceCollision(RuntimeError):
    """``SET NX`` found the key taken: never overwritten. Cannot happen with random references."""


class PendingSet(NamedTuple):
    key: str
    value: bytes
    expiry_ms: int


def redis_client(url: str, *, timeout: float, max_connections: int) -> Redis:
    """The one Redis client of a process (replay entries and pushed requests): every connect and
    command bounded by ``timeout`` (``PAR_REDIS_TIMEOUT_SECONDS``), and no retries (this module's
    docstring).

    At most ``max_connections`` (``PAR_REDIS_MAX_CONNECTIONS``) at once; a command finding them all in use
    waits up to ``timeout`` for one, as a request waits for a pooled database connection. redis-py's own
    pool refuses it at once (``MaxConnectionsError``), which answered a burst of concurrent resolves 503."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, **redis_options(timeout)
    )
    return Redis.from_pool(pool)


def redis_options(timeout: float) -> dict[str, Any]:
    """Every connect and every reply (a command, a pipeline's, a Lua script's) bounded by ``timeout``,
    and no retries: redis-py's defaults (a 5 s timeout, then ten retries with backoff) would stretch a
    stuck Redis's bound many times over and could run a command that was not idempotent twice."""
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}


def pushed_request_key(service_id: int, reference_hash: str) -> str:
    return f"{KEY_PREFIX}{service_id}:{reference_hash}"


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (aware datetimes only)."""
    return (moment - EPOCH) // MICROSECOND


def key_expiry_ms(expires_at: datetime) -> int:
    """The key's PXAT: the request's expiry rounded up, so the key never goes before the request does."""
    return -(-micros(expires_at) // 1000)


def encode(record: PushedRequestRecord) -> bytes:
    """The key's value (this module's docstring). The JSON is orjson's where it holds what json.dumps would
    write, in a tenth of the time (bench/RESULTS.md): the same values, in UTF-8 where json.dumps wrote
    ``\\u`` escapes. What orjson refuses (an integer beyond 64 bits, an unpaired surrogate), and any text
    with a null (orjson writes NaN and Infinity as null), is written by json.dumps, as before."""
    header = f"{micros(record.expires_at)} {micros(record.resolved_at) if record.resolved_at else 0} {record.client_id}"
    fields = {"p": record.parameters, "r": record.request, "c": micros(record.created_at)}
    body: bytes | None
    try:
        body = orjson.dumps(fields)
    except orjson.JSONEncodeError:
        body = None
    if body is None or b"null" in body:
        # ValueError for NaN: JSON (RFC 8259 §6) has no such number, and decode refuses it
        body = json.dumps(fields, separators=(",", ":"), allow_nan=False).encode()
    return f"{header}\n".encode() + body


def decode(service_id: int, reference_hash: str, value: bytes) -> PushedRequestRecord | None:
    """The stored request, or None when it holds what could not be answered with (an unpaired surrogate,
    ``NaN``: stored before pushes were checked with ``app.core.json_input``); such a request is as
    unusable as an unknown one, and answered the same way, never with a 500."""
    header, _, body = value.partition(b"\n")
    expires, resolved, client_id = (int(field) for field in header.split(b" "))
    try:
        data = json_input.loads(body)
    except json_input.JsonInputError:
        return None
    return PushedRequestRecord(
        reference_hash=reference_hash,
        service_id=service_id,
        client_id=client_id,
        parameters=data["p"],
        request=data["r"],
        created_at=EPOCH + data["c"] * MICROSECOND,
        expires_at=EPOCH + expires * MICROSECOND,
        resolved_at=EPOCH + resolved * MICROSECOND if resolved else None,
    )


class RedisPushedRequestWriter(BatchWriter[PendingSet, None]):
    """Concurrent pushes' ``SET NX PXAT`` commands in one pipeline (``transaction=False``: no MULTI,
    each command stands alone). ``add`` answers True once Redis acknowledged the caller's command; a
    Redis error, or a taken key (``ReferenceCollision``), propagates to that caller."""

    def __init__(self, redis: Redis, *, max_batch: int, concurrency: int, queue_timeout: float) -> None:
        super().__init__(max_batch=max_batch, concurrency=concurrency, queue_timeout=queue_timeout)
        self._redis = redis

    def _holding(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # each pipeline takes a connection from the client's pool

    async def _write(self, batch: Sequence[Waiting[PendingSet]], held: None) -> None:  # noqa: ARG002
        async with self._redis.pipeline(transaction=False) as pipeline:
            for waiting in batch:
                pipeline.set(waiting.item.key, waiting.item.value, pxat=waiting.item.expiry_ms, nx=True)
            replies = await pipeline.execute(raise_on_error=False)
        for waiting, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                waiting.fail(reply)
            elif not reply:
                waiting.fail(ReferenceCollision("a pushed request with this reference exists"))
            else:
                waiting.answer(True)


class RedisPushedRequests:
    """The pushed requests of every service in one Redis (this module's docstring), shared by the
    process's requests, each of which uses it through its ``RedisPushedRequestStore``."""

    def __init__(self, redis: Redis, *, max_batch: int, concurrency: int, queue_timeout: float) -> None:
        self._redis = redis
        self._writer = RedisPushedRequestWriter(
            redis, max_batch=max_batch, concurrency=concurrency, queue_timeout=queue_timeout
        )
        self._mark_resolved = redis.register_script(MARK_RESOLVED)
        self._consume = redis.register_script(CONSUME)

    @property
    def writer(self) -> RedisPushedRequestWriter:
        """The batched writer of the pushes (observed by ``app.tracing`` when tracing is on)."""
        return self._writer

    async def add_record(self, record: PushedRequestRecord) -> bool:
        """Store the request: True once Redis acknowledged it; errors propagate. No foreign key refuses it:
        a client deleted through another replica can push until this replica's cache forgets it
        (``PAR_RECORD_CACHE_SECONDS``), but nobody can resolve or consume what it pushed (they read the
        client fresh)."""
        try:
            value = encode(record)
        except ValueError:  # what validation keeps out; refused for this push alone
            raise InvalidRequest("the pushed request holds a value that cannot be stored") from None
        await self._writer.add(
            PendingSet(
                pushed_request_key(record.service_id, record.reference_hash), value, key_expiry_ms(record.expires_at)
            )
        )
        return True

    async def get(self, service_id: int, reference_hash: str) -> PushedRequestRecord | None:
        value = cast(bytes | None, await self._redis.get(pushed_request_key(service_id, reference_hash)))  # raw bytes
        return decode(service_id, reference_hash, value) if value is not None else None

    async def mark_resolved(self, service_id: int, reference_hash: str, *, now: datetime, expires_at: datetime) -> None:
        """Record the first resolve and move the expiry (the key's too); a concurrent first resolve or a
        consume that got there first makes this a no-op."""
        await self._mark_resolved(
            keys=[pushed_request_key(service_id, reference_hash)],
            args=[micros(now), micros(expires_at), key_expiry_ms(expires_at)],
        )

    async def consume(
        self, service_id: int, reference_hash: str, *, client_id: int, now: datetime
    ) -> PushedRequestRecord | None:
        """The request, once, to its own client before it expires; None (and nothing changed) otherwise.
        Returned as the database store returns it: consumed now, expiring now."""
        value = await self._consume(
            keys=[pushed_request_key(service_id, reference_hash)], args=[client_id, micros(now)]
        )
        record = decode(service_id, reference_hash, value) if value is not None else None
        return dataclasses.replace(record, expires_at=now, consumed_at=now) if record is not None else None


class RedisPushedRequestStore:
    """``app.core.ports.PushedRequestStore`` of one request, in Redis (``RedisPushedRequests``). Nothing
    here needs the request's database connection: each operation gives it back first, so that none is
    held while Redis answers."""

    __slots__ = ("_connection", "_requests")

    def __init__(self, connection: RequestConnection, requests: RedisPushedRequests) -> None:
        self._connection = connection
        self._requests = requests

    async def add(self, record: PushedRequestRecord) -> bool:
        await self._connection.release()
        return await self._requests.add_record(record)

    async def get(self, service_id: int, reference_hash: str) -> PushedRequestRecord | None:
        await self._connection.release()
        return await self._requests.get(service_id, reference_hash)

    async def mark_resolved(self, service_id: int, reference_hash: str, *, now: datetime, expires_at: datetime) -> None:
        await self._connection.release()
        await self._requests.mark_resolved(service_id, reference_hash, now=now, expires_at=expires_at)

    async def consume(
        self, service_id: int, reference_hash: str, *, client_id: int, now: datetime
    ) -> PushedRequestRecord | None:
        await self._connection.release()
        return await self._requests.consume(service_id, reference_hash, client_id=client_id, now=now)
