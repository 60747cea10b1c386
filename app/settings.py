"""All configuration, read once from the environment (prefix ``PAR_``) and passed explicitly."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("data")
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "changethis", "secret", "password", "pepper"})
MIN_SECRET_LENGTH = 32


class UnsafeSettingsError(ValueError):
    """A value that must never reach production (missing or placeholder secret)."""


class Settings(BaseSettings):
    """par-server settings. Every limit the server enforces is one of these fields."""

    model_config = SettingsConfigDict(env_prefix="PAR_", extra="ignore")

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{DEFAULT_DATA_DIR / 'par-server.db'}",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+psycopg://user@host/db",
    )
    admin_token: SecretStr | None = Field(default=None, description="Bearer token of the service-management API")
    pepper: SecretStr | None = Field(
        default=None, description="Key of the keyed hashes of client secrets and service access tokens"
    )
    public_base_url: str = Field(default="http://127.0.0.1:8000", description="Base URL clients reach this server at")
    demo: bool = Field(default=False, description="Generate missing secrets instead of refusing to start")
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Where demo secrets and the SQLite file live")

    # HTTP limits (RFC 9126 §2.3: 413 for an oversized request).
    max_body_bytes: Annotated[int, Field(gt=0)] = 64 * 1024  # the pushed parameters, at either front door
    # The /api envelope carries the parameters plus certificates and proofs, so it gets headroom: a
    # too-large `parameters` then answers action PAYLOAD_TOO_LARGE rather than failing the API call.
    max_api_body_bytes: Annotated[int, Field(gt=0)] = 256 * 1024
    max_header_bytes: Annotated[int, Field(gt=0)] = 16 * 1024  # all request headers together; larger → 431
    max_parameters: Annotated[int, Field(gt=0)] = 100
    max_parameter_bytes: Annotated[int, Field(gt=0)] = 16 * 1024

    # Defaults of per-service settings.
    default_pushed_auth_req_duration: Annotated[int, Field(gt=0, le=86400)] = 60
    # How long a request stays resolvable and consumable after its first resolve, so that a slow login
    # (MFA, registration) completes even though expires_in has passed (spec-requirements A.12-2).
    default_authorization_session_duration: Annotated[int, Field(gt=0, le=86400)] = 1800
    # How long a server-issued DPoP nonce stays valid (between 1x and 2x this; RFC 9449 §8).
    default_dpop_nonce_duration: Annotated[int, Field(gt=0, le=86400)] = 300
    dpop_proof_max_age_seconds: Annotated[int, Field(gt=0, le=3600)] = 60  # RFC 9449 §11.1
    max_request_object_lifetime_seconds: Annotated[int, Field(gt=0, le=86400)] = 3600  # FAPI: exp - nbf <= 60 min
    default_max_state_length: Annotated[int, Field(gt=0)] = 2048
    default_max_nonce_length: Annotated[int, Field(gt=0)] = 512

    # Client authentication (RFC 7523 assertions, RFC 8705 certificates).
    clock_skew_seconds: Annotated[int, Field(ge=0, le=300)] = 10  # FAPI-11: accept 10 s in the future
    max_assertion_lifetime_seconds: Annotated[int, Field(gt=0, le=3600)] = 300
    secret_encryption_key: SecretStr | None = Field(
        default=None,
        description="32 bytes, base64url: seals client_secret_jwt secrets (default: derived from the pepper)",
    )
    jwks_fetch_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    jwks_max_bytes: Annotated[int, Field(gt=0)] = 64 * 1024
    jwks_cache_seconds: Annotated[float, Field(gt=0)] = 300.0  # 0 would fetch on every push
    jwks_refetch_min_interval_seconds: Annotated[float, Field(ge=0)] = 30.0
    jwks_cache_max_entries: Annotated[int, Field(gt=0)] = 1000
    jwks_allow_private_addresses: bool = Field(
        default=False, description="Allow jwksUri on loopback/private networks and over http (development only)"
    )
    trust_client_certificate_header: bool = Field(
        default=False, description="Take the TLS client certificate from a header set by a TLS-terminating proxy"
    )
    client_certificate_header: str = "Client-Cert"  # RFC 9440
    redis_url: str | None = Field(
        default=None, description="redis://host:port/db for the shared replay store (and pushed requests, see below)"
    )
    pushed_request_store: Literal["database", "redis"] = Field(
        default="database",
        description="Where pushed requests live: the database, or Redis at redis_url (each key expiring with its "
        "request; durability is then Redis's, app/db/redis_pushed_requests.py)",
    )
    redis_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=5.0,
        description="Bounds each Redis connect and command (replay entries, pushed requests); an unreachable or "
        "stuck Redis is then answered 503 like an unavailable database",
    )

    # Rate limiting (fixed windows, `limits` notation), shared through the database or Redis.
    rate_limit_per_address: str = "600/minute"
    rate_limit_per_client: str = "300/minute"
    rate_limit_failed_authentication: str = Field(
        default="20/minute", description="Failed client authentications per address and per client"
    )
    rate_limit_sync_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0,
        description="How often each replica adds its hits to the shared counters and reads the others' back",
    )

    # Service and client records cached in each process (app/db/cache.py).
    record_cache_seconds: Annotated[float, Field(ge=0, le=300)] = Field(
        default=5.0,
        description="How long a replica may use a service or client it has read; a change made through another "
        "replica (a deleted client, a rotated secret) takes effect here at most this much later. 0 turns it off",
    )
    record_cache_max_entries: Annotated[int, Field(gt=0)] = 10_000

    push_write_batch_max: Annotated[int, Field(gt=0, le=10_000)] = Field(
        default=500, description="Most pushed requests one INSERT transaction of the batched writer holds"
    )
    push_write_concurrency: Annotated[int, Field(gt=0, le=64)] = Field(
        default=4, description="Batches of pushed requests written at once, each on a pooled connection"
    )
    push_write_linger_seconds: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.01,
        description="How long a batch writer keeps its connection for the next pushes once none is waiting",
    )

    # Housekeeping.
    purge_interval_seconds: Annotated[float, Field(gt=0)] = 60.0
    purge_batch_size: Annotated[int, Field(gt=0)] = 1000

    # Database pool: fail fast under overload rather than queueing without bound. No overflow by default:
    # overflow connections are closed on return, and the reconnects cost PostgreSQL about a quarter of
    # its CPU under load (bench/RESULTS.md).
    db_pool_size: Annotated[int, Field(gt=0)] = 15
    db_max_overflow: Annotated[int, Field(ge=0)] = 0
    db_pool_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Bounds on a database that is unreachable (connect) or stuck (a statement or lock wait); psycopg's
    # own connect timeout is 130 s and PostgreSQL's statement timeout is none. 0 turns the statement one off.
    db_connect_timeout_seconds: Annotated[int, Field(ge=2)] = 5
    db_statement_timeout_seconds: Annotated[float, Field(ge=0)] = 5.0
    # SQLite has one writer: more connections only queue on its lock, which stretched p99 from ~170 ms
    # to ~1.2 s at 32 clients without adding throughput (bench/RESULTS.md).
    sqlite_pool_size: Annotated[int, Field(gt=0)] = 1

    log_level: str = "INFO"
    # On SIGTERM, in-flight requests get this long to finish; then the server closes them.
    shutdown_grace_seconds: Annotated[int, Field(gt=0, le=300)] = 25

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        """Accept the URL forms operators paste from their provider and use the async drivers."""
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        return value

    @field_validator("secret_encryption_key")
    @classmethod
    def _check_encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(decode_key(value.get_secret_value()) or b"") != 32:
            raise ValueError("secret_encryption_key must be 32 bytes in base64url (e.g. secrets.token_urlsafe(32))")
        return value

    @model_validator(mode="after")
    def _redis_store_needs_redis(self) -> Self:
        """Pushed requests in Redis need a Redis to keep them in."""
        if self.pushed_request_store == "redis" and not self.redis_url:
            raise ValueError("pushed_request_store 'redis' needs redis_url (PAR_REDIS_URL) to be set")
        return self

    @property
    def secret_encryption_key_bytes(self) -> bytes | None:
        return decode_key(self.secret_encryption_key.get_secret_value()) if self.secret_encryption_key else None

    @field_validator("public_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("public_base_url must be an http(s) URL")
        return value.rstrip("/")

    def require_production_secrets(self) -> None:
        """Refuse to serve with a missing, short or placeholder admin token or pepper."""
        problems = [
            message
            for name, secret in (("PAR_ADMIN_TOKEN", self.admin_token), ("PAR_PEPPER", self.pepper))
            if (message := _secret_problem(name, secret))
        ]
        if problems:
            raise UnsafeSettingsError(
                "; ".join(problems) + ". Set them (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                " or run `par-server demo` for a throw-away local instance."
            )

    @property
    def pepper_bytes(self) -> bytes:
        if self.pepper is None:
            raise UnsafeSettingsError("PAR_PEPPER is not set")
        return self.pepper.get_secret_value().encode()


def _secret_problem(name: str, secret: SecretStr | None) -> str | None:
    if secret is None or not secret.get_secret_value():
        return f"{name} is not set"
    value = secret.get_secret_value()
    if value.lower() in PLACEHOLDER_SECRETS:
        return f"{name} is a placeholder value"
    if len(value) < MIN_SECRET_LENGTH:
        return f"{name} must be at least {MIN_SECRET_LENGTH} characters"
    return None


def decode_key(text: str) -> bytes | None:
    """Base64url with or without padding; None when it is not base64url at all."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
