"""Rate limiting at both front doors (PAR-24): 429 with Retry-After, shared across replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage

from app.api.observability import Metrics
from app.api.rate_limit import Caller, RateLimits
from app.db.models import Client
from app.db.rate_limit_counters import SqlRateLimitStorage, SyncedCounters
from app.main import create_app
from app.settings import Settings
from tests.conftest import ADMIN_TOKEN, BASE_URL, make_settings
from tests.factories import ClientHandle, Factory, ServiceHandle, par_params


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        rate_limit_per_address="8/minute",
        rate_limit_per_client="5/minute",
        rate_limit_failed_authentication="3/minute",
    )


def assert_throttled(response: httpx.Response, *, api: bool = False) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    body = response.json()
    if api:
        assert set(body) == {"resultCode", "resultMessage"}
    else:
        assert body["error"] == "temporarily_unavailable" and response.headers["cache-control"] == "no-store"


async def test_per_client_budget(client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle) -> None:
    for _ in range(5):
        assert (
            await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        ).status_code == 201
    assert_throttled(await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic()))


async def test_per_address_budget_spans_clients(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    """Public clients prove nothing: their pushes spend the budget of the address they come from."""
    clients = [await factory.client(service, clientType="PUBLIC") for _ in range(3)]
    statuses = [
        (await client.post(service.par_path, data=par_params(c))).status_code for c in clients for _ in range(3)
    ]
    assert statuses[:8] == [201] * 8 and statuses[8] == 429


async def test_failed_authentication_locks_out_harder(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Three wrong secrets spend the failed-authentication budget: even the right secret then waits."""
    for _ in range(3):
        assert (
            await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic("wrong"))
        ).status_code == 401
    assert_throttled(await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic()))


async def test_backend_api_is_limited_with_a_result_error(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    body = {
        "parameters": urlencode(par_params(basic_client)),
        "clientId": str(basic_client.id),
        "clientSecret": basic_client.secret,
    }
    for _ in range(5):
        answer = await client.post(f"/api/{service.id}/pushed_auth_req", headers=service.bearer, json=body)
        assert answer.json()["action"] == "CREATED"
    assert_throttled(
        await client.post(f"/api/{service.id}/pushed_auth_req", headers=service.bearer, json=body), api=True
    )


async def synced(*apps: FastAPI) -> None:
    """What the replicas' background tasks have done within two PAR_RATE_LIMIT_SYNC_SECONDS: each
    added its hits to the shared counters, then each read the totals back."""
    for _ in range(2):
        for application in apps:
            await application.state.par.rate_limits.storage.sync()


async def test_budgets_are_shared_by_replicas(
    app: FastAPI, second_replica_app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Each replica counts its own hits at once and learns the others' at each sync."""
    replicas = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=BASE_URL) for a in (app, second_replica_app)
    ]
    for n in range(5):
        replica = replicas[n % 2]
        assert (
            await replica.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        ).status_code == 201
        await synced(app, second_replica_app)
    for replica in replicas:
        assert_throttled(
            await replica.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        )


async def test_between_syncs_replicas_overshoot_by_at_most_what_the_others_admitted(
    app: FastAPI, second_replica_app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """The documented bound: without a sync, each replica admits up to the budget on its own; after one,
    both refuse until the window ends."""
    replicas = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=BASE_URL) for a in (app, second_replica_app)
    ]
    admitted = 0
    for replica in replicas:
        for _ in range(6):
            response = await replica.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
            admitted += response.status_code == 201
    assert admitted == 10  # 5 per replica: each saw only its own hits
    await synced(app, second_replica_app)
    for replica in replicas:
        assert_throttled(
            await replica.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        )


async def test_refusals_are_counted(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    for _ in range(6):
        await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    text = (await client.get("/metrics")).text
    assert 'par_rate_limited_total{front_door="rfc9126",scope="client"} 1.0' in text


@pytest.fixture
async def redis_replicas(database_url: str, redis_url: str) -> AsyncIterator[list[FastAPI]]:
    settings = make_settings(database_url, redis_url=redis_url, rate_limit_per_client="2/minute")
    apps: list[FastAPI] = [create_app(settings) for _ in range(2)]
    await apps[0].state.par.rate_limits.storage.reset()
    yield apps
    for app in apps:
        await app.state.par.aclose()


async def test_redis_storage_is_shared(redis_replicas: list[FastAPI]) -> None:
    apps = redis_replicas
    first, second = (httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=BASE_URL) for a in apps)
    factory = Factory(first, admin_token=ADMIN_TOKEN)
    service = await factory.service()
    par_client = await factory.client(service)
    for replica in (first, second):
        assert (
            await replica.post(service.par_path, data=par_params(par_client), headers=par_client.basic())
        ).status_code == 201
        await synced(*apps)
    assert_throttled(await first.post(service.par_path, data=par_params(par_client), headers=par_client.basic()))


