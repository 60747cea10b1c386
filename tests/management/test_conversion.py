"""Given fields to column values and rows to answers, by the tables of ``app.management.conversion``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.core.errors import ApiBadRequest
from app.core.model import AudiencePolicy
from app.db.models import Client, Service, ServiceAccessToken
from app.management.conversion import client_changes, client_out, service_changes, service_out
from app.management.schemas import ClientIn, ServiceIn
from app.management.tokens import token_out
from app.state import AppState

CREATED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
DERIVED = {"issuer": "https://par.test/services/1", "pushed_auth_req_endpoint": "https://par.test/services/1/par"}


def test_absent_and_null_fields_change_nothing() -> None:
    body = ServiceIn.model_validate({"serviceName": None, "parRequired": None, "unknownField": 1})
    assert service_changes(body, derived=DERIVED) == {}


def test_service_fields_become_columns() -> None:
    body = ServiceIn.model_validate(
        {
            "serviceName": "shop",
            "description": "",
            "pushedAuthReqDuration": 0,
            "maxStateLength": 200,
            "parRequired": False,
            "supportedResponseTypes": ["code"],
            "supportedTokenAuthMethods": ["CLIENT_SECRET_BASIC", "private_key_jwt"],
            "fapiModes": ["FAPI2_SECURITY"],
            "supportedAuthorizationDetailsTypes": ["payment", "payment"],
            "supportedScopes": ["openid", {"name": "email", "defaultEntry": True}],
        }
    )
    assert service_changes(body, derived=DERIVED) == {
        "name": "shop",
        "description": None,  # an empty string clears
        "pushed_auth_req_duration": None,  # 0 is the server default
        "max_state_length": 200,
        "par_required": False,
        "supported_response_types": ["CODE"],
        "supported_token_auth_methods": ["CLIENT_SECRET_BASIC", "PRIVATE_KEY_JWT"],
        "fapi_modes": ["FAPI2_SECURITY"],
        "supported_authorization_details_types": ["payment"],
        "supported_scopes": [
            {"name": "openid", "description": None, "defaultEntry": False},
            {"name": "email", "description": None, "defaultEntry": True},
        ],
    }


def test_a_derived_default_sent_back_stays_derived() -> None:
    body = ServiceIn(issuer=DERIVED["issuer"], pushed_auth_req_endpoint="https://as.example/par")
    assert service_changes(body, derived=DERIVED) == {
        "issuer": None,
        "pushed_auth_req_endpoint": "https://as.example/par",
    }


@pytest.mark.parametrize(
    ("policy", "restricted", "stored"),
    [("FAPI2", None, "FAPI2"), (None, True, "FAPI2"), (None, False, "RFC9126"), ("RFC9126", False, "RFC9126")],
)
def test_the_two_names_of_the_audience_policy(policy: str | None, restricted: bool | None, stored: str) -> None:
    body = ServiceIn.model_validate(
        {"clientAssertionAudiencePolicy": policy, "clientAssertionAudRestrictedToIssuer": restricted}
    )
    assert service_changes(body, derived=DERIVED) == {"client_assertion_audience_policy": stored}


def test_contradicting_audience_policies_are_refused() -> None:
    body = ServiceIn(client_assertion_audience_policy="RFC9126", client_assertion_aud_restricted_to_issuer=True)
    with pytest.raises(ApiBadRequest, match="clientAssertionAudRestrictedToIssuer=true contradicts"):
        service_changes(body, derived=DERIVED)


def test_an_invalid_issuer_is_refused_before_a_contradicting_policy() -> None:
    body = ServiceIn(
        issuer="https://as.example/?tenant=1",
        client_assertion_audience_policy="RFC9126",
        client_assertion_aud_restricted_to_issuer=True,
    )
    with pytest.raises(ApiBadRequest, match="issuer"):
        service_changes(body, derived=DERIVED)


def test_client_fields_become_columns_except_those_checked_with_the_service() -> None:
    body = ClientIn.model_validate(
        {
            "clientName": "",
            "clientIdAlias": "shop",
            "tokenAuthMethod": "NONE",
            "clientSecret": "kept apart",
            "redirectUris": ["https://client.example/cb"],
            "grantTypes": ["authorization_code"],
            "jwksUri": "",
            "dpopRequired": True,
            "authorizationDetailsTypes": ["payment", "payment"],
            "extension": {"requestableScopesEnabled": True},
        }
    )
    assert client_changes(body) == {
        "client_name": None,
        "redirect_uris": ["https://client.example/cb"],
        "grant_types": ["AUTHORIZATION_CODE"],
        "jwks_uri": None,
        "dpop_required": True,
        "authorization_details_types": ["payment", "payment"],
    }


def _service_row() -> Service:
    return Service(
        id=1,
        name="shop",
        description=None,
        issuer=None,
        authorization_endpoint="https://as.example/authorize",
        token_endpoint=None,
        pushed_auth_req_endpoint=None,
        pushed_auth_req_duration=None,
        authorization_session_duration=None,
        client_assertion_audience_policy="RFC9126",
        supported_authorization_details_types=[],
        request_object_required=False,
        dpop_nonce_required=False,
        dpop_nonce_duration=None,
        fapi_modes=["FAPI2_SECURITY"],
        allow_unregistered_pushed_redirect_uris=False,
        consume_request_uri_on_resolve=False,
        par_required=False,
        supported_scopes=[{"name": "openid", "description": None, "defaultEntry": False}],
        supported_response_types=["CODE"],
        supported_grant_types=["AUTHORIZATION_CODE"],
        supported_token_auth_methods=["PRIVATE_KEY_JWT"],
        pkce_required=False,
        pkce_s256_required=False,
        max_state_length=None,
        max_nonce_length=None,
        created_at=CREATED,
        modified_at=CREATED,
    )


def test_a_service_answers_what_is_in_force_and_leaves_unset_fields_out(state: AppState) -> None:
    row = _service_row()
    answer = service_out(row, state.service_record(row)).model_dump(by_alias=True, exclude_none=True)
    assert answer["apiKey"] == 1
    assert answer["serviceName"] == "shop"
    assert answer["issuer"] == "http://par.test/services/1"  # derived
    assert answer["pushedAuthReqDuration"] == state.settings.default_pushed_auth_req_duration
    assert answer["clientAssertionAudiencePolicy"] == AudiencePolicy.RFC9126.value  # as stored
    assert answer["clientAssertionAudRestrictedToIssuer"] is True  # in force: FAPI 2.0
    assert answer["supportedScopes"] == [{"name": "openid", "defaultEntry": False}]
    assert answer["createdAt"] == answer["modifiedAt"] == 1767323045678
    assert "description" not in answer and "tokenEndpoint" not in answer
    assert None not in answer.values()


def test_a_client_answer() -> None:
    row = Client(
        id=7,
        service_id=1,
        client_id_alias=None,
        client_name="shop",
        description=None,
        client_type="CONFIDENTIAL",
        token_auth_method="CLIENT_SECRET_BASIC",
        secret_hash="never shown",
        encrypted_secret=None,
        token_auth_sign_alg=None,
        request_sign_alg=None,
        tls_client_auth_subject_dn=None,
        tls_client_auth_san_dns=None,
        tls_client_auth_san_uri=None,
        tls_client_auth_san_ip=None,
        tls_client_auth_san_email=None,
        redirect_uris=["https://client.example/cb"],
        response_types=["CODE"],
        grant_types=["AUTHORIZATION_CODE"],
        requestable_scopes=None,
        jwks=None,
        jwks_uri=None,
        par_required=False,
        request_object_required=False,
        pkce_required=True,
        pkce_s256_required=False,
        dpop_required=False,
        authorization_details_types=[],
        created_at=CREATED,
        modified_at=CREATED,
    )
    assert client_out(row, secret="shown once").model_dump(by_alias=True, exclude_none=True) == {
        "clientId": 7,
        "clientIdAliasEnabled": False,
        "clientSecret": "shown once",
        "clientName": "shop",
        "clientType": "CONFIDENTIAL",
        "tokenAuthMethod": "CLIENT_SECRET_BASIC",
        "redirectUris": ["https://client.example/cb"],
        "responseTypes": ["CODE"],
        "grantTypes": ["AUTHORIZATION_CODE"],
        "parRequired": False,
        "requestObjectRequired": False,
        "pkceRequired": True,
        "pkceS256Required": False,
        "dpopRequired": False,
        "authorizationDetailsTypes": [],
        "extension": {"requestableScopesEnabled": False, "requestableScopes": []},
        "createdAt": 1767323045678,
        "modifiedAt": 1767323045678,
    }


def test_a_token_answer_shows_its_revocation_as_null_until_revoked() -> None:
    row = ServiceAccessToken(
        id=3, service_id=1, token_digest="d", description=None, created_at=CREATED, revoked_at=None
    )
    assert token_out(row).model_dump(by_alias=True) == {
        "id": 3,
        "description": None,
        "createdAt": 1767323045678,
        "revokedAt": None,
    }
    row.revoked_at = CREATED
    assert token_out(row).revoked_at == 1767323045678
