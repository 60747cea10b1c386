"""All configuration, read once from the environment (prefix ``PAR_``) and passed explicitly."""

from __future__ import annotations

import base64
import binascii
import os
import re
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from limits import parse as parse_budget
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

DEFAULT_DATA_DIR = Path("data")
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "changethis", "secret", "password", "pepper"})
MIN_SECRET_LENGTH = 32
# The settings that may also be given as PAR_<NAME>_FILE: the secrets, and the URLs that can carry a password.
FILE_SETTINGS = ("database_url", "admin_token", "pepper", "secret_encryption_key", "redis_url")
# A secret or URL is far smaller; a bigger file is the wrong path (a log, a dump, /dev/zero), not a value.
MAX_SETTING_FILE_BYTES = 64 * 1024
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2: token
FILE_SUFFIX = "_FILE"


class UnsafeSettingsError(ValueError):
    """A value that must never reach production (missing or placeholder secret)."""


class Settings(BaseSettings):
    """par-server settings. Every limit the server enforces is one of these fields."""

    # Validation errors never repeat the value given: it may be a secret, or a URL with a password.
    model_config = SettingsConfigDict(env_prefix="PAR_", extra="ignore", hide_input_in_errors=True)

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
    max_header_bytes: Annotated[int, Field(gt=0)] = 16 * 1024  # target and all headers together; larger → 431
    max_parameters: Annotated[int, Field(gt=0)] = 100
    max_parameter_bytes: Annotated[int, Field(gt=0)] = 16 * 1024
    # Nesting of any JSON read from a request (authorization_details, JWTs, jwks, /api bodies) or a
    # fetched JWKS. A JWKS is 4 deep; the bound keeps well clear of Python's recursion limit.
    max_json_depth: Annotated[int, Field(gt=0, le=256)] = 32

    # Defaults of per-service settings.
    default_pushed_auth_req_duration: Annotated[int, Field(gt=0, le=86400)] = 60
    # How long a request stays resolvable and consumable after its first resolve, so that a slow login
    # (MFA, registration) completes even though expires_in has passed (NOTE-02, docs/requirements.md).
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
    redis_max_connections: Annotated[int, Field(gt=0)] = Field(
        default=100,
        description="Redis connections per process for replay entries and pushed requests; when all are in use a "
        "command waits for one, up to redis_timeout_seconds",
    )
    redis_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=5.0,
        description="Bounds each Redis connect and command (replay entries, pushed requests); an unreachable or "
        "stuck Redis is then answered 503 like an unavailable database",
    )

    # Rate limiting (fixed windows, `limits` notation; "" turns a budget off), shared through the database
    # or Redis. They stop abuse and must not throttle legitimate traffic: README "### Rate limits" sizes them.
    rate_limit_per_address: str = Field(
        default="600/minute",
        description="Pushes per client address that did not authenticate a confidential client",
    )
    rate_limit_per_client: str = Field(
        default="", description="Pushes per confidential client, spent only by pushes that authenticated it"
    )
    rate_limit_per_service_token: str = Field(
        default="", description="Backend API pushes per service access token (the authorization server)"
    )
    rate_limit_failed_authentication: str = Field(
        default="20/minute", description="Failed client authentications per client address and per (client, address)"
    )
    rate_limit_max_counters: Annotated[int, Field(ge=100)] = Field(
        default=100_000, description="Rate-limit counters one process keeps in memory between syncs"
    )
    trusted_proxies: str = Field(
        default="",
        description="Addresses or CIDRs of the proxies whose X-Forwarded-For names the client (none by default)",
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

    # Client secrets brought from another server (app/core/secrets.py): README "Adopting existing clients".
    client_secret_min_length: Annotated[int, Field(ge=32, le=128)] = Field(
        default=32, description="Fewest characters a client secret given at create or secret/update may have"
    )
    # 190: a client_secret_jwt secret is kept sealed, and the sealed form must fit its column.
    client_secret_max_length: Annotated[int, Field(ge=32, le=190)] = Field(
        default=128, description="Most characters a client secret given at create or secret/update may have"
    )
    imported_bcrypt_max_cost: Annotated[int, Field(ge=4, le=31)] = Field(
        default=12, description="Highest bcrypt cost an imported clientSecretHash may have (12: about 0.25 s a check)"
    )
    imported_pbkdf2_max_rounds: Annotated[int, Field(ge=1000, le=10_000_000)] = Field(
        default=1_000_000,
        description="Most rounds an imported pbkdf2_sha256 clientSecretHash may have (1,000,000: about 0.25 s)",
    )
    imported_hash_checks_in_flight: Annotated[int, Field(gt=0, le=64)] = Field(
        default=1,
        description="Imported (bcrypt, pbkdf2) client secret hashes one process checks at once; more wait their turn",
    )
    imported_hash_checks_waiting: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=8,
        description="Imported hash checks that may wait for a turn; a push beyond them gets 503 and Retry-After",
    )

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
    worker_metrics_interval_seconds: Annotated[float, Field(gt=0)] = Field(
        default=5.0,
        description="With several workers, how often each writes its process and GC metrics for every scrape",
    )

    # Database pool: fail fast under overload rather than queueing without bound. No overflow by default:
    # overflow connections are closed on return, and the reconnects cost PostgreSQL much of its CPU under
    # load (bench/RESULTS.md, "Figures behind the code's choices").
    db_pool_size: Annotated[int, Field(gt=0)] = 15
    db_max_overflow: Annotated[int, Field(ge=0)] = 0
    db_pool_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Bounds on a database that is unreachable (connect) or stuck (a statement or lock wait); psycopg's
    # own connect timeout is 130 s and PostgreSQL's statement timeout is none. 0 turns the statement one off.
    db_connect_timeout_seconds: Annotated[int, Field(ge=2)] = 5
    db_statement_timeout_seconds: Annotated[float, Field(ge=0)] = 5.0
    # A stopped or partitioned server applies no statement timeout: this process's own bound on every
    # answer (app/db/engine.py), above the statement timeout so that the server's cancel comes first.
    db_client_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 7.0
    readyz_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=3.0, description="/readyz answers 503 when the database or Redis has not answered within this"
    )
    # SQLite has one writer: more connections only queue on its lock, which stretched the tail latency
    # several times over without adding throughput (bench/RESULTS.md, "Figures behind the code's choices").
    sqlite_pool_size: Annotated[int, Field(gt=0)] = 1

    log_level: str = "INFO"
    # On SIGTERM, in-flight requests get this long to finish; then the server closes them.
    shutdown_grace_seconds: Annotated[int, Field(gt=0, le=300)] = 25
    # With tracing on, then the spans still held get this long to be exported; past it they are dropped, so
    # that a collector that does not answer cannot hold the process up (its exporter waits up to 10 s per
    # attempt, and the batch processor up to 30 s).
    traces_shutdown_flush_seconds: Annotated[float, Field(gt=0, le=300)] = 5

    # The HTTP server (uvicorn), per process; README "### Limits and timeouts" sizes them.
    keep_alive_timeout_seconds: Annotated[int, Field(gt=0, le=3600)] = Field(
        default=5,
        description="How long an idle kept-alive connection waits for its next request; a proxy's upstream idle "
        "timeout must be shorter",
    )
    request_read_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0,
        description="A whole request, headers and body, must arrive within this from its first byte (or from the "
        "connection's start); then 408 and the connection is closed",
    )
    max_connections: Annotated[int, Field(gt=0)] = Field(
        default=1000,
        description="Open connections, or requests in progress, per process beyond which a request is answered 503",
    )
    listen_backlog: Annotated[int, Field(gt=0, le=65535)] = Field(
        default=2048, description="Connections the kernel queues for accept() (capped by net.core.somaxconn)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init kwargs, then PAR_<NAME>, then PAR_<NAME>_FILE, then the defaults."""
        return init_settings, env_settings, SettingFilesSource(settings_cls), dotenv_settings, file_secret_settings

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

    @field_validator("rate_limit_per_address", "rate_limit_per_client", "rate_limit_per_service_token")
    @classmethod
    def _check_budget(cls, value: str) -> str:
        if value.strip():
            parse_budget(value)  # raises ValueError on a malformed budget
        return value.strip()

    @field_validator("rate_limit_failed_authentication")
    @classmethod
    def _check_required_budget(cls, value: str) -> str:
        parse_budget(value)
        return value.strip()

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        entries = value.replace(",", " ").split()
        for entry in entries:
            try:
                ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry[:64]!r} is not an IP address or CIDR") from None
        return " ".join(entries)

    @field_validator("client_certificate_header")
    @classmethod
    def _check_header_name(cls, value: str) -> str:
        # RFC 9110 §5.1: a field name is a token; anything else could never match a request's header.
        if not _FIELD_NAME.fullmatch(value):
            raise ValueError(f"client_certificate_header: {value[:64]!r} is not an HTTP field name")
        return value

    @field_validator("secret_encryption_key")
    @classmethod
    def _check_encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(decode_key(value.get_secret_value()) or b"") != 32:
            raise ValueError("secret_encryption_key must be 32 bytes in base64url (e.g. secrets.token_urlsafe(32))")
        return value

    @model_validator(mode="after")
    def _client_timeout_above_statement_timeout(self) -> Self:
        """A statement the server would cancel (keeping the connection) must not be cut short by the
        client (dropping the connection): the client's bound is the backstop, not the rule."""
        if self.db_statement_timeout_seconds and self.db_client_timeout_seconds <= self.db_statement_timeout_seconds:
            raise ValueError(
                "db_client_timeout_seconds must be greater than db_statement_timeout_seconds "
                "(PAR_DB_CLIENT_TIMEOUT_SECONDS > PAR_DB_STATEMENT_TIMEOUT_SECONDS)"
            )
        return self

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


