"""Validating an authorization request (RFC 6749 §4.1.1, RFC 9126 §2.1): the rules a pushed request and a
plain one at the authorization endpoint share.

RFC 9126 §2.1: "The authorization server MUST validate the pushed request as it would an authorization
request sent to the authorization endpoint." ``app.core.par`` calls :func:`validate_authorization_request`
for each push, ``app.core.authorization`` for each plain request and again when a pushed one is resolved.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from app.core import json_input, result_codes
from app.core.dpop import validate_dpop_jkt
from app.core.errors import (
    InvalidAuthorizationDetails,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    RequestNotSupported,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from app.core.model import ClientAuthMethod, ClientRecord, GrantType, ResponseType, ServiceRecord
from app.core.params import RequestParameters
from app.core.pkce import PkcePolicy, validate_code_challenge

MAX_REDIRECT_URI_LENGTH = 2000
MTLS_AUTH_METHODS = frozenset({ClientAuthMethod.TLS_CLIENT_AUTH, ClientAuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH})
# RFC 6749 §3.3: scope = scope-token *( SP scope-token ); scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")
# An http redirect URI on a loopback IP literal, split at its port: (scheme and host, port, the rest).
_LOOPBACK_IP_URI = re.compile(r"(http://(?:127\.0\.0\.1|\[::1\]))(?::([0-9]{1,5}))?([/?].*)?", re.DOTALL)
MAX_PORT = 65535


def validate_authorization_request(
    params: RequestParameters, *, service: ServiceRecord, client: ClientRecord, pushed: bool, signed: bool = False
) -> dict[str, Any]:
    """Validate an authorization request and return its normalised form: pushed ones at the PAR endpoint
    (``pushed``; ``signed`` when they came in a verified request object), plain ones and re-checks of
    pushed ones at the authorization endpoint.

    RFC 9126 §2.1: "The authorization server MUST validate the pushed request as it would an
    authorization request sent to the authorization endpoint."
    """
    if "request_uri" in params:
        # RFC 9126 §2.1: "request_uri ... MUST NOT be provided in this case."
        raise InvalidRequest(
            "the request_uri parameter is not allowed at the pushed authorization request endpoint",
            result_code=result_codes.REQUEST_URI_PUSHED,
        )
    if "request" in params:
        raise RequestNotSupported("request objects are accepted at the pushed authorization request endpoint only")
    if not signed and (service.request_object_required or client.request_object_required):
        # RFC 9126 §2.3 / PAR-22: a request that is not a signed request object is rejected with invalid_request.
        raise InvalidRequest(
            "this client must push a signed request object (request parameter)",
            result_code=result_codes.REQUEST_OBJECT_REQUIRED,
        )
    dpop_jkt = params.get("dpop_jkt")
    if dpop_jkt is not None:
        validate_dpop_jkt(dpop_jkt)
    if client.dpop_required and dpop_jkt is None:
        raise InvalidRequest(
            "this client must bind its request to a DPoP key (DPoP proof or dpop_jkt)",
            result_code=result_codes.DPOP_BINDING_REQUIRED,
        )
    if service.fapi2 and dpop_jkt is None and client.token_auth_method not in MTLS_AUTH_METHODS:
        # FAPI 2.0 §5.3.2.1 (FAPI-12): sender-constrained: DPoP (here, dpop_jkt or a proof) or mutual TLS.
        raise InvalidRequest("FAPI 2.0 requires a sender-constrained request: a DPoP proof, dpop_jkt, or mutual TLS")

    response_type = _validate_response_type(params.get("response_type"), service=service, client=client)
    redirect_uri = validate_redirect_uri(
        params.get("redirect_uri"),
        client=client,
        allow_unregistered=pushed and service.allow_unregistered_pushed_redirect_uris,
    )
    scopes = _validate_scopes(params.get("scope"), service=service, client=client)
    state = params.get("state")
    if state is not None and len(state) > service.max_state_length:
        raise InvalidRequest(f"state exceeds {service.max_state_length} characters")
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > service.max_nonce_length:
        raise InvalidRequest(f"nonce exceeds {service.max_nonce_length} characters")
    if "openid" in scopes and "id_token" in response_type.words and nonce is None:
        # OpenID Connect Core §3.2.2.1: nonce is REQUIRED for flows returning an ID token from the
        # authorization endpoint.
        raise InvalidRequest("nonce is required when response_type includes id_token")
    pkce = validate_code_challenge(
        params.get("code_challenge"),
        params.get("code_challenge_method"),
        PkcePolicy(
            # Public clients cannot authenticate, so PKCE is their only code binding.
            required=service.pkce_required or client.pkce_required or client.token_auth_method is ClientAuthMethod.NONE,
            s256_required=service.pkce_s256_required or client.pkce_s256_required,
        ),
    )
    normalised: dict[str, Any] = {
        "responseType": response_type.value,
        "redirectUri": redirect_uri,
        "scopes": scopes,
    }
    optional = {
        "state": state,
        "nonce": nonce,
        "codeChallenge": pkce.challenge if pkce else None,
        "codeChallengeMethod": pkce.method if pkce else None,
        "dpopJkt": dpop_jkt,
        "authorizationDetails": _validate_authorization_details(
            params.get("authorization_details"), service=service, client=client
        ),
        "resources": _validate_resources(params.get_all("resource")) or None,
        "signedRequestObject": True if signed else None,
    }
    normalised.update({key: value for key, value in optional.items() if value is not None})
    return normalised


def _validate_authorization_details(
    value: str | None, *, service: ServiceRecord, client: ClientRecord
) -> list[dict[str, Any]] | None:
    """RFC 9396 §2: "The request parameter authorization_details contains, in JSON notation, an array of
    objects. Each JSON object contains the data to specify the authorization requirements for a certain
    type of resource." §2: "type: ... REQUIRED"; §5: unknown types are "invalid_authorization_details"."""
    if value is None:
        return None
    try:
        details = json_input.loads(value)
    except json_input.JsonInputError as error:
        raise InvalidAuthorizationDetails(f"authorization_details is not acceptable JSON: {error}") from None
    if not isinstance(details, list) or not details:
        raise InvalidAuthorizationDetails("authorization_details must be a non-empty JSON array")
    for index, detail in enumerate(details):
        if not isinstance(detail, dict) or not isinstance(detail.get("type"), str) or not detail["type"]:
            raise InvalidAuthorizationDetails(f"authorization_details[{index}] must be an object with a string type")
        if detail["type"] not in service.supported_authorization_details_types:
            raise InvalidAuthorizationDetails(
                f"authorization_details[{index}] has a type this service does not support"
            )
        if client.authorization_details_types and detail["type"] not in client.authorization_details_types:
            raise InvalidAuthorizationDetails(f"authorization_details[{index}] has a type this client may not use")
    return details