async def test_a_stranger_cannot_lock_a_client_out(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Client ids are public: failures elsewhere, and unauthenticated requests, spend nothing of the client's."""
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as stranger:
        statuses = [
            (
                await stranger.post(
                    service.par_path, data=par_params(basic_client), headers=basic_client.basic("guess")
                )
            ).status_code
            for _ in range(6)
        ]
    assert statuses[:3] == [401] * 3 and statuses[3:] == [429] * 3
    for _ in range(5):
        assert (
            await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
        ).status_code == 201


async def test_remembered_counter_keys_are_bounded() -> None:
    """Counter keys are remembered to save rebuilding them, but never more than the bound: a flood of
    distinct addresses or client ids cannot grow the process."""
    limits = RateLimits(
        SyncedCounters(MemoryStorage(), interval=60),
        per_address="100/minute",
        per_client="100/minute",
        failed_authentication="100/minute",
        metrics=Metrics(),
        max_remembered_keys=10,
    )
    for number in range(200):
        caller = Caller("rfc9126", 1, f"10.0.0.{number}", f"client-{number}")
        assert await limits.admit(caller) is None
        await limits.record(caller, authenticated_confidential=False, failed_authentication=False)
    assert sum(counters.size for counters in limits._keys.values()) <= 10
    refused = Caller("rfc9126", 1, "10.9.9.9", None)
    for _ in range(100):
        assert await limits.admit(refused) is None
        await limits.record(refused, authenticated_confidential=False, failed_authentication=False)
    assert await limits.admit(refused) is not None  # counting is unaffected by forgetting keys
    await limits.storage.aclose()


async def test_keys_from_long_distinct_client_ids_stay_bounded() -> None:
    """Thousands of pushes naming distinct 16 KB client ids (each failing to authenticate) keep a
    bounded number of counters, each with a key of bounded length: claimed ids are digested."""
    counters = SyncedCounters(MemoryStorage(), interval=60, max_counters=100)
    counters.start = lambda: None  # type: ignore[method-assign]  # no background sync: the bound alone holds
    limits = RateLimits(
        counters,
        per_address="",
        per_client="100/minute",
        failed_authentication="1000000/minute",
        metrics=Metrics(),
        max_remembered_keys=100,
    )
    for number in range(3000):
        caller = Caller("rfc9126", 1, f"10.{number // 250}.{number % 250}.1", f"{number:05d}" + "x" * 16_000)
        assert await limits.admit(caller) is None
        await limits.record(caller, authenticated_confidential=False, failed_authentication=True)
    assert not limits._keys  # too long to be worth remembering: digested on each push instead
    assert len(counters._views) <= 100 and len(counters._pending) <= 100
    kept = [*counters._views, *counters._pending]
    assert kept and max(len(key) for key in kept) < 200


# --- the defaults never throttle legitimate traffic ------------------------------------------------

DEFAULT_BUDGETS = {
    name: Settings.model_fields[name].default
    for name in (
        "rate_limit_per_address",
        "rate_limit_per_client",
        "rate_limit_per_service_token",
        "rate_limit_failed_authentication",
    )
    if name in Settings.model_fields
}


@asynccontextmanager
async def server(database_url: str, **settings: object) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Factory]]:
    application = create_app(make_settings(database_url, **{**DEFAULT_BUDGETS, **settings}))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE_URL) as http:
            yield application, http, Factory(http, admin_token=ADMIN_TOKEN)
    finally:
        await application.state.par.aclose()


def from_address(application: FastAPI, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application, client=(address, 4000)), base_url=BASE_URL)


def backend_push(client: ClientHandle, secret: str | None = None) -> dict[str, str]:
    return {
        "parameters": urlencode(par_params(client)),
        "clientId": str(client.id),
        "clientSecret": secret if secret is not None else client.secret or "",
    }


