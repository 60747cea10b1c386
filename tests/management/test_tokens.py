from __future__ import annotations

import pytest

from app.core.errors import ApiNotFound
from app.management import services, tokens
from app.management.schemas import ServiceIn
from app.state import AppState


async def test_issue_list_revoke(state: AppState) -> None:
    service = await services.create_service(state, ServiceIn())
    issued = await tokens.create_service_token(state, service.api_key, "ci")
    assert issued.access_token.startswith("par_sat_")
    assert (issued.description, issued.revoked_at) == ("ci", None)
    state.tokens.put(state.hasher.lookup_digest(issued.access_token), service.api_key)

    await tokens.revoke_service_token(state, service.api_key, issued.id)
    assert state.tokens.get(state.hasher.lookup_digest(issued.access_token)) is None  # forgotten at once
    listed = {token.id: token for token in await tokens.list_service_tokens(state, service.api_key)}
    assert listed[issued.id].revoked_at is not None
    assert "access_token" not in listed[issued.id].model_dump()
    with pytest.raises(ApiNotFound, match=f"no active token {issued.id}"):
        await tokens.revoke_service_token(state, service.api_key, issued.id)


async def test_no_tokens_for_a_service_that_does_not_exist(state: AppState) -> None:
    with pytest.raises(ApiNotFound, match="service 42 does not exist"):
        await tokens.create_service_token(state, 42, None)
    with pytest.raises(ApiNotFound, match="service 42 does not exist"):
        await tokens.list_service_tokens(state, 42)