class SettingFilesSource(PydanticBaseSettingsSource):
    """Reads each setting of ``FILE_SETTINGS`` from the file that ``PAR_<NAME>_FILE`` names.

    Docker and Compose secrets and Kubernetes secret volumes hand secrets over as files; the ``_FILE``
    convention (as in the official postgres image) lets the operator point at any such path and keeps the
    secret out of the environment, which ``docker inspect`` shows and child processes inherit.
    ``PAR_<NAME>`` and ``PAR_<NAME>_FILE`` together are refused as ambiguous. Trailing line endings are
    dropped (``echo secret > file`` writes one); other whitespace is kept, as a password may end in it.
    Errors name the variable and the path, never the file's content.
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.prefix = self.config.get("env_prefix", "")
        # Looked up the way pydantic-settings' environment source looks up PAR_<NAME>.
        self.case_sensitive = self.config.get("case_sensitive", False)
        self.environ = {name if self.case_sensitive else name.lower(): value for name, value in os.environ.items()}

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in FILE_SETTINGS:
            value, _, _ = self.get_field_value(self.settings_cls.model_fields[name], name)
            if value is not None:
                values[name] = value
        return values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # noqa: ARG002 (the base signature)
        variable = f"{self.prefix}{field_name}".upper()
        file_variable = variable + FILE_SUFFIX
        path = self._getenv(file_variable)
        if path is None:
            return None, field_name, False
        if self._getenv(variable) is not None:
            raise SettingsError(f"{variable} and {file_variable} are both set; set only one of them")
        if field_name in self.current_state:  # given to Settings() explicitly, which wins
            return None, field_name, False
        return _read_setting_file(file_variable, path), field_name, False

    def _getenv(self, name: str) -> str | None:
        return self.environ.get(name if self.case_sensitive else name.lower())


def _read_setting_file(variable: str, path: str) -> str:
    """The value in the file at ``path``, less its trailing line endings; ``variable`` names it in errors."""
    if not path:
        raise SettingsError(f"{variable} is empty; set it to the path of a file holding the value, or unset it")
    try:
        with open(path, "rb") as handle:
            content = handle.read(MAX_SETTING_FILE_BYTES + 1)
    except OSError as error:
        raise SettingsError(f"{variable}: cannot read {path}: {error.strerror or type(error).__name__}") from None
    if len(content) > MAX_SETTING_FILE_BYTES:
        raise SettingsError(f"{variable}: {path} is larger than {MAX_SETTING_FILE_BYTES // 1024} KiB")
    try:
        value = content.decode("utf-8")
    except UnicodeDecodeError:
        # The decode error quotes a byte of the content: not chained, not shown.
        raise SettingsError(f"{variable}: {path} is not UTF-8 text") from None
    value = value.rstrip("\r\n")
    if not value:
        raise SettingsError(f"{variable}: {path} is empty")
    return value


def settings_error_message(error: ValidationError) -> str:
    """What is wrong with the settings, naming each variable but never its value."""
    prefix = Settings.model_config.get("env_prefix", "")
    problems = []
    for problem in error.errors(include_url=False, include_context=False, include_input=False):
        message = problem["msg"].removeprefix("Value error, ")
        location = problem["loc"]
        problems.append(f"{prefix}{str(location[0]).upper()}: {message}" if location else message)
    return "invalid settings: " + "; ".join(problems)


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
