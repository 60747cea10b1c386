"""Repositories on both databases: UTC round trips, expiry purge in batches, cascades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.core.model import PushedRequestRecord
from app.db.models import Client, PushedRequest
from app.db.repositories import alias_index_violated
from app.main import purge_expired
from tests.factories import ClientHandle, Factory, ServiceHandle, client_assertion, par_params, public_jwks


async def add_requests(
    app: FastAPI, service: ServiceHandle, client: ClientHandle, *, count: int, expires_at: datetime
) -> None:
    async with app.state.par.request_connection() as connection:
        store = app.state.par.pushed_request_store(connection)
        for index in range(count):
            await store.add(
                PushedRequestRecord(
                    reference_hash=f"{expires_at.timestamp()}-{index}".ljust(64, "0")[:64],
                    service_id=service.id,
                    client_id=client.id,
                    parameters="",
                    request={},
                    created_at=expires_at - timedelta(seconds=60),
                    expires_at=expires_at,
                )
            )


async def count(app: FastAPI, model: type[PushedRequest] | type[Client]) -> int:
    async with app.state.par.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_datetimes_come_back_aware_utc(app: FastAPI, service: ServiceHandle, basic_client: ClientHandle) -> None:
    """Timestamps are UTC on both databases (SQLite drops the zone unless converted)."""
    moment = datetime(2030, 1, 2, 12, 0, 0, tzinfo=timezone(timedelta(hours=5)))
    await add_requests(app, service, basic_client, count=1, expires_at=moment)
    async with app.state.par.sessions() as session:
        row = (await session.scalars(select(PushedRequest))).one()
    assert row.expires_at == moment and row.expires_at.tzinfo is not None
    assert row.expires_at.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_refused(app: FastAPI, service: ServiceHandle, basic_client: ClientHandle) -> None:
    with pytest.raises(Exception, match="naive"):
        await add_requests(app, service, basic_client, count=1, expires_at=datetime(2030, 1, 1))  # noqa: DTZ001


async def test_purge_removes_only_expired_rows_in_batches(
    app: FastAPI, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Expired rows are purged; live ones stay; once the server stops, no further batch starts."""
    now = datetime.now(UTC)
    await add_requests(app, service, basic_client, count=7, expires_at=now - timedelta(seconds=1))
    await add_requests(app, service, basic_client, count=3, expires_at=now + timedelta(minutes=5))
    state = app.state.par
    state.settings.purge_batch_size = 3
    batches = iter([False, True])  # the server stops during the first batch
    assert await purge_expired(state, stopping=lambda: next(batches)) == 3  # no further batch
    assert await purge_expired(state) == 4
    assert await count(app, PushedRequest) == 3
    assert await purge_expired(state) == 0


async def test_deleting_a_client_removes_its_pushed_requests(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    await add_requests(app, service, basic_client, count=2, expires_at=datetime.now(UTC) + timedelta(minutes=1))
    response = await client.delete(f"/api/{service.id}/client/delete/{basic_client.id}", headers=service.bearer)
    assert response.status_code == 204
    assert await count(app, PushedRequest) == 0


@pytest.mark.parametrize(
    "stored",
    ['{"keys": [], "x": ' + "[" * 3000 + "]" * 3000 + "}", '{"keys": [{"kty": "EC", "x": NaN}]}', '{"keys": ['],
    ids=["nested-3000-deep", "NaN", "truncated"],
)
async def test_a_stored_jwks_that_no_longer_parses_is_no_keys(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, stored: str
) -> None:
    """A jwks registered before app.core.json_input checked it: the client's assertions are invalid_client
    (it has no usable keys), not a 500 on every push."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k"}, private=True)
    key_client = await factory.client(service, tokenAuthMethod="PRIVATE_KEY_JWT", jwks=public_jwks(key))
    async with app.state.par.sessions() as session:
        await session.execute(update(Client).where(Client.id == key_client.id).values(jwks=stored))
        await session.commit()
    params = {**par_params(key_client), **client_assertion(key_client, key, "ES256", aud=service.issuer)}
    response = await client.post(service.par_path, data=params)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


async def test_alias_index_violation_is_told_from_other_integrity_errors(
    app: FastAPI, factory: Factory, service: ServiceHandle
) -> None:
    """A second client with a taken alias (what a registration racing another one does) is recognised as
    such on both databases; a duplicate client id is another integrity error."""
    first = await factory.client(service, clientIdAlias="shop")
    async with app.state.par.sessions() as session:
        row = (await session.execute(select(*Client.__table__.c).where(Client.id == first.id))).one()._asdict()
    for changes, is_alias in (({"id": first.id + 1}, True), ({"client_id_alias": "other"}, False)):
        with pytest.raises(IntegrityError) as raised:
            async with app.state.par.sessions.begin() as session:
                await session.execute(insert(Client).values({**row, **changes}))
        assert alias_index_violated(raised.value) is is_alias
