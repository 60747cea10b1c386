"""The client use cases as the operator runs them (``any_service``); over HTTP: tests/api/test_management.py,
the import from the command line: tests/test_cli.py."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.core.errors import ApiBadRequest, ApiConflict, ApiNotFound
from app.db.models import Client
from app.management import clients, services
from app.management.context import Page, any_service
from app.management.schemas import ClientIn, ServiceIn
from app.state import AppState
from tests.factories import REDIRECT_URI

STRONG_SECRET = "imported-" + "Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA"


@pytest.fixture
async def service_id(state: AppState) -> int:
    return (await services.create_service(state, ServiceIn())).api_key


async def stored_clients(state: AppState) -> int:
    async with state.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Client)) or 0


async def test_register_get_list_update_refresh_delete(state: AppState, service_id: int) -> None:
    created = await clients.create_client(
        state, any_service, service_id, ClientIn(client_id_alias="shop", redirect_uris=[REDIRECT_URI])
    )
    assert created.client_secret is not None  # generated, shown once
    assert (created.client_type, created.token_auth_method) == ("CONFIDENTIAL", "CLIENT_SECRET_BASIC")
    got = await clients.get_client(state, any_service, service_id, "shop")
    assert got.client_id == created.client_id and got.client_secret is None
    listed = await clients.list_clients(state, any_service, service_id, Page(0, 5))
    assert (listed.total_count, [client.client_id for client in listed.clients]) == (1, [created.client_id])

    public = await clients.update_client(
        state,
        any_service,
        service_id,
        str(created.client_id),
        ClientIn.model_validate({"clientType": "PUBLIC", "tokenAuthMethod": "NONE"}),
    )
    assert (public.token_auth_method, public.client_secret) == ("NONE", None)
    with pytest.raises(ApiBadRequest, match="which has no secret"):
        await clients.refresh_client_secret(state, any_service, service_id, "shop")
    basic = await clients.update_client(
        state,
        any_service,
        service_id,
        "shop",
        ClientIn.model_validate({"clientType": "CONFIDENTIAL", "tokenAuthMethod": "CLIENT_SECRET_BASIC"}),
    )
    assert basic.client_secret is not None  # a new secret-based method issues one
    refreshed = await clients.refresh_client_secret(state, any_service, service_id, "shop")
    assert refreshed.result_message == f"[A086001] The client secret of client {created.client_id} was refreshed."
    updated = await clients.update_client_secret(state, any_service, service_id, "shop", STRONG_SECRET)
    assert (updated.result_code, updated.new_client_secret) == ("A087001", STRONG_SECRET)

    await clients.delete_client(state, any_service, service_id, "shop")
    with pytest.raises(ApiNotFound, match="client shop does not exist in this service"):
        await clients.get_client(state, any_service, service_id, "shop")


async def test_an_alias_is_one_clients_in_a_service(state: AppState, service_id: int) -> None:
    body = ClientIn(client_id_alias="shop", redirect_uris=[REDIRECT_URI])
    await clients.create_client(state, any_service, service_id, body)
    with pytest.raises(ApiConflict, match="clientIdAlias 'shop' is already used in this service"):
        await clients.create_client(state, any_service, service_id, body)


VALID = {"clientName": "valid", "redirectUris": [REDIRECT_URI], "clientSecret": STRONG_SECRET}
INVALID_SHAPE = {"redirectUris": "not a list"}
INVALID_RULE = {"redirectUris": ["/relative"]}


async def test_an_import_is_all_or_none(state: AppState, service_id: int) -> None:
    outcome = await clients.import_clients(state, service_id, [VALID, INVALID_SHAPE, INVALID_RULE], keep_valid=False)
    assert outcome.created == []
    assert [(record.index, record.error.split(" ")[0]) for record in outcome.refused] == [
        (1, "redirectUris:"),
        (2, "each"),  # redirect URI (redirectUris) must be an absolute URI
    ]
    assert STRONG_SECRET not in repr(outcome)
    assert await stored_clients(state) == 0


async def test_an_import_may_keep_the_valid_records(state: AppState, service_id: int) -> None:
    outcome = await clients.import_clients(state, service_id, [INVALID_RULE, VALID], keep_valid=True)
    assert [record.index for record in outcome.refused] == [0]
    [imported] = outcome.created
    assert (imported.index, imported.client.client_name) == (1, "valid")
    assert imported.client.client_secret is None  # the file's own secret is not repeated
    assert await stored_clients(state) == 1


async def test_an_import_into_a_service_that_does_not_exist(state: AppState) -> None:
    with pytest.raises(ApiNotFound, match="service 42 does not exist"):
        await clients.import_clients(state, 42, [VALID], keep_valid=True)
