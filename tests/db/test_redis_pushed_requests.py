"""The Redis store of pushed requests (app/db/redis_pushed_requests.py), against a real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.errors import InvalidRequest
from app.core.model import PushedRequestRecord
from app.core.secrets import new_numeric_id
from app.db.redis_pushed_requests import (
    KEY_PREFIX,
    RedisPushedRequests,
    ReferenceCollision,
    encode,
    key_expiry_ms,
    micros,
    pushed_request_key,
    redis_client,
)

SERVICE = new_numeric_id()
CLIENT = 2**63 - 2  # past 2^53: must not lose precision anywhere (Lua numbers are doubles)


def make_store(redis: Redis) -> RedisPushedRequests:
    return RedisPushedRequests(redis, max_batch=500, concurrency=4, queue_timeout=5)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url, timeout=5, max_connections=100)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{KEY_PREFIX}{SERVICE}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def store(redis: Redis) -> RedisPushedRequests:
    return make_store(redis)


@pytest.fixture
def now() -> datetime:
    """Within the coming second, at .123456 s past a whole second: the expiry's rounding shows."""
    present = datetime.now(UTC)
    return present.replace(microsecond=123456) + timedelta(seconds=present.microsecond > 123456)


def record(now: datetime, *, expires_in: float = 60, client_id: int = CLIENT, **fields: Any) -> PushedRequestRecord:
    values: dict[str, Any] = {
        "reference_hash": secrets.token_hex(32),
        "service_id": SERVICE,
        "client_id": client_id,
        "parameters": "response_type=code&scope=openid+caf%C3%A9&redirect_uri=https%3A%2F%2Fclient.example.org%2Fcb",
        # What JSON can hold, including what Lua's cjson would change (empty arrays, 63-bit integers).
        "request": {
            "scopes": ["openid", "café"],
            "authorizationDetails": [],
            "claims": {},
            "maxAge": 2**62 + 1,
            "ratio": 0.1,
            "none": None,
            "nested": [{"a": [1, [2, []]]}],
        },
        "created_at": now,
        "expires_at": now + timedelta(seconds=expires_in),
    }
    values.update(fields)
    return PushedRequestRecord(**values)


async def test_round_trip_keeps_every_field(store: RedisPushedRequests, now: datetime) -> None:
    pushed = record(now)
    await store.add_record(pushed)
    assert await store.get(SERVICE, pushed.reference_hash) == pushed


# Requests the value's JSON is written for by orjson, and by json.dumps (app.db.redis_pushed_requests.encode).
REQUESTS = {
    "unicode, escapes and numbers (orjson)": {
        "state": 'été 😀 "q" \\ / \u2028\u2029 \x01\x1f\x7f \ufeff',
        "n": [0, -1, 2**63 - 1, -(2**63), 2.5, -0.0, 1e16, 1e-7, 0.1, 1.7976931348623157e308],
        "flags": [True, False],
        "nested": {"": [], "a": {"b": [[{}]]}},
    },
    "null inside a string (json.dumps)": {"nullable": "null"},
    "an integer beyond 64 bits (json.dumps)": {"n": 2**70, "m": -(2**64)},
}


@pytest.mark.parametrize("request_json", REQUESTS.values(), ids=REQUESTS)
async def test_round_trip_keeps_every_value(store: RedisPushedRequests, now: datetime, request_json: Any) -> None:
    pushed = record(now, request=request_json, parameters="state=%C3%A9&u=été😀")
    await store.add_record(pushed)
    assert await store.get(SERVICE, pushed.reference_hash) == pushed


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused(now: datetime, number: float) -> None:
    """orjson would write them as null: encode must refuse them as json.dumps(allow_nan=False) did."""
    with pytest.raises(ValueError, match="JSON compliant"):
        encode(record(now, request={"n": [number]}))


async def test_a_request_json_cannot_hold_fails_its_own_push_only(
    store: RedisPushedRequests, redis: Redis, now: datetime
) -> None:
    """NaN (which validation keeps out) is refused for that push alone, before anything is stored; the
    pushes sharing its pipeline are stored."""
    poisoned = record(now, request={"amount": float("nan")})
    others = [record(now) for _ in range(4)]
    results = await asyncio.gather(
        *(store.add_record(item) for item in [*others[:2], poisoned, *others[2:]]), return_exceptions=True
    )
    assert isinstance(results[2], InvalidRequest)
    assert results[:2] + results[3:] == [True] * 4
    assert not await redis.exists(pushed_request_key(SERVICE, poisoned.reference_hash))


