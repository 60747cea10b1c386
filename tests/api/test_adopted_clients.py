"""Clients adopting par-server keep their secrets: given in clear at create or through
client/secret/update, or as the hash their previous server kept (bcrypt as in ORY Hydra, pbkdf2_sha256 in
passlib's or Django's format), replaced by the keyed hash on the first successful authentication.

Every test runs on SQLite and PostgreSQL, with pushed requests in the database and in Redis.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from passlib.hash import bcrypt, django_pbkdf2_sha256, pbkdf2_sha256
from sqlalchemy import select

from app.core.secrets import SecretHasher
from app.db.models import Client
from app.settings import Settings
from tests.factories import ClientHandle, Factory, ServiceHandle, par_params, push

pytestmark = pytest.mark.usefixtures("forget_redis_keys")

ADOPTED_SECRET = "hydra-" + secrets.token_urlsafe(32)


CHECKS_IN_FLIGHT = 2
CHECKS_WAITING = 4


@pytest.fixture
def settings(settings_per_store: Settings) -> Settings:
    return settings_per_store.model_copy(
        update={"imported_hash_checks_in_flight": CHECKS_IN_FLIGHT, "imported_hash_checks_waiting": CHECKS_WAITING}
    )


async def push_rfc(http: httpx.AsyncClient, service: ServiceHandle, client: ClientHandle, secret: str) -> int:
    return (await push(http, service, client, secret=secret)).status_code


async def push_backend(http: httpx.AsyncClient, service: ServiceHandle, client: ClientHandle, secret: str) -> str:
    """The backend API's action: CREATED, or UNAUTHORIZED for a wrong secret."""
    body = {"parameters": urlencode(par_params(client)), "clientId": str(client.id), "clientSecret": secret}
    response = await http.post(f"/api/{service.id}/pushed_auth_req", json=body, headers=service.bearer)
    assert response.status_code == 200, response.text
    return str(response.json()["action"])


async def stored_hash(app: FastAPI, client_id: int) -> str | None:
    async with app.state.par.sessions() as session:
        secret_hash: str | None = await session.scalar(select(Client.secret_hash).where(Client.id == client_id))
        return secret_hash


