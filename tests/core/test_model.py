"""The domain records' derived values."""

from __future__ import annotations

import dataclasses

from app.core.model import ScopeDefinition
from tests.core.test_authorization_request import service


def test_a_services_scope_names_are_those_of_its_scopes_even_when_replaced() -> None:
    record = service(supported_scopes=(ScopeDefinition("openid"), ScopeDefinition("profile")))
    assert record.scope_names == frozenset({"openid", "profile"})
    replaced = dataclasses.replace(record, supported_scopes=(ScopeDefinition("email"),))
    assert replaced.scope_names == frozenset({"email"})
    assert "scope_names" not in repr(record)
    assert record == dataclasses.replace(record)