@pytest.mark.parametrize("body", [b'{"p":"","r":{"a":NaN},"c":0}', b'{"p":"","r":{"s":"\\ud800"},"c":0}', b"not json"])
async def test_a_stored_request_that_cannot_be_answered_with_reads_as_none(
    store: RedisPushedRequests, redis: Redis, now: datetime, body: bytes
) -> None:
    """What an earlier version could store is unusable, as an unknown request is: get and consume answer
    None (consume having deleted it, as it would a usable one), never an exception."""
    reference = secrets.token_hex(32)
    key = pushed_request_key(SERVICE, reference)
    expires = now + timedelta(seconds=60)
    await redis.set(key, f"{micros(expires)} 0 {CLIENT}\n".encode() + body, pxat=key_expiry_ms(expires))
    assert await store.get(SERVICE, reference) is None
    assert await store.consume(SERVICE, reference, client_id=CLIENT, now=now) is None
    assert await store.consume(SERVICE, reference, client_id=CLIENT, now=now) is None


async def test_the_key_expires_with_the_request(store: RedisPushedRequests, redis: Redis, now: datetime) -> None:
    """The key's expiry is the request's, rounded up to the millisecond (PXAT): nothing to purge."""
    pushed = record(now, expires_in=30)
    await store.add_record(pushed)
    key = pushed_request_key(SERVICE, pushed.reference_hash)
    assert await redis.pexpiretime(key) == key_expiry_ms(pushed.expires_at)
    whole_seconds = int(pushed.expires_at.replace(microsecond=0).timestamp())
    assert key_expiry_ms(pushed.expires_at) == whole_seconds * 1000 + 124  # .123456 s: rounded up
    assert 25_000 < await redis.pttl(key) <= 31_000  # now is up to a second ahead


async def test_a_taken_reference_is_never_overwritten(store: RedisPushedRequests, now: datetime) -> None:
    """SET NX: a collision fails the push (it cannot happen with 256-bit references, PAR-14)."""
    first = record(now)
    await store.add_record(first)
    with pytest.raises(ReferenceCollision):
        await store.add_record(dataclasses.replace(first, client_id=1, parameters="response_type=code"))
    assert await store.get(SERVICE, first.reference_hash) == first


async def test_requests_are_per_service(store: RedisPushedRequests, now: datetime) -> None:
    """Tenant isolation: another service neither sees, resolves nor consumes the request."""
    pushed = record(now)
    await store.add_record(pushed)
    other = SERVICE + 1
    assert await store.get(other, pushed.reference_hash) is None
    await store.mark_resolved(other, pushed.reference_hash, now=now, expires_at=now + timedelta(hours=1))
    assert await store.consume(other, pushed.reference_hash, client_id=CLIENT, now=now) is None
    assert await store.get(SERVICE, pushed.reference_hash) == pushed
    assert await store.get(other, pushed.reference_hash) is None  # mark_resolved created nothing


async def test_first_resolve_is_recorded_and_moves_the_expiry(
    store: RedisPushedRequests, redis: Redis, now: datetime
) -> None:
    """NOTE-02: the first resolve extends the validity, the key's expiry with it; later ones change nothing."""
    pushed = record(now, expires_in=60)
    await store.add_record(pushed)
    first, session_end = now + timedelta(seconds=10), now + timedelta(seconds=610, microseconds=1)
    await store.mark_resolved(SERVICE, pushed.reference_hash, now=first, expires_at=session_end)
    resolved = dataclasses.replace(pushed, resolved_at=first, expires_at=session_end)
    assert await store.get(SERVICE, pushed.reference_hash) == resolved
    assert await redis.pexpiretime(pushed_request_key(SERVICE, pushed.reference_hash)) == key_expiry_ms(session_end)
    await store.mark_resolved(
        SERVICE, pushed.reference_hash, now=first + timedelta(seconds=1), expires_at=session_end + timedelta(hours=1)
    )
    assert await store.get(SERVICE, pushed.reference_hash) == resolved


async def test_an_expired_request_is_neither_resolved_nor_consumed(store: RedisPushedRequests, now: datetime) -> None:
    """PAR-32: at its expiry instant, to the microsecond, the request is unusable."""
    pushed = record(now, expires_in=60)
    await store.add_record(pushed)
    await store.mark_resolved(
        SERVICE, pushed.reference_hash, now=pushed.expires_at, expires_at=pushed.expires_at + timedelta(hours=1)
    )
    assert await store.get(SERVICE, pushed.reference_hash) == pushed
    assert await store.consume(SERVICE, pushed.reference_hash, client_id=CLIENT, now=pushed.expires_at) is None
    just_before = pushed.expires_at - timedelta(microseconds=1)
    consumed = await store.consume(SERVICE, pushed.reference_hash, client_id=CLIENT, now=just_before)
    assert consumed == dataclasses.replace(pushed, expires_at=just_before, consumed_at=just_before)