async def test_create_with_a_client_secret_authenticates_at_both_front_doors(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    adopted = await factory.client(service, clientSecret=ADOPTED_SECRET)
    assert adopted.secret == ADOPTED_SECRET
    assert await push_rfc(client, service, adopted, ADOPTED_SECRET) == 201
    assert await push_backend(client, service, adopted, ADOPTED_SECRET) == "CREATED"
    assert await push_rfc(client, service, adopted, ADOPTED_SECRET + "x") == 401
    assert await push_backend(client, service, adopted, ADOPTED_SECRET[:-1]) == "UNAUTHORIZED"


async def test_create_with_a_client_secret_for_client_secret_post(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle
) -> None:
    adopted = await factory.client(service, tokenAuthMethod="CLIENT_SECRET_POST", clientSecret=ADOPTED_SECRET)
    data = par_params(adopted, client_secret=ADOPTED_SECRET)
    assert (await client.post(service.par_path, data=data)).status_code == 201


@pytest.mark.parametrize("by_alias", [False, True])
async def test_secret_update_replaces_the_secret(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, by_alias: bool
) -> None:
    """Authlete's client/secret/update: the given secret works from then on, the old one no more."""
    existing = await factory.client(service, clientIdAlias="adopted-app")
    assert existing.secret is not None
    assert await push_rfc(client, service, existing, existing.secret) == 201  # now cached
    named = "adopted-app" if by_alias else str(existing.id)
    response = await client.post(
        f"/api/{service.id}/client/secret/update/{named}", json={"clientSecret": ADOPTED_SECRET}, headers=service.bearer
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "resultCode": "A087001",
        "resultMessage": f"[A087001] The client secret of client {existing.id} was updated.",
        "newClientSecret": ADOPTED_SECRET,
    }
    assert response.headers["cache-control"] == "no-store"
    assert await push_rfc(client, service, existing, existing.secret) == 401
    assert await push_backend(client, service, existing, existing.secret) == "UNAUTHORIZED"
    assert await push_rfc(client, service, existing, ADOPTED_SECRET) == 201
    assert await push_backend(client, service, existing, ADOPTED_SECRET) == "CREATED"


def _bcrypt(secret: str) -> str:
    return str(bcrypt.using(rounds=4).hash(secret))


def _hydra_bcrypt(secret: str) -> str:
    """Go's bcrypt (fosite, ORY Hydra) writes the $2a$ prefix."""
    return "$2a$" + _bcrypt(secret)[4:]


def _pbkdf2(secret: str) -> str:
    return str(pbkdf2_sha256.using(rounds=1000).hash(secret))


def _django_pbkdf2(secret: str) -> str:
    """django-oauth-toolkit keeps Django's ``pbkdf2_sha256$<rounds>$<salt>$<hash>``."""
    return str(django_pbkdf2_sha256.using(rounds=1000).hash(secret))


HASHERS = pytest.mark.parametrize("make_hash", [_bcrypt, _hydra_bcrypt, _pbkdf2, _django_pbkdf2])


@HASHERS
@pytest.mark.parametrize("front_door", ["rfc9126", "backend"])
async def test_imported_hash_authenticates_and_is_replaced_by_the_keyed_hash(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, app: FastAPI, make_hash: Any, front_door: str
) -> None:
    imported = make_hash(ADOPTED_SECRET)
    adopted = await factory.client(service, clientSecretHash=imported)
    assert adopted.secret is None  # nothing to show: the caller never gave it in clear
    assert await stored_hash(app, adopted.id) == imported

    async def push(secret: str) -> bool:
        if front_door == "rfc9126":
            return await push_rfc(client, service, adopted, secret) == 201
        return await push_backend(client, service, adopted, secret) == "CREATED"

    assert not await push(ADOPTED_SECRET + "x")  # a failed check is a failed authentication, and no rehash
    assert await stored_hash(app, adopted.id) == imported
    assert await push(ADOPTED_SECRET)
    rehashed = await stored_hash(app, adopted.id)
    assert rehashed is not None and rehashed.startswith("$par-hmac-sha256$")
    assert app.state.par.hasher.verify(ADOPTED_SECRET, rehashed)
    assert await push(ADOPTED_SECRET)  # and the keyed hash authenticates from then on
    assert not await push(ADOPTED_SECRET[:-1])
    assert await stored_hash(app, adopted.id) == rehashed


async def test_concurrent_first_pushes_with_an_imported_hash(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, app: FastAPI
) -> None:
    """Several pushes checking the imported hash at once all succeed; the conditional update leaves one
    keyed hash."""
    adopted = await factory.client(service, clientSecretHash=_bcrypt(ADOPTED_SECRET))
    results = await asyncio.gather(*(push_rfc(client, service, adopted, ADOPTED_SECRET) for _ in range(4)))
    assert results == [201] * 4
    rehashed = await stored_hash(app, adopted.id)
    assert rehashed is not None and app.state.par.hasher.verify(ADOPTED_SECRET, rehashed)


async def test_imported_hash_checks_in_flight_are_capped(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of wrong secrets for an adopted client runs at most PAR_IMPORTED_HASH_CHECKS_IN_FLIGHT slow
    checks at once, so it cannot take every core; the others wait their turn and are answered too."""
    adopted = await factory.client(service, clientSecretHash=_bcrypt(ADOPTED_SECRET))
    hasher: SecretHasher = app.state.par.hasher
    verify = hasher.verify
    running, most = 0, 0
    lock = threading.Lock()

    def counting_verify(secret: str, stored_hash: str | None) -> bool:
        nonlocal running, most
        if hasher.is_keyed(stored_hash):
            return verify(secret, stored_hash)
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)  # as slow as a costly hash, so that checks overlap unless they are capped
            return verify(secret, stored_hash)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(hasher, "verify", counting_verify)
    wrong = [f"{ADOPTED_SECRET}-{i}" for i in range(CHECKS_IN_FLIGHT + CHECKS_WAITING)]
    results = await asyncio.gather(*(push_rfc(client, service, adopted, secret) for secret in wrong))
    assert results == [401] * len(wrong)
    assert most == CHECKS_IN_FLIGHT
    assert await push_rfc(client, service, adopted, ADOPTED_SECRET) == 201


async def test_beyond_the_waiting_checks_a_push_is_answered_503_at_once(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every slot busy and PAR_IMPORTED_HASH_CHECKS_WAITING checks waiting, another push for an
    adopted client is refused at once, in its front door's format, with Retry-After; keyed clients are not."""
    adopted = await factory.client(service, clientSecretHash=_bcrypt(ADOPTED_SECRET))
    keyed = await factory.client(service)
    hasher: SecretHasher = app.state.par.hasher
    verify = hasher.verify
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocking_verify(secret: str, stored_hash: str | None) -> bool:
        if not hasher.is_keyed(stored_hash):
            started.release()
            release.wait(timeout=30)
        return verify(secret, stored_hash)

    monkeypatch.setattr(hasher, "verify", blocking_verify)
    queued = [
        asyncio.create_task(push_rfc(client, service, adopted, f"{ADOPTED_SECRET}-{i}"))
        for i in range(CHECKS_IN_FLIGHT + CHECKS_WAITING)
    ]
    try:
        for _ in range(CHECKS_IN_FLIGHT):
            assert await asyncio.to_thread(started.acquire, timeout=10)
        await asyncio.sleep(0.2)  # the waiting ones have reached the gate
        refused = await client.post(service.par_path, data=par_params(adopted), headers=adopted.basic(ADOPTED_SECRET))
        assert refused.status_code == 503
        assert refused.json()["error"] == "temporarily_unavailable"
        assert refused.headers["Retry-After"]
        body = {"parameters": urlencode(par_params(adopted)), "clientId": str(adopted.id), "clientSecret": "x"}
        backend = await client.post(f"/api/{service.id}/pushed_auth_req", json=body, headers=service.bearer)
        assert backend.status_code == 503 and backend.json()["resultCode"] == "A001101"
        assert backend.headers["Retry-After"]
        assert keyed.secret is not None
        assert await push_rfc(client, service, keyed, keyed.secret) == 201
    finally:
        release.set()
    assert await asyncio.gather(*queued) == [401] * len(queued)
    assert await push_rfc(client, service, adopted, ADOPTED_SECRET) == 201


async def test_a_secret_updated_meanwhile_is_not_overwritten_by_the_rehash(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, app: FastAPI
) -> None:
    """The rehash replaces the stored hash only if it is still the imported one: a record read before a
    secret update (another replica's cache, or a check that was still running) must not bring the old
    secret back, and the old secret stops working at once."""
    imported = _pbkdf2(ADOPTED_SECRET)
    adopted = await factory.client(service, clientSecretHash=imported)
    state = app.state.par
    async with state.request_connection() as connection:
        record = await state.client_directory(connection, cached=True).get_client(service.id, str(adopted.id))
    assert record is not None and record.secret_hash == imported
    newer = "rotated-" + secrets.token_urlsafe(32)
    response = await client.post(
        f"/api/{service.id}/client/secret/update/{adopted.id}", json={"clientSecret": newer}, headers=service.bearer
    )
    assert response.status_code == 200, response.text
    state.clients.put((service.id, str(adopted.id)), record)  # a replica still holding the old record
    assert await push_rfc(client, service, adopted, ADOPTED_SECRET) == 401  # its check lost to the update
    stored = await stored_hash(app, adopted.id)
    assert stored is not None and state.hasher.verify(newer, stored)
    assert not state.hasher.verify(ADOPTED_SECRET, stored)
    assert await push_rfc(client, service, adopted, newer) == 201
    assert await push_rfc(client, service, adopted, ADOPTED_SECRET) == 401
