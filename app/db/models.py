"""Tables. Singular snake_case names, ``_at`` time columns in UTC on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from app.core.secrets import MAX_STORED_HASH_LENGTH

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out. SQLite keeps no zone, so naive UTC is stored
    there; PostgreSQL stores ``timestamptz``."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Service(Base):
    __tablename__ = "service"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    issuer: Mapped[str | None] = mapped_column(String(2000))  # None: derived from the public base URL
    authorization_endpoint: Mapped[str | None] = mapped_column(String(2000))
    token_endpoint: Mapped[str | None] = mapped_column(String(2000))
    pushed_auth_req_endpoint: Mapped[str | None] = mapped_column(String(2000))
    pushed_auth_req_duration: Mapped[int | None] = mapped_column(Integer)  # None: the server default
    authorization_session_duration: Mapped[int | None] = mapped_column(Integer)  # None: the server default
    client_assertion_audience_policy: Mapped[str] = mapped_column(
        String(20), default="RFC9126", server_default="RFC9126"
    )
    supported_authorization_details_types: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    request_object_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    dpop_nonce_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    dpop_nonce_duration: Mapped[int | None] = mapped_column(Integer)  # None: the server default
    fapi_modes: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    # RFC 9126 §2.4: confidential clients may push redirect URIs they did not register.
    allow_unregistered_pushed_redirect_uris: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    consume_request_uri_on_resolve: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    par_required: Mapped[bool] = mapped_column(Boolean, default=False)
    supported_scopes: Mapped[list[Any]] = mapped_column(default=list)
    supported_response_types: Mapped[list[Any]] = mapped_column(default=list)
    supported_grant_types: Mapped[list[Any]] = mapped_column(default=list)
    supported_token_auth_methods: Mapped[list[Any]] = mapped_column(default=list)
    pkce_required: Mapped[bool] = mapped_column(Boolean, default=False)
    pkce_s256_required: Mapped[bool] = mapped_column(Boolean, default=False)
    max_state_length: Mapped[int | None] = mapped_column(Integer)
    max_nonce_length: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    modified_at: Mapped[datetime]


class ServiceAccessToken(Base):
    __tablename__ = "service_access_token"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)  # keyed hash; the token is never stored
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


CLIENT_ALIAS_INDEX = "uq_client_service_id_alias"


class Client(Base):
    __tablename__ = "client"
    __table_args__ = (Index(CLIENT_ALIAS_INDEX, "service_id", "client_id_alias", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"), index=True)
    client_id_alias: Mapped[str | None] = mapped_column(String(200))
    client_name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    client_type: Mapped[str] = mapped_column(String(20))
    token_auth_method: Mapped[str] = mapped_column(String(40))
    secret_hash: Mapped[str | None] = mapped_column(String(MAX_STORED_HASH_LENGTH))  # a hash, never the secret
    # client_secret_jwt only: the secret sealed with AES-GCM (app.core.secrets.SecretBox), as the
    # HMAC key of its assertions cannot be a one-way hash.
    encrypted_secret: Mapped[str | None] = mapped_column(String(300))
    token_auth_sign_alg: Mapped[str | None] = mapped_column(String(20))
    request_sign_alg: Mapped[str | None] = mapped_column(String(20))
    tls_client_auth_subject_dn: Mapped[str | None] = mapped_column(String(1000))
    tls_client_auth_san_dns: Mapped[str | None] = mapped_column(String(300))
    tls_client_auth_san_uri: Mapped[str | None] = mapped_column(String(2000))
    tls_client_auth_san_ip: Mapped[str | None] = mapped_column(String(100))
    tls_client_auth_san_email: Mapped[str | None] = mapped_column(String(300))
    redirect_uris: Mapped[list[Any]] = mapped_column(default=list)
    response_types: Mapped[list[Any]] = mapped_column(default=list)
    grant_types: Mapped[list[Any]] = mapped_column(default=list)
    requestable_scopes: Mapped[list[Any] | None] = mapped_column(JSON)  # None: not restricted
    jwks: Mapped[str | None] = mapped_column(Text)
    jwks_uri: Mapped[str | None] = mapped_column(String(2000))
    par_required: Mapped[bool] = mapped_column(Boolean, default=False)
    request_object_required: Mapped[bool] = mapped_column(Boolean, default=False)
    pkce_required: Mapped[bool] = mapped_column(Boolean, default=False)
    pkce_s256_required: Mapped[bool] = mapped_column(Boolean, default=False)
    dpop_required: Mapped[bool] = mapped_column(Boolean, default=False)
    authorization_details_types: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    modified_at: Mapped[datetime]


class PushedRequest(Base):
    __tablename__ = "pushed_request"

    # SHA-256 of the random reference in the request_uri: the key, without the usable value.
    reference_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"), index=True)
    parameters: Mapped[str] = mapped_column(Text)
    request: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20), default="pushed")  # pushed | resolved | consumed
    created_at: Mapped[datetime]
    # The end of the current validity: the expires_in window, extended by the first resolve to the
    # authorization-session lifetime, and set to the consumption time when consumed (then purged).
    expires_at: Mapped[datetime] = mapped_column(index=True)
    resolved_at: Mapped[datetime | None]
    consumed_at: Mapped[datetime | None]


class ReplayEntry(Base):
    """A single-use value seen once (a client assertion's jti), kept until it could no longer be valid."""

    __tablename__ = "replay_entry"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of a namespaced value
    expires_at: Mapped[datetime] = mapped_column(index=True)


class RateLimitCounter(Base):
    """A fixed-window counter of the rate limiter, shared by all replicas (``app.db.rate_limit_counters``)."""

    __tablename__ = "rate_limit_counter"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the limiter's key
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(index=True)
