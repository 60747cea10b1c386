"""Client authentication at the PAR endpoint, exactly as at the token endpoint (RFC 9126 §2).

RFC 9126 §2: "the client authenticates to the authorization server ... using the same method it
would use at the token endpoint". This module covers ``none``, ``client_secret_basic`` and
``client_secret_post``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote_plus

from app.core.errors import InvalidClient, InvalidRequest
from app.core.model import ClientAuthMethod, ClientRecord, ServiceRecord
from app.core.params import RequestParameters
from app.core.secrets import SecretHasher

# RFC 9126 §2.1: these are used for client authentication only and are not part of the stored request.
CLIENT_AUTHENTICATION_PARAMETERS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """``client_secret_basic`` credentials: from the Authorization header, or the backend API's
    ``clientId`` / ``clientSecret`` fields (which the authorization server took from that header)."""

    client_id: str
    client_secret: str


def parse_basic_authorization(header_value: str) -> BasicCredentials:
    """Decode an ``Authorization: Basic`` header.

    RFC 6749 §2.3.1: "The client identifier is encoded using the "application/x-www-form-urlencoded"
    encoding algorithm ..., and the encoded value is used as the username; the client password is
    encoded using the same algorithm and used as the password."
    """
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise InvalidClient("the Authorization header must use the Basic scheme", used_authorization_header=True)
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient(
            "the Basic credentials are not valid base64 of UTF-8", used_authorization_header=True
        ) from None
    username, separator, password = decoded.partition(":")
    if not separator or not username:
        raise InvalidClient(
            "the Basic credentials must have the form client_id:client_secret", used_authorization_header=True
        )
    try:
        return BasicCredentials(
            client_id=unquote_plus(username, errors="strict"), client_secret=unquote_plus(password, errors="strict")
        )
    except UnicodeDecodeError:
        raise InvalidClient(
            "the Basic credentials are not valid form-encoded UTF-8", used_authorization_header=True
        ) from None


def claimed_client_id(params: RequestParameters, basic: BasicCredentials | None) -> str:
    """The client identifier the request claims, from Basic credentials or ``client_id``.

    RFC 9126 §2.1: "client_id" is REQUIRED; when the client also authenticates with HTTP Basic, the
    two must name the same client. A request that names the client only through Basic is accepted.
    """
    form_client_id = params.get("client_id")
    if basic is not None:
        if form_client_id is not None and form_client_id != basic.client_id:
            raise InvalidRequest(
                "the client_id parameter does not match the client of the Authorization header",
                result_code="A247303",
            )
        return basic.client_id
    if form_client_id is None:
        raise InvalidRequest("the client_id parameter is required", result_code="A247306")
    return form_client_id


def presented_method(params: RequestParameters, basic: BasicCredentials | None) -> ClientAuthMethod | None:
    """The one authentication method the request uses, or None for a public client.

    RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each request."
    """
    methods: list[ClientAuthMethod] = []
    if basic is not None:
        methods.append(ClientAuthMethod.CLIENT_SECRET_BASIC)
    if "client_secret" in params:
        methods.append(ClientAuthMethod.CLIENT_SECRET_POST)
    if "client_assertion" in params or "client_assertion_type" in params:
        methods.append(ClientAuthMethod.PRIVATE_KEY_JWT)
    if len(methods) > 1:
        raise InvalidRequest("the request uses more than one client authentication method (RFC 6749 §2.3)")
    return methods[0] if methods else None


def authenticate_client(
    client: ClientRecord | None,
    *,
    service: ServiceRecord,
    params: RequestParameters,
    basic: BasicCredentials | None,
    hasher: SecretHasher,
) -> ClientAuthMethod:
    """Authenticate ``client`` with the method it registered; return that method.

    RFC 6749 §5.2 ``invalid_client``: "Client authentication failed (e.g., unknown client, no client
    authentication included, or unsupported authentication method)."
    """
    used_header = basic is not None
    method = presented_method(params, basic)
    presented_secret = basic.client_secret if basic else params.get("client_secret")
    if client is None:
        hasher.verify(presented_secret or "", None)  # same cost as a wrong secret
        raise InvalidClient(
            "the client is not registered with this service",
            result_code="A247307",
            used_authorization_header=used_header,
        )
    registered = client.token_auth_method
    if registered not in service.supported_token_auth_methods:
        raise InvalidClient(
            f"the client authentication method '{registered.value}' is not enabled for this service",
            result_code="A157344",
            used_authorization_header=used_header,
        )
    if registered is ClientAuthMethod.NONE:
        if method is not None:
            raise InvalidClient(
                "the client is registered as public (token auth method 'none') and must not send credentials",
                result_code="A157301",
                used_authorization_header=used_header,
            )
        return registered
    if method is None:
        raise InvalidClient(
            f"client authentication is required: the client is registered for '{registered.value}'",
            result_code="A157304",
            used_authorization_header=used_header,
        )
    if method is not registered:
        used = "a client assertion" if method is ClientAuthMethod.PRIVATE_KEY_JWT else f"'{method.value}'"
        raise InvalidClient(
            f"the client is registered for '{registered.value}' but the request used {used}",
            result_code="A157357",
            used_authorization_header=used_header,
        )
    if presented_secret is None or not hasher.verify(presented_secret, client.secret_hash):
        raise InvalidClient("the client secret is wrong", result_code="A157305", used_authorization_header=used_header)
    return registered
