"""Domain records: what the protocol rules read. Storage maps its rows to these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ClientAuthMethod(StrEnum):
    """Token endpoint authentication methods. Member names are Authlete's spellings, values RFC ones."""

    NONE = "none"
    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    CLIENT_SECRET_JWT = "client_secret_jwt"
    PRIVATE_KEY_JWT = "private_key_jwt"
    TLS_CLIENT_AUTH = "tls_client_auth"
    SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"


# The methods whose clients hold a server-generated secret.
SECRET_AUTH_METHODS = frozenset(
    {ClientAuthMethod.CLIENT_SECRET_BASIC, ClientAuthMethod.CLIENT_SECRET_POST, ClientAuthMethod.CLIENT_SECRET_JWT}
)


class AudiencePolicy(StrEnum):
    """Which ``aud`` values a client assertion may carry (NOTE-01 in docs/requirements.md)."""

    # RFC 9126 §2: "the authorization server MUST accept its issuer identifier, token endpoint URL, or
    # pushed authorization request endpoint URL as values that identify it as an intended audience."
    RFC9126 = "RFC9126"
    # FAPI 2.0 §5.3.2.1-8: "shall only accept its issuer identifier value (as defined in RFC 8414) as a
    # string in the aud claim".
    FAPI2 = "FAPI2"


class FapiMode(StrEnum):
    """Authlete's FAPI modes. FAPI2_SECURITY switches on, in one place, what FAPI 2.0 asks of PAR (the FAPI-
    ids of docs/requirements.md); FAPI2_MESSAGE_SIGNING_AUTH_REQ also requires signed request objects (FAPI-19)."""

    FAPI1_BASELINE = "fapi1_baseline"
    FAPI1_ADVANCED = "fapi1_advanced"
    FAPI2_SECURITY = "fapi2_security"
    FAPI2_MESSAGE_SIGNING_AUTH_REQ = "fapi2_message_signing_auth_req"
    FAPI2_MESSAGE_SIGNING_AUTH_RES = "fapi2_message_signing_auth_res"
    FAPI2_MESSAGE_SIGNING_INTROSPECTION_RES = "fapi2_message_signing_introspection_res"


# FAPI 2.0 §5.3.2.1-6 (FAPI-09): only private_key_jwt and mutual TLS authenticate clients.
FAPI2_AUTH_METHODS = frozenset(
    {ClientAuthMethod.PRIVATE_KEY_JWT, ClientAuthMethod.TLS_CLIENT_AUTH, ClientAuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH}
)


class ClientType(StrEnum):
    PUBLIC = "public"
    CONFIDENTIAL = "confidential"


class GrantType(StrEnum):
    AUTHORIZATION_CODE = "authorization_code"
    IMPLICIT = "implicit"
    PASSWORD = "password"
    CLIENT_CREDENTIALS = "client_credentials"
    REFRESH_TOKEN = "refresh_token"
    CIBA = "urn:openid:params:grant-type:ciba"
    DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
    TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
    JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class ResponseType(StrEnum):
    """Response types in canonical form (RFC 6749 §3.1.1: the order of space-delimited values does not
    matter), named as Authlete names them."""

    NONE = "none"
    CODE = "code"
    TOKEN = "token"
    ID_TOKEN = "id_token"
    CODE_TOKEN = "code token"
    CODE_ID_TOKEN = "code id_token"
    ID_TOKEN_TOKEN = "id_token token"
    CODE_ID_TOKEN_TOKEN = "code id_token token"

    @classmethod
    def parse(cls, value: str) -> ResponseType | None:
        """The response type a request's ``response_type`` denotes, whatever its word order."""
        if value in _RESPONSE_TYPES_BY_VALUE:
            return _RESPONSE_TYPES_BY_VALUE[value]  # the canonical order, as most requests have it
        words = value.split(" ")
        if len(set(words)) != len(words):
            return None
        return _RESPONSE_TYPES_BY_WORDS.get(frozenset(words))

    @property
    def words(self) -> frozenset[str]:
        return _WORDS_BY_RESPONSE_TYPE[self]


_WORDS_BY_RESPONSE_TYPE = {member: frozenset(member.value.split(" ")) for member in ResponseType}
_RESPONSE_TYPES_BY_WORDS = {words: member for member, words in _WORDS_BY_RESPONSE_TYPE.items()}
_RESPONSE_TYPES_BY_VALUE = {member.value: member for member in ResponseType}


@dataclass(frozen=True, slots=True)
class ScopeDefinition:
    name: str
    description: str | None = None
    default_entry: bool = False


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    id: int
    name: str
    issuer: str
    pushed_auth_req_endpoint: str
    token_endpoint: str | None
    client_assertion_audience_policy: AudiencePolicy
    pushed_auth_req_duration: int
    authorization_session_duration: int
    consume_request_uri_on_resolve: bool
    par_required: bool
    supported_scopes: tuple[ScopeDefinition, ...]
    supported_response_types: frozenset[ResponseType]
    supported_token_auth_methods: frozenset[ClientAuthMethod]
    pkce_required: bool
    pkce_s256_required: bool
    max_state_length: int
    max_nonce_length: int
    supported_authorization_details_types: frozenset[str] = frozenset()
    request_object_required: bool = False
    dpop_nonce_required: bool = False
    dpop_nonce_duration: int = 300
    fapi2: bool = False  # FAPI2_SECURITY: the effective settings above already include its requirements
    allow_unregistered_pushed_redirect_uris: bool = False
    # Every push checks its scopes against these: derived once, as the record is cached.
    scope_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope_names", frozenset(scope.name for scope in self.supported_scopes))


@dataclass(frozen=True, slots=True)
class ClientRecord:
    id: int
    service_id: int
    alias: str | None
    client_type: ClientType
    token_auth_method: ClientAuthMethod
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    response_types: frozenset[ResponseType]
    grant_types: frozenset[GrantType]
    requestable_scopes: frozenset[str] | None  # None: any scope the service supports
    par_required: bool = False
    request_object_required: bool = False
    pkce_required: bool = False
    pkce_s256_required: bool = False
    dpop_required: bool = False
    token_auth_sign_alg: str | None = None
    request_sign_alg: str | None = None
    authorization_details_types: frozenset[str] = frozenset()
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    encrypted_secret: str | None = None  # client_secret_jwt only: the HMAC key, sealed (SecretBox)
    tls_client_auth_subject_dn: str | None = None
    tls_client_auth_san_dns: str | None = None
    tls_client_auth_san_uri: str | None = None
    tls_client_auth_san_ip: str | None = None
    tls_client_auth_san_email: str | None = None

    @property
    def identifiers(self) -> frozenset[str]:
        """The values that name this client as client_id: its id and its alias."""
        return frozenset({str(self.id)} | ({self.alias} if self.alias else set()))


@dataclass(frozen=True, slots=True)
class PushedRequestRecord:
    """A validated pushed authorization request, as stored."""

    reference_hash: str
    service_id: int
    client_id: int
    parameters: str  # the pushed parameters without client-authentication ones (RFC 9126 §2.1)
    request: dict[str, Any]  # the normalised, validated request
    created_at: datetime
    expires_at: datetime  # the end of the current validity (see app.db.models.PushedRequest)
    resolved_at: datetime | None = None
    consumed_at: datetime | None = None