def _validate_resources(values: list[str]) -> list[str]:
    """RFC 8707 §2: "Its value MUST be an absolute URI ... and MUST NOT include a fragment component"."""
    for value in values:
        parts = urlsplit(value)
        if not parts.scheme or parts.fragment or "#" in value:
            raise InvalidTarget("each resource must be an absolute URI without a fragment (RFC 8707)")
    return list(dict.fromkeys(values))


def _validate_response_type(value: str | None, *, service: ServiceRecord, client: ClientRecord) -> ResponseType:
    if value is None:
        raise InvalidRequest("the response_type parameter is required")
    response_type = ResponseType.parse(value)
    if response_type is None or response_type not in service.supported_response_types:
        raise UnsupportedResponseType("the response_type is not supported by this service")
    if response_type not in client.response_types:
        raise UnauthorizedClient("the client is not registered for this response_type")
    needs = set()
    if "code" in response_type.words:
        needs.add(GrantType.AUTHORIZATION_CODE)
    if response_type.words & {"token", "id_token"}:
        needs.add(GrantType.IMPLICIT)
    if not needs <= client.grant_types:
        raise UnauthorizedClient("the client's grant types do not allow this response_type")
    return response_type


def validate_redirect_uri(value: str | None, *, client: ClientRecord, allow_unregistered: bool = False) -> str:
    """RFC 9126 §2.3: a missing or unregistered redirect_uri is answered with invalid_request.

    RFC 9126 §2.4: with ``allow_unregistered`` (a service policy), an authenticated client may push a
    redirect URI it did not register; §7.2: "only clients that have authentication credentials" may, and
    it is still syntax-checked: https, or http on a loopback address (FAPI-15, RFC 8252 §7.3).
    """
    if value is None:
        raise InvalidRequest("the redirect_uri parameter is required", result_code=result_codes.REDIRECT_URI_MISSING)
    parts = urlsplit(value)
    if not parts.scheme or parts.fragment or "#" in value:
        # RFC 6749 §3.1.2: "The endpoint URI MUST NOT include a fragment component" and is absolute.
        raise InvalidRequest(
            "the redirect_uri is malformed: it must be absolute and have no fragment",
            result_code=result_codes.REDIRECT_URI_MALFORMED,
        )
    # RFC 6749 §3.1.2.3 / RFC 9700 §2.1: exact string matching against the registered URIs.
    if value in client.redirect_uris or _matches_loopback_ip_uri(value, client.redirect_uris):
        return value
    if allow_unregistered and client.token_auth_method is not ClientAuthMethod.NONE:
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
        if (parts.scheme == "https" or loopback) and parts.hostname and len(value) <= MAX_REDIRECT_URI_LENGTH:
            return value
        raise InvalidRequest(
            "an unregistered redirect_uri must use https (or http on a loopback address)",
            result_code=result_codes.REDIRECT_URI_MALFORMED,
        )
    raise InvalidRequest(
        "the redirect_uri is not registered for this client", result_code=result_codes.REDIRECT_URI_NOT_REGISTERED
    )


