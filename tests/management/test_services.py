"""The service use cases as the operator runs them (``any_service``); over HTTP: tests/api/test_management.py."""

from __future__ import annotations

import pytest

from app.core.errors import ApiConflict, ApiNotFound
from app.management import clients, services, tokens
from app.management.context import Page, any_service
from app.management.schemas import ClientIn, ServiceIn
from app.state import AppState
from tests.factories import REDIRECT_URI


async def test_create_get_list_update_delete(state: AppState) -> None:
    created = await services.create_service(state, ServiceIn(service_name="shop", supported_scopes=["openid"]))
    assert created.service_access_token.startswith("par_sat_")
    assert created.issuer == f"{state.settings.public_base_url}/services/{created.api_key}"
    assert created.supported_response_types == ["CODE"]
    assert created.supported_grant_types == ["AUTHORIZATION_CODE", "REFRESH_TOKEN"]
    assert [token.description for token in await tokens.list_service_tokens(state, created.api_key)] == [
        "created with the service"
    ]

    got = await services.get_service(state, any_service, created.api_key)
    assert got.model_dump() == {
        key: value for key, value in created.model_dump().items() if key != "service_access_token"
    }
    listed = await services.list_services(state, Page(0, 5))
    assert (listed.total_count, [service.api_key for service in listed.services]) == (1, [created.api_key])

    updated = await services.update_service(state, any_service, created.api_key, ServiceIn(description="x"))
    assert (updated.service_name, updated.description) == ("shop", "x")

    await services.delete_service(state, created.api_key)
    with pytest.raises(ApiNotFound):
        await services.get_service(state, any_service, created.api_key)
    with pytest.raises(ApiNotFound, match="does not exist"):
        await services.delete_service(state, created.api_key)


async def test_switching_to_fapi2_is_refused_while_clients_would_stop_pushing(state: AppState) -> None:
    service = await services.create_service(state, ServiceIn())
    client = await clients.create_client(state, any_service, service.api_key, ClientIn(redirect_uris=[REDIRECT_URI]))
    with pytest.raises(ApiConflict, match=f"first change or delete client\\(s\\) {client.client_id}$"):
        await services.update_service(
            state, any_service, service.api_key, ServiceIn.model_validate({"fapiModes": ["FAPI2_SECURITY"]})
        )
    assert (await services.get_service(state, any_service, service.api_key)).fapi_modes == []
