"""Authlete-shaped JSON of the management use cases (camelCase names, Authlete enum spellings).

Inbound models ignore unknown fields and treat ``null`` as "not given", because the ``authlete`` SDK
serialises every attribute of its DTOs, set or not. Outbound models leave unset fields out, never null,
as Authlete does (its TypeScript SDK refuses a null where its schema has an optional string).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from app.core.model import ClientAuthMethod, ClientType, FapiMode, GrantType, ResponseType

E = TypeVar("E", bound=Enum)


def _enum_by_name(enum: type[E]) -> BeforeValidator:
    """Accept Authlete's enum names ("CLIENT_SECRET_BASIC") and the RFC values ("client_secret_basic")."""

    def parse(value: Any) -> Any:
        if value is None or isinstance(value, enum):
            return value
        if isinstance(value, str):
            if value in enum.__members__:
                return enum[value]
            for member in enum:
                if member.value == value:
                    return member
        raise ValueError(f"must be one of {', '.join(enum.__members__)}")

    return BeforeValidator(parse)


AuthMethodName = Annotated[ClientAuthMethod, _enum_by_name(ClientAuthMethod)]
ClientTypeName = Annotated[ClientType, _enum_by_name(ClientType)]
GrantTypeName = Annotated[GrantType, _enum_by_name(GrantType)]
ResponseTypeName = Annotated[ResponseType, _enum_by_name(ResponseType)]
FapiModeName = Annotated[FapiMode, _enum_by_name(FapiMode)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    return False


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold NUL (a DataError, so a 500); no field has a use for one."""
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


def epoch_millis(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


def _millis(value: Any) -> Any:
    return epoch_millis(value) if isinstance(value, datetime) else value


# A stored time as Authlete answers it: milliseconds since the epoch.
EpochMillis = Annotated[int, BeforeValidator(_millis)]


def _scope_entry(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class Scope(CamelModel):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$")]
    description: str | None = None
    default_entry: bool = False


class ServiceIn(CamelModel):
    """Service create/update. Absent or null fields keep their value on update (no silent resets)."""

    service_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    pushed_auth_req_endpoint: str | None = None
    # 0 means "the server default", as the SDK sends 0 for an unset duration.
    pushed_auth_req_duration: Annotated[int, Field(ge=0, le=86400)] | None = None
    # After the first resolve, how long the request stays resolvable and consumable (0: server default).
    authorization_session_duration: Annotated[int, Field(ge=0, le=86400)] | None = None
    consume_request_uri_on_resolve: bool | None = None
    client_assertion_audience_policy: Literal["RFC9126", "FAPI2"] | None = None
    # Authlete's name for the same choice (CA-03, NOTE-01): true is FAPI2, false RFC9126.
    client_assertion_aud_restricted_to_issuer: bool | None = None
    supported_authorization_details_types: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = None
    request_object_required: bool | None = None
    dpop_nonce_required: bool | None = None
    dpop_nonce_duration: Annotated[int, Field(ge=0, le=86400)] | None = None
    fapi_modes: list[FapiModeName] | None = None
    allow_unregistered_pushed_redirect_uris: bool | None = None
    par_required: bool | None = None
    supported_scopes: list[Annotated[Scope, BeforeValidator(_scope_entry)]] | None = None
    supported_response_types: list[ResponseTypeName] | None = None
    supported_grant_types: list[GrantTypeName] | None = None
    supported_token_auth_methods: list[AuthMethodName] | None = None
    pkce_required: bool | None = None
    pkce_s256_required: bool | None = None
    max_state_length: Annotated[int, Field(ge=0, le=65536)] | None = None
    max_nonce_length: Annotated[int, Field(ge=0, le=65536)] | None = None


class ServiceOut(CamelModel):
    """Unset fields are left out of the answer, not sent as null, as Authlete does (its TypeScript SDK
    refuses a null where its schema has an optional string)."""

    api_key: int
    service_name: str
    description: str | None = None
    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    pushed_auth_req_endpoint: str
    pushed_auth_req_duration: int
    authorization_session_duration: int
    consume_request_uri_on_resolve: bool
    client_assertion_audience_policy: str
    client_assertion_aud_restricted_to_issuer: bool  # in force: a FAPI 2.0 service is always restricted
    supported_authorization_details_types: list[str]
    request_object_required: bool
    dpop_nonce_required: bool
    dpop_nonce_duration: int
    fapi_modes: list[str]
    allow_unregistered_pushed_redirect_uris: bool
    par_required: bool
    supported_scopes: list[Scope]
    supported_response_types: list[str]
    supported_grant_types: list[str]
    supported_token_auth_methods: list[str]
    pkce_required: bool
    pkce_s256_required: bool
    max_state_length: int
    max_nonce_length: int
    created_at: EpochMillis
    modified_at: EpochMillis


class ServiceCreated(ServiceOut):
    """The create answer: the service plus its first access token, shown once."""

    service_access_token: str


class ServiceListOut(CamelModel):
    start: int
    end: int
    total_count: int
    services: list[ServiceOut]


class ClientExtension(CamelModel):
    requestable_scopes_enabled: bool | None = None
    requestable_scopes: list[str] | None = None


class ClientIn(CamelModel):
    client_id_alias: str | None = None
    client_name: Annotated[str, Field(max_length=200)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    client_type: ClientTypeName | None = None
    token_auth_method: AuthMethodName | None = None
    redirect_uris: list[str] | None = None
    response_types: list[ResponseTypeName] | None = None
    grant_types: list[GrantTypeName] | None = None
    jwks: str | None = None
    jwks_uri: str | None = None
    token_auth_sign_alg: str | None = None
    request_sign_alg: str | None = None
    tls_client_auth_subject_dn: Annotated[str, Field(max_length=1000)] | None = None
    tls_client_auth_san_dns: Annotated[str, Field(max_length=300)] | None = None
    tls_client_auth_san_uri: Annotated[str, Field(max_length=2000)] | None = None
    tls_client_auth_san_ip: Annotated[str, Field(max_length=100)] | None = None
    tls_client_auth_san_email: Annotated[str, Field(max_length=300)] | None = None
    par_required: bool | None = None
    request_object_required: bool | None = None
    pkce_required: bool | None = None
    pkce_s256_required: bool | None = None
    dpop_required: bool | None = None
    authorization_details_types: list[str] | None = None
    extension: ClientExtension | None = None
    # Create only (an existing client's secret changes through client/secret/update): a secret the
    # client already has, or our extension, its hash from the server it comes from (bcrypt, pbkdf2_sha256).
    client_secret: Annotated[str, Field(max_length=1000)] | None = None
    client_secret_hash: Annotated[str, Field(max_length=1000)] | None = None


class ClientOut(CamelModel):
    client_id: int
    client_id_alias: str | None = None
    client_id_alias_enabled: bool
    client_secret: str | None = None  # only in the answers of create and secret refresh
    client_name: str | None = None
    description: str | None = None
    client_type: str
    token_auth_method: str
    redirect_uris: list[str]
    response_types: list[str]
    grant_types: list[str]
    jwks: str | None = None
    jwks_uri: str | None = None
    token_auth_sign_alg: str | None = None
    request_sign_alg: str | None = None
    tls_client_auth_subject_dn: str | None = None
    tls_client_auth_san_dns: str | None = None
    tls_client_auth_san_uri: str | None = None
    tls_client_auth_san_ip: str | None = None
    tls_client_auth_san_email: str | None = None
    par_required: bool
    request_object_required: bool
    pkce_required: bool
    pkce_s256_required: bool
    dpop_required: bool
    authorization_details_types: list[str]
    extension: ClientExtension
    created_at: EpochMillis
    modified_at: EpochMillis


class ClientListOut(CamelModel):
    start: int
    end: int
    total_count: int
    clients: list[ClientOut]


class ClientSecretRefreshOut(CamelModel):
    result_code: str
    result_message: str
    new_client_secret: str
    old_client_secret: str | None = None


class ClientSecretUpdateIn(CamelModel):
    client_secret: Annotated[str, Field(max_length=1000)]


class ServiceTokenOut(CamelModel):
    id: int
    description: str | None
    created_at: EpochMillis
    revoked_at: EpochMillis | None


class ServiceTokenCreated(ServiceTokenOut):
    access_token: str


class ServiceTokenIn(CamelModel):
    description: Annotated[str, Field(max_length=200)] | None = None