def _matches_loopback_ip_uri(value: str, registered: tuple[str, ...]) -> bool:
    """RFC 8252 §7.3: "The authorization server MUST allow any port to be specified at the time of the
    request for loopback IP redirect URIs, to accommodate clients that obtain an available ephemeral port
    from the operating system at the time of the request." (PAR-39) Only for ``http`` on the IP literals
    127.0.0.1 and [::1]; everything but the port still matches exactly. ``localhost`` is not given this
    (§8.3: its use "is NOT RECOMMENDED"), so it matches exactly, port included."""
    pushed = _LOOPBACK_IP_URI.fullmatch(value)
    if pushed is None or int(pushed.group(2) or 0) > MAX_PORT:
        return False
    for uri in registered:
        match = _LOOPBACK_IP_URI.fullmatch(uri)
        if match is not None and match.group(1, 3) == pushed.group(1, 3):
            return True
    return False


def _validate_scopes(value: str | None, *, service: ServiceRecord, client: ClientRecord) -> list[str]:
    """RFC 6749 §3.3: scope is a space-delimited list of case-sensitive scope tokens."""
    if value is None:
        return []
    if not _SCOPE.fullmatch(value):
        raise InvalidScope("the scope parameter is malformed (RFC 6749 §3.3)")
    unique = list(dict.fromkeys(value.split(" ")))
    supported = service.scope_names
    unsupported = [scope for scope in unique if scope not in supported]
    if unsupported:
        raise InvalidScope(f"scope '{unsupported[0]}' is not supported by this service")
    if client.requestable_scopes is not None:
        forbidden = [scope for scope in unique if scope not in client.requestable_scopes]
        if forbidden:
            raise InvalidScope(f"the client may not request scope '{forbidden[0]}'")
    return unique
