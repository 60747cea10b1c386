"""What both front doors share (app/api/push_pipeline.py): the client a push is counted against, and its 429."""

from __future__ import annotations

import json

import pytest

from app.api.push_pipeline import Claim, peek_client_id, too_many_requests
from app.api.rate_limit import Refusal
from app.core.client_auth import BasicCredentials
from app.core.params import ParameterBounds, parse_parameters

LIMITS = ParameterBounds(max_parameters=100, max_parameter_bytes=8192, max_total_bytes=65536)


def test_basic_credentials_name_the_client() -> None:
    basic = BasicCredentials("from-header", "secret")
    claim = peek_client_id("client_id=from-body&response_type=code", basic, LIMITS)
    assert claim == Claim("from-header", "client_id=from-body&response_type=code")  # not parsed before admission


@pytest.mark.parametrize("parameters", ["client_id=s6BhdRkqt3&response_type=code", b"client_id=s6BhdRkqt3"])
def test_without_basic_credentials_the_parameters_name_the_client(parameters: str | bytes) -> None:
    claim = peek_client_id(parameters, None, LIMITS)
    assert claim.client_id == "s6BhdRkqt3"
    assert claim.parameters == parse_parameters(parameters, LIMITS)  # parsed once, for the push too


@pytest.mark.parametrize("parameters", ["response_type=code", "client_id=a&client_id=b", "client_id=%zz"])
def test_parameters_naming_no_single_client_name_none(parameters: str) -> None:
    """Nothing is validated yet: a request the push will refuse is counted by its address alone."""
    claim = peek_client_id(parameters, None, LIMITS)
    assert claim.client_id is None
    if parameters != "response_type=code":  # they do not parse: given to the push as received, which says why
        assert claim.parameters == parameters


def test_too_many_requests_at_the_rfc_endpoint_is_an_oauth_error_with_retry_after() -> None:
    """RFC 9126 §2.3 / RFC 6585 §4."""
    response = too_many_requests("/services/1/par", Refusal(retry_after=7, scope="client"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["cache-control"] == "no-store"
    assert json.loads(bytes(response.body)) == {
        "error": "temporarily_unavailable",
        "error_description": "too many requests (client); retry after 7 s",
    }


def test_too_many_requests_at_the_backend_api_is_a_result_error_with_retry_after() -> None:
    response = too_many_requests("/api/1/pushed_auth_req", Refusal(retry_after=3, scope="service_token"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert json.loads(bytes(response.body))["resultCode"] == "A001214"
