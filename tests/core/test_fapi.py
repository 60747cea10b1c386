"""The FAPI 2.0 profile on top of a service's stored settings (FAPI-02, -04, -06, -07, -09, -10, -19)."""

from __future__ import annotations

from dataclasses import replace

from app.core.fapi import FAPI2_MAX_PUSHED_REQUEST_DURATION, apply_fapi_modes
from app.core.model import (
    FAPI2_AUTH_METHODS,
    AudiencePolicy,
    ClientAuthMethod,
    FapiMode,
    ResponseType,
    ServiceRecord,
)

STORED = ServiceRecord(
    id=1,
    name="test",
    issuer="https://as.example.com",
    pushed_auth_req_endpoint="https://as.example.com/par",
    token_endpoint=None,
    client_assertion_audience_policy=AudiencePolicy.RFC9126,
    pushed_auth_req_duration=900,
    authorization_session_duration=600,
    consume_request_uri_on_resolve=False,
    par_required=False,
    supported_scopes=(),
    supported_response_types=frozenset(ResponseType),
    supported_token_auth_methods=frozenset(ClientAuthMethod),
    pkce_required=False,
    pkce_s256_required=False,
    max_state_length=100,
    max_nonce_length=100,
)


def test_without_modes_the_stored_settings_stand() -> None:
    assert apply_fapi_modes(STORED, set()) == STORED
    assert apply_fapi_modes(STORED, {FapiMode.FAPI1_ADVANCED, FapiMode.FAPI2_MESSAGE_SIGNING_AUTH_RES}) == STORED


def test_fapi2_security_tightens_every_setting_it_concerns() -> None:
    effective = apply_fapi_modes(STORED, {FapiMode.FAPI2_SECURITY})
    assert effective == replace(
        STORED,
        fapi2=True,
        client_assertion_audience_policy=AudiencePolicy.FAPI2,
        pushed_auth_req_duration=FAPI2_MAX_PUSHED_REQUEST_DURATION,
        par_required=True,
        supported_response_types=frozenset({ResponseType.CODE}),
        supported_token_auth_methods=FAPI2_AUTH_METHODS,
        pkce_required=True,
        pkce_s256_required=True,
    )
    assert not effective.request_object_required


def test_fapi2_security_only_narrows_what_the_service_chose() -> None:
    """A shorter duration stays; methods and response types are intersected, never added."""
    stored = replace(
        STORED,
        pushed_auth_req_duration=60,
        supported_response_types=frozenset({ResponseType.CODE_ID_TOKEN}),
        supported_token_auth_methods=frozenset(
            {ClientAuthMethod.PRIVATE_KEY_JWT, ClientAuthMethod.CLIENT_SECRET_BASIC}
        ),
    )
    effective = apply_fapi_modes(stored, [FapiMode.FAPI2_SECURITY])
    assert effective.pushed_auth_req_duration == 60
    assert effective.supported_response_types == frozenset()
    assert effective.supported_token_auth_methods == frozenset({ClientAuthMethod.PRIVATE_KEY_JWT})


def test_message_signing_requires_request_objects() -> None:
    """FAPI-19, with or without FAPI2_SECURITY."""
    alone = apply_fapi_modes(STORED, {FapiMode.FAPI2_MESSAGE_SIGNING_AUTH_REQ})
    assert alone == replace(STORED, request_object_required=True)
    both = apply_fapi_modes(STORED, {FapiMode.FAPI2_SECURITY, FapiMode.FAPI2_MESSAGE_SIGNING_AUTH_REQ})
    assert both.request_object_required and both.fapi2