async def test_consume_happens_once_among_concurrent_callers(
    store: RedisPushedRequests, redis_url: str, now: datetime
) -> None:
    """PAR-31 (RFC 9126 §7.3, one-time use): 20 consumers on 4 clients (replicas), one winner."""
    pushed = record(now)
    await store.add_record(pushed)
    replicas = [redis_client(redis_url, timeout=5, max_connections=100) for _ in range(4)]
    try:
        stores = [make_store(replica) for replica in replicas]
        results = await asyncio.gather(
            *(
                stores[n % 4].consume(SERVICE, pushed.reference_hash, client_id=CLIENT, now=now + timedelta(seconds=1))
                for n in range(20)
            )
        )
    finally:
        for replica in replicas:
            await replica.aclose()
    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    assert winners[0].consumed_at == winners[0].expires_at == now + timedelta(seconds=1)
    assert await store.get(SERVICE, pushed.reference_hash) is None  # consumed: gone, like an unknown one
    await store.mark_resolved(SERVICE, pushed.reference_hash, now=now, expires_at=now + timedelta(hours=1))
    assert await store.get(SERVICE, pushed.reference_hash) is None  # and not brought back


async def test_another_client_consumes_nothing(store: RedisPushedRequests, now: datetime) -> None:
    """PAR-16 (RFC 9126 §2.2): the binding is part of the script's condition; a wrong client changes nothing.
    Ids differing only below double precision are told apart."""
    pushed = record(now)
    await store.add_record(pushed)
    for intruder in (CLIENT - 1, CLIENT + 1, 1):
        assert await store.consume(SERVICE, pushed.reference_hash, client_id=intruder, now=now) is None
    assert await store.get(SERVICE, pushed.reference_hash) == pushed


async def test_concurrent_pushes_share_one_pipeline(
    store: RedisPushedRequests, redis: Redis, monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    """Every push is acknowledged by Redis before it returns, and the queued ones travel together."""
    pipelines = 0
    original: Callable[..., Pipeline] = redis.pipeline

    def counting(*args: Any, **kwargs: Any) -> Pipeline:
        nonlocal pipelines
        pipelines += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(redis, "pipeline", counting)
    pushed = [record(now) for _ in range(300)]
    await asyncio.gather(*(store.add_record(one) for one in pushed))
    assert pipelines == 1  # all 300 queued before the writer ran: one round trip
    values = await redis.mget([pushed_request_key(SERVICE, one.reference_hash) for one in pushed])
    assert all(value is not None for value in values)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_burst_beyond_the_connections_waits_for_one(redis_url: str) -> None:
    """More concurrent commands than PAR_REDIS_MAX_CONNECTIONS queue for a connection, not fail."""
    redis = redis_client(redis_url, timeout=5, max_connections=2)
    try:
        answers = await asyncio.gather(*(redis.get(f"par-test:burst:{number}") for number in range(200)))
        assert answers == [None] * 200
        assert len(redis.connection_pool._available_connections) <= 2
    finally:
        await redis.aclose()


async def test_a_command_waits_for_a_connection_at_most_the_timeout(redis_url: str) -> None:
    """Every connection held (by commands stuck on a frozen Redis, say): the next one fails after the
    timeout, as an unavailable Redis (503), rather than waiting for ever."""
    redis = redis_client(redis_url, timeout=0.2, max_connections=1)
    held = await redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RedisConnectionError):
            await redis.get("par-test:none")
        assert 0.15 <= loop.time() - started < 2
    finally:
        await redis.connection_pool.release(held)
        await redis.aclose()


async def test_redis_down_fails_every_operation(now: datetime) -> None:
    """Connection refused propagates (the API answers it 503, tests/api/test_redis_pushed_requests.py)."""
    redis = redis_client(f"redis://127.0.0.1:{closed_port()}/0", timeout=1, max_connections=100)
    store = make_store(redis)
    pushed = record(now)
    try:
        for operation in (
            store.add_record(pushed),
            store.get(SERVICE, pushed.reference_hash),
            store.mark_resolved(SERVICE, pushed.reference_hash, now=now, expires_at=now),
            store.consume(SERVICE, pushed.reference_hash, client_id=CLIENT, now=now),
        ):
            with pytest.raises(RedisConnectionError):
                await operation
    finally:
        await redis.aclose()


async def test_a_stuck_redis_times_out(now: datetime) -> None:
    """A Redis that accepts but never answers is bounded by PAR_REDIS_TIMEOUT_SECONDS."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = redis_client(f"redis://127.0.0.1:{port}/0", timeout=0.2, max_connections=100)
    try:
        with pytest.raises(RedisTimeoutError):
            await make_store(redis).add_record(record(now))
    finally:
        await redis.aclose()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