async def test_defaults_admit_a_busy_confidential_client_at_the_backend(database_url: str) -> None:
    """Well over 300 pushes a minute by one client, relayed by its authorization server: all created."""
    async with server(database_url) as (_, http, factory):
        service = await factory.service()
        par_client = await factory.client(service)
        path = f"/api/{service.id}/pushed_auth_req"
        for _ in range(700):
            answer = await http.post(path, headers=service.bearer, json=backend_push(par_client))
            assert answer.status_code == 200 and answer.json()["action"] == "CREATED", answer.text


async def test_defaults_admit_a_busy_public_client_from_many_addresses(database_url: str) -> None:
    """A single-page or mobile app has one client id for all its users: their pushes are not one budget."""
    async with server(database_url) as (application, http, factory):
        service = await factory.service()
        public = await factory.client(service, clientType="PUBLIC")
        for number in range(350):
            async with from_address(application, f"198.51.{number // 200}.{number % 200}") as user:
                response = await user.post(service.par_path, data=par_params(public))
                assert response.status_code == 201, response.text


async def test_defaults_admit_a_confidential_client_pushing_from_one_address(database_url: str) -> None:
    """A confidential client's server pushes from one address beyond the address budget: its own
    credential admits it; another client at that address is not charged for it."""
    async with server(database_url, rate_limit_per_address="5/minute") as (_, http, factory):
        service = await factory.service()
        par_client = await factory.client(service)
        for _ in range(20):
            assert (
                await http.post(service.par_path, data=par_params(par_client), headers=par_client.basic())
            ).status_code == 201
        public = await factory.client(service, clientType="PUBLIC")
        statuses = [(await http.post(service.par_path, data=par_params(public))).status_code for _ in range(6)]
        assert statuses == [201] * 5 + [429]


async def test_failures_relayed_by_the_backend_do_not_lock_the_service_out(database_url: str) -> None:
    """Anyone can type wrong secrets at an authorization server's PAR endpoint, which relays them here:
    that locks out no client of the service, neither the one named nor any other."""
    async with server(database_url) as (_, http, factory):
        service = await factory.service()
        victim, bystander = await factory.client(service), await factory.client(service)
        path = f"/api/{service.id}/pushed_auth_req"
        for number in range(30):
            wrong = backend_push(victim, "wrong")
            if number % 2:
                wrong["clientId"] = f"{number}" * 100  # no such client
                wrong["parameters"] = urlencode(par_params(victim, client_id=wrong["clientId"]))
            assert (await http.post(path, headers=service.bearer, json=wrong)).json()["action"] == "UNAUTHORIZED"
        for par_client in (victim, bystander):
            answer = await http.post(path, headers=service.bearer, json=backend_push(par_client))
            assert answer.json()["action"] == "CREATED", answer.text


# --- the client's address behind proxies --------------------------------------------------------------


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(database_url: str) -> None:
    """By default X-Forwarded-For is the client's own say: it names no one, and does not escape its budget."""
    async with server(database_url, rate_limit_per_address="3/minute") as (_, http, factory):
        service = await factory.service()
        public = await factory.client(service, clientType="PUBLIC")
        statuses = [
            (
                await http.post(
                    service.par_path, data=par_params(public), headers={"X-Forwarded-For": f"203.0.113.{number}"}
                )
            ).status_code
            for number in range(4)
        ]
        assert statuses == [201, 201, 201, 429]


async def test_forwarded_for_names_the_client_behind_a_trusted_proxy(database_url: str) -> None:
    """Behind a trusted proxy (the test transport's peer is 127.0.0.1), each client has its own budget:
    the right-most address the proxy did not add itself, whatever the client put left of it."""
    async with server(database_url, rate_limit_per_address="3/minute", trusted_proxies="127.0.0.1, 10.0.0.0/8") as (
        _,
        http,
        factory,
    ):
        service = await factory.service()
        public = await factory.client(service, clientType="PUBLIC")

        async def push(forwarded_for: str | bytes) -> int:
            value = forwarded_for if isinstance(forwarded_for, bytes) else forwarded_for.encode("ascii")
            headers = {b"X-Forwarded-For": value}
            return (await http.post(service.par_path, data=par_params(public), headers=headers)).status_code

        assert [await push("203.0.113.1") for _ in range(4)] == [201, 201, 201, 429]
        # The same client, through a second trusted hop and with made-up addresses of its own in front.
        assert await push("192.0.2.99, 203.0.113.1, 10.1.2.3") == 429
        assert [await push(f"192.0.2.{n}, 203.0.113.2") for n in range(3)] == [201, 201, 201]
        # A header that proves nothing counts against the proxy itself.
        malformed = ("garbage", "203.0.113.3\x00", b"203.0.113.4\xc3\xa9")
        assert [await push(value) for value in malformed] == [201, 201, 201]
        assert await push("nonsense") == 429


