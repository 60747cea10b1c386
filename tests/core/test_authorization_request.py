"""Authorization request validation shared by pushes and the authorization endpoint (RFC 6749 §4.1.1,
RFC 9126 §2.1, PAR-11, PAR-22, PAR-39, DPOP-01, FAPI-12)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.authorization_request import validate_authorization_request, validate_redirect_uri
from app.core.errors import (
    InvalidAuthorizationDetails,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    RequestNotSupported,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from app.core.model import (
    AudiencePolicy,
    ClientAuthMethod,
    ClientRecord,
    ClientType,
    GrantType,
    ResponseType,
    ScopeDefinition,
    ServiceRecord,
)
from app.core.params import ParameterBounds, RequestParameters, parse_parameters

LIMITS = ParameterBounds(max_parameters=50, max_parameter_bytes=2000, max_total_bytes=10_000)
REDIRECT_URI = "https://client.example.org/cb"
THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def service(**fields: Any) -> ServiceRecord:
    values: dict[str, Any] = {
        "id": 1,
        "name": "test",
        "issuer": "https://as.example.com",
        "pushed_auth_req_endpoint": "https://as.example.com/par",
        "token_endpoint": None,
        "client_assertion_audience_policy": AudiencePolicy.RFC9126,
        "pushed_auth_req_duration": 60,
        "authorization_session_duration": 600,
        "consume_request_uri_on_resolve": False,
        "par_required": False,
        "supported_scopes": (ScopeDefinition("openid"), ScopeDefinition("profile")),
        "supported_response_types": frozenset({ResponseType.CODE, ResponseType.CODE_ID_TOKEN}),
        "supported_token_auth_methods": frozenset(ClientAuthMethod),
        "pkce_required": False,
        "pkce_s256_required": False,
        "max_state_length": 100,
        "max_nonce_length": 100,
        "supported_authorization_details_types": frozenset({"payment"}),
    }
    values.update(fields)
    return ServiceRecord(**values)


def client(**fields: Any) -> ClientRecord:
    values: dict[str, Any] = {
        "id": 1234567890123,
        "service_id": 1,
        "alias": None,
        "client_type": ClientType.CONFIDENTIAL,
        "token_auth_method": ClientAuthMethod.CLIENT_SECRET_BASIC,
        "secret_hash": None,
        "redirect_uris": (REDIRECT_URI, "http://127.0.0.1/cb"),
        "response_types": frozenset({ResponseType.CODE, ResponseType.CODE_ID_TOKEN}),
        "grant_types": frozenset({GrantType.AUTHORIZATION_CODE, GrantType.IMPLICIT}),
        "requestable_scopes": None,
    }
    values.update(fields)
    return ClientRecord(**values)


def params(body: str) -> RequestParameters:
    return parse_parameters(body, LIMITS)


def validate(
    body: str,
    *,
    service_record: ServiceRecord | None = None,
    client_record: ClientRecord | None = None,
    pushed: bool = True,
    signed: bool = False,
) -> dict[str, Any]:
    return validate_authorization_request(
        params(body),
        service=service_record or service(),
        client=client_record or client(),
        pushed=pushed,
        signed=signed,
    )


def refused(error_type: type[OAuthError], message: str, body: str, **options: Any) -> OAuthError:
    with pytest.raises(error_type, match=message) as caught:
        validate(body, **options)
    return caught.value


BASE = "response_type=code&redirect_uri=https%3A%2F%2Fclient.example.org%2Fcb"


def test_a_valid_request_is_normalised() -> None:
    body = (
        BASE
        + "&scope=openid+profile+openid&state=xyz&resource=https%3A%2F%2Frs.example&resource=https%3A%2F%2Frs.example"
    )
    assert validate(body, signed=True) == {
        "responseType": "code",
        "redirectUri": REDIRECT_URI,
        "scopes": ["openid", "profile"],
        "state": "xyz",
        "resources": ["https://rs.example"],
        "signedRequestObject": True,
    }


def test_request_uri_and_request_are_refused() -> None:
    """RFC 9126 §2.1 (PAR-11): "request_uri ... MUST NOT be provided"; request objects arrive verified."""
    error = refused(InvalidRequest, "request_uri parameter is not allowed", BASE + "&request_uri=urn%3Ax")
    assert error.result_code == "A248301"
    refused(RequestNotSupported, "request objects are accepted at the pushed", BASE + "&request=a.b.c")


def test_request_object_required_unless_signed() -> None:
    """RFC 9126 §2.3 (PAR-22): invalid_request with A008309, from the service or the client."""
    for options in (
        {"service_record": service(request_object_required=True)},
        {"client_record": client(request_object_required=True)},
    ):
        error = refused(InvalidRequest, "must push a signed request object", BASE, **options)
        assert error.result_code == "A008309"
        assert validate(BASE, signed=True, **options)["signedRequestObject"] is True


def test_dpop_jkt_is_checked_and_required_when_the_client_must_use_dpop() -> None:
    """RFC 9449 §10 (DPOP-01)."""
    assert validate(BASE + "&dpop_jkt=" + THUMBPRINT)["dpopJkt"] == THUMBPRINT
    refused(InvalidRequest, "dpop_jkt must be a base64url SHA-256", BASE + "&dpop_jkt=short")
    error = refused(
        InvalidRequest, "must bind its request to a DPoP key", BASE, client_record=client(dpop_required=True)
    )
    assert error.result_code == "A001301"


def test_fapi2_requires_a_sender_constrained_request() -> None:
    """FAPI 2.0 §5.3.2.1 (FAPI-12): DPoP or mutual TLS."""
    fapi2 = service(fapi2=True)
    refused(InvalidRequest, "FAPI 2.0 requires a sender-constrained request", BASE, service_record=fapi2)
    assert validate(BASE + "&dpop_jkt=" + THUMBPRINT, service_record=fapi2)["dpopJkt"] == THUMBPRINT
    mtls_client = client(token_auth_method=ClientAuthMethod.TLS_CLIENT_AUTH)
    assert validate(BASE, service_record=fapi2, client_record=mtls_client)["responseType"] == "code"


def test_response_type_is_required_and_supported() -> None:
    refused(InvalidRequest, "the response_type parameter is required", "redirect_uri=" + REDIRECT_URI)
    refused(UnsupportedResponseType, "not supported by this service", BASE.replace("=code", "=token", 1))


@pytest.mark.parametrize(
    ("registration", "response_type", "message"),
    [
        ({"response_types": frozenset({ResponseType.CODE})}, "code+id_token", "not registered for this response_type"),
        ({"grant_types": frozenset({GrantType.AUTHORIZATION_CODE})}, "id_token+code", "grant types do not allow"),
    ],
)
def test_response_type_must_suit_the_client(registration: dict[str, Any], response_type: str, message: str) -> None:
    body = BASE.replace("=code", "=" + response_type, 1) + "&nonce=n"
    refused(UnauthorizedClient, message, body, client_record=client(**registration))


def test_scope_rules() -> None:
    """RFC 6749 §3.3."""
    refused(InvalidScope, "the scope parameter is malformed", BASE + "&scope=open%22id")
    refused(InvalidScope, "scope 'email' is not supported by this service", BASE + "&scope=email")
    limited = client(requestable_scopes=frozenset({"openid"}))
    refused(InvalidScope, "may not request scope 'profile'", BASE + "&scope=openid+profile", client_record=limited)


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(' a"\\\t~!\x7f'), min_size=1, max_size=8) | st.text(min_size=1, max_size=8))
def test_a_scope_is_malformed_exactly_when_one_of_its_tokens_is(scope: str) -> None:
    """RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), one space between tokens."""
    token = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
    malformed = any(not token.fullmatch(part) for part in scope.split(" "))
    params = RequestParameters((("response_type", "code"), ("redirect_uri", REDIRECT_URI), ("scope", scope)))
    try:
        validate_authorization_request(params, service=service(), client=client(), pushed=True)
    except InvalidScope as error:
        assert ("malformed" in error.description) == malformed
    else:
        assert not malformed


def test_state_nonce_and_id_token_nonce() -> None:
    refused(InvalidRequest, "state exceeds 100 characters", BASE + "&state=" + "s" * 101)
    refused(InvalidRequest, "nonce exceeds 100 characters", BASE + "&nonce=" + "n" * 101)
    body = BASE.replace("=code", "=code+id_token", 1) + "&scope=openid"
    refused(InvalidRequest, "nonce is required when response_type includes id_token", body)
    assert validate(body + "&nonce=n")["nonce"] == "n"


def test_pkce_is_required_of_public_clients() -> None:
    public = client(client_type=ClientType.PUBLIC, token_auth_method=ClientAuthMethod.NONE)
    assert refused(InvalidRequest, "code_challenge is required", BASE, client_record=public).result_code == "A124301"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    normalised = validate(BASE + f"&code_challenge={challenge}&code_challenge_method=S256", client_record=public)
    assert (normalised["codeChallenge"], normalised["codeChallengeMethod"]) == (challenge, "S256")


def test_authorization_details_rules() -> None:
    """RFC 9396 §2, §5."""
    ok = BASE + "&authorization_details=%5B%7B%22type%22%3A%22payment%22%7D%5D"
    assert validate(ok)["authorizationDetails"] == [{"type": "payment"}]
    refused(InvalidAuthorizationDetails, "must be a non-empty JSON array", BASE + "&authorization_details=%5B%5D")
    refused(InvalidAuthorizationDetails, "not acceptable JSON", BASE + "&authorization_details=%5B")
    other = BASE + "&authorization_details=%5B%7B%22type%22%3A%22other%22%7D%5D"
    refused(InvalidAuthorizationDetails, r"\[0\] has a type this service does not support", other)
    limited = client(authorization_details_types=frozenset({"account"}))
    refused(InvalidAuthorizationDetails, r"\[0\] has a type this client may not use", ok, client_record=limited)


def test_resource_must_be_absolute_without_fragment() -> None:
    """RFC 8707 §2."""
    refused(InvalidTarget, "absolute URI without a fragment", BASE + "&resource=rs")
    refused(InvalidTarget, "absolute URI without a fragment", BASE + "&resource=https%3A%2F%2Frs%23x")


def test_redirect_uri_rules() -> None:
    """RFC 9126 §2.3, §2.4; RFC 8252 §7.3 (PAR-39)."""
    registered = client()
    cases = [
        (None, "A253302", "the redirect_uri parameter is required"),
        ("/cb", "A253304", "the redirect_uri is malformed"),
        ("https://client.example.org/cb#f", "A253304", "the redirect_uri is malformed"),
        ("https://other.example/cb", "A253303", "not registered for this client"),
    ]
    for value, code, message in cases:
        with pytest.raises(InvalidRequest, match=message) as caught:
            validate_redirect_uri(value, client=registered)
        assert caught.value.result_code == code
    assert validate_redirect_uri("http://127.0.0.1:51234/cb", client=registered) == "http://127.0.0.1:51234/cb"
    with pytest.raises(InvalidRequest, match="not registered"):
        validate_redirect_uri("http://127.0.0.1:65536/cb", client=registered)


def test_unregistered_redirect_uri_when_allowed() -> None:
    """RFC 9126 §2.4 / §7.2: authenticated clients only, https or loopback http."""
    registered = client()
    assert validate_redirect_uri("https://new.example/cb", client=registered, allow_unregistered=True)
    with pytest.raises(InvalidRequest, match="must use https") as caught:
        validate_redirect_uri("http://new.example/cb", client=registered, allow_unregistered=True)
    assert caught.value.result_code == "A253304"
    public = client(token_auth_method=ClientAuthMethod.NONE)
    with pytest.raises(InvalidRequest, match="not registered for this client"):
        validate_redirect_uri("https://new.example/cb", client=public, allow_unregistered=True)