async def test_the_backend_counts_a_forwarded_address_from_a_trusted_authorization_server(database_url: str) -> None:
    """An authorization server listed as a trusted proxy may forward its client's address: failed
    authentications then lock out that address, and no other."""
    async with server(database_url, trusted_proxies="127.0.0.1") as (_, http, factory):
        service = await factory.service()
        par_client = await factory.client(service)
        path = f"/api/{service.id}/pushed_auth_req"
        attacker = {**service.bearer, "X-Forwarded-For": "203.0.113.66"}
        actions = [
            (await http.post(path, headers=attacker, json=backend_push(par_client, "wrong"))).json().get("action")
            for _ in range(21)
        ]
        assert actions == ["UNAUTHORIZED"] * 20 + [None]  # refused: a ResultError without an action
        for headers in ({**service.bearer, "X-Forwarded-For": "203.0.113.7"}, service.bearer):
            answer = await http.post(path, headers=headers, json=backend_push(par_client))
            assert answer.json()["action"] == "CREATED", answer.text


async def test_service_token_budget(database_url: str) -> None:
    """PAR_RATE_LIMIT_PER_SERVICE_TOKEN bounds what one authorization server pushes through the backend
    API, whichever clients it pushes for; another service's token has its own budget."""
    async with server(database_url, rate_limit_per_service_token="3/minute") as (_, http, factory):
        services = [await factory.service() for _ in range(2)]
        for service in services:
            clients = [await factory.client(service) for _ in range(2)]
            path = f"/api/{service.id}/pushed_auth_req"
            answers = [
                await http.post(path, headers=service.bearer, json=backend_push(clients[n % 2])) for n in range(4)
            ]
            assert [a.json().get("action") for a in answers] == ["CREATED"] * 3 + [None]
            assert_throttled(answers[3], api=True)


async def test_a_sync_reads_as_many_counters_as_a_replica_keeps(app: FastAPI) -> None:
    """A sync refreshes every counter in use, up to PAR_RATE_LIMIT_MAX_COUNTERS: more than one statement
    may bind (PostgreSQL allows 65,535 parameters, SQLite 32,766 unless built with more)."""
    shared = app.state.par.rate_limits.storage.shared
    assert isinstance(shared, SqlRateLimitStorage)
    await shared.add_many({"counter-7": (3, 60)})
    counters = await shared.read_many(f"counter-{number}" for number in range(70_000))
    assert len(counters) == 70_000
    assert counters["counter-7"][0] == 3 and counters["counter-69999"][0] == 0


async def test_form_decoded_retry_counts_one_failed_authentication(database_url: str) -> None:
    """At the backend API a still form-encoded secret is tried again decoded: a success that needed the
    retry spends no failure, a failure counts once, and each encoding of a client id claims the same
    client's budget (PAR-24)."""
    async with server(database_url, trusted_proxies="127.0.0.1", rate_limit_failed_authentication="3/minute") as (
        application,
        http,
        factory,
    ):
        service = await factory.service()
        handle = await factory.client(service)
        legacy = "legacy_secret_with_underscores"
        async with application.state.par.sessions() as session, session.begin():
            row = await session.get(Client, handle.id)
            assert row is not None
            row.secret_hash = application.state.par.hasher.hash(legacy)

        async def relayed(client_id: str, secret: str, address: str = "203.0.113.66") -> httpx.Response:
            return await http.post(
                f"/api/{service.id}/pushed_auth_req",
                json={"parameters": urlencode(par_params(handle)), "clientId": client_id, "clientSecret": secret},
                headers={**service.bearer, "X-Forwarded-For": address},
            )

        for _ in range(4):
            assert (await relayed(str(handle.id), legacy.replace("_", "%5F"))).json()["action"] == "CREATED"
        encoded_id = "".join(f"%{ord(c):02X}" for c in str(handle.id))
        for client_id in [str(handle.id), encoded_id, str(handle.id)]:
            assert (await relayed(client_id, "wrong%5Fsecret")).json()["action"] == "UNAUTHORIZED"
        assert_throttled(await relayed(encoded_id, legacy.replace("_", "%5F")), api=True)
        assert (await relayed(str(handle.id), legacy, "203.0.113.7")).json()["action"] == "CREATED"
