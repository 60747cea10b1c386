"""``app.settings.Settings``: production-secret checks, URL normalisation, ``PAR_*_FILE`` settings, and the app
factory's guard."""

from __future__ import annotations

import os
import secrets
import traceback
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from app.main import app_from_environment, create_app
from app.settings import FILE_SETTINGS, MAX_SETTING_FILE_BYTES, Settings, UnsafeSettingsError

STRONG_TOKEN = secrets.token_urlsafe(32)  # 43 characters
STRONG_PEPPER = secrets.token_urlsafe(32)
SECRET_NAMES = {"admin_token": "PAR_ADMIN_TOKEN", "pepper": "PAR_PEPPER"}


@pytest.fixture(autouse=True)
def no_par_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read PAR_* variables: keep the developer's or CI's environment out of these tests."""
    for name in [name for name in os.environ if name.startswith("PAR_")]:
        monkeypatch.delenv(name)


def strong(**overrides: str | None) -> Settings:
    values: dict[str, str | None] = {"admin_token": STRONG_TOKEN, "pepper": STRONG_PEPPER}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def refusal(settings: Settings) -> str:
    with pytest.raises(UnsafeSettingsError) as raised:
        settings.require_production_secrets()
    return str(raised.value)


def test_two_strong_secrets_pass() -> None:
    assert len(STRONG_TOKEN) == len(STRONG_PEPPER) == 43
    strong().require_production_secrets()


def test_missing_secrets_are_refused_with_a_clear_message() -> None:
    message = refusal(Settings())
    assert "PAR_ADMIN_TOKEN is not set" in message
    assert "PAR_PEPPER is not set" in message
    assert "par-server demo" in message  # says how to get going


@pytest.mark.parametrize("field", sorted(SECRET_NAMES))
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is not set"),
        ("short-but-not-empty", "must be at least 32 characters"),
        ("x" * 31, "must be at least 32 characters"),
        ("changeme", "is a placeholder value"),
        ("CHANGEME", "is a placeholder value"),
        ("password", "is a placeholder value"),
    ],
)
def test_weak_secret_is_refused(field: str, value: str, problem: str) -> None:
    message = refusal(strong(**{field: value}))
    assert f"{SECRET_NAMES[field]} {problem}" in message
    other = next(name for key, name in SECRET_NAMES.items() if key != field)
    assert other not in message  # only the weak one is named
    if value:
        assert value not in message  # never echo the secret


def test_secrets_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAR_ADMIN_TOKEN", STRONG_TOKEN)
    monkeypatch.setenv("PAR_PEPPER", STRONG_PEPPER)
    settings = Settings()
    settings.require_production_secrets()
    assert settings.pepper_bytes == STRONG_PEPPER.encode()
    assert STRONG_TOKEN not in repr(settings) and STRONG_PEPPER not in repr(settings)


def test_pepper_bytes_without_a_pepper_is_refused() -> None:
    with pytest.raises(UnsafeSettingsError, match="PAR_PEPPER"):
        _ = Settings().pepper_bytes


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("postgres://par:pw@db.example:5432/par", "postgresql+psycopg://par:pw@db.example:5432/par"),
        ("postgresql://par@db.example/par", "postgresql+psycopg://par@db.example/par"),
        ("postgresql+psycopg://par@db.example/par", "postgresql+psycopg://par@db.example/par"),
        ("sqlite:///data/par.db", "sqlite+aiosqlite:///data/par.db"),
        ("sqlite:////var/lib/par.db", "sqlite+aiosqlite:////var/lib/par.db"),
        ("sqlite+aiosqlite:///par.db", "sqlite+aiosqlite:///par.db"),
    ],
)
def test_database_url_is_normalised_to_async_drivers(
    monkeypatch: pytest.MonkeyPatch, given: str, normalised: str
) -> None:
    assert Settings(database_url=given).database_url == normalised
    monkeypatch.setenv("PAR_DATABASE_URL", given)
    assert Settings().database_url == normalised


def test_default_database_is_sqlite_in_the_data_directory() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///data/par-server.db"
    assert settings.data_dir == Path("data")


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("https://as.example.com/", "https://as.example.com"),
        ("https://as.example.com/base//", "https://as.example.com/base"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_public_base_url_loses_its_trailing_slash(given: str, normalised: str) -> None:
    assert Settings(public_base_url=given).public_base_url == normalised


@pytest.mark.parametrize("given", ["as.example.com", "ftp://as.example.com"])
def test_public_base_url_must_be_http(given: str) -> None:
    with pytest.raises(ValidationError, match="public_base_url"):
        Settings(public_base_url=given)


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAR_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1  2001:db8::/32")
    assert Settings().trusted_proxies == "10.0.0.0/8 192.0.2.1 2001:db8::/32"
    monkeypatch.setenv("PAR_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")
    with pytest.raises(ValidationError, match="'proxy.internal' is not an IP address or CIDR"):
        Settings()


@pytest.mark.parametrize("name", ["X-SSL-Cert", "ssl_client_cert", "Client-Cert"])
def test_the_client_certificate_header_is_a_field_name(name: str) -> None:
    assert Settings(client_certificate_header=name).client_certificate_header == name


@pytest.mark.parametrize("name", ["", "Client Cert", "Client-Cert:", "Clïent-Cert", "X-Cert\n"])
def test_a_client_certificate_header_that_no_request_could_carry_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="is not an HTTP field name"):
        Settings(client_certificate_header=name)


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("rate_limit_per_client", "", True),  # off
        ("rate_limit_per_service_token", "100/second", True),
        ("rate_limit_per_address", "lots", False),
        ("rate_limit_failed_authentication", "", False),  # the lockout cannot be turned off
    ],
)
def test_rate_limit_budgets_are_checked_when_read(field: str, value: str, valid: bool) -> None:
    if valid:
        Settings(**{field: value})  # type: ignore[arg-type]
    else:
        with pytest.raises(ValidationError):
            Settings(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("weak", [{"admin_token": None}, {"pepper": None}, {"pepper": "changeme"}])
def test_create_app_refuses_unsafe_settings(tmp_path: Path, weak: dict[str, str | None]) -> None:
    settings = strong(database_url=f"sqlite+aiosqlite:///{tmp_path / 'par.db'}", **weak)
    with pytest.raises(UnsafeSettingsError):
        create_app(settings)
    assert not (tmp_path / "par.db").exists()


@pytest.mark.parametrize("key", ["too-short", "!!!not base64!!!" * 3, "A" * 44])
def test_secret_encryption_key_must_be_32_bytes(key: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Settings(secret_encryption_key=key)


def test_secret_encryption_key_accepts_token_urlsafe() -> None:
    import secrets

    settings = Settings(secret_encryption_key=secrets.token_urlsafe(32))
    assert settings.secret_encryption_key_bytes is not None and len(settings.secret_encryption_key_bytes) == 32


def test_pushed_requests_in_redis_need_a_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """PAR_PUSHED_REQUEST_STORE=redis without PAR_REDIS_URL is refused when the settings are read."""
    monkeypatch.setenv("PAR_PUSHED_REQUEST_STORE", "redis")
    with pytest.raises(ValidationError, match=r"pushed_request_store 'redis' needs redis_url \(PAR_REDIS_URL\)"):
        Settings()
    monkeypatch.setenv("PAR_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert Settings().pushed_request_store == "redis"


def test_pushed_requests_stay_in_the_database_by_default() -> None:
    assert Settings().pushed_request_store == "database"
    assert Settings(redis_url="redis://127.0.0.1:6379/0").pushed_request_store == "database"


def test_the_client_timeout_must_exceed_the_statement_timeout() -> None:
    """The server's statement timeout cancels a slow statement and keeps the connection; the client's
    bound, which drops it, is only for a server that answers nothing."""
    with pytest.raises(ValidationError, match="db_client_timeout_seconds must be greater than"):
        Settings(db_statement_timeout_seconds=10, db_client_timeout_seconds=10)
    assert Settings(db_statement_timeout_seconds=10, db_client_timeout_seconds=12).db_client_timeout_seconds == 12
    assert Settings(db_statement_timeout_seconds=0, db_client_timeout_seconds=1).db_client_timeout_seconds == 1


def test_the_http_servers_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.keep_alive_timeout_seconds, defaults.request_read_timeout_seconds) == (5, 30.0)
    assert (defaults.max_connections, defaults.listen_backlog) == (1000, 2048)
    monkeypatch.setenv("PAR_KEEP_ALIVE_TIMEOUT_SECONDS", "65")
    monkeypatch.setenv("PAR_REQUEST_READ_TIMEOUT_SECONDS", "12.5")
    monkeypatch.setenv("PAR_MAX_CONNECTIONS", "200")
    monkeypatch.setenv("PAR_LISTEN_BACKLOG", "128")
    given = Settings()
    assert (given.keep_alive_timeout_seconds, given.request_read_timeout_seconds) == (65, 12.5)
    assert (given.max_connections, given.listen_backlog) == (200, 128)


@pytest.mark.parametrize(
    "field", ["keep_alive_timeout_seconds", "request_read_timeout_seconds", "max_connections", "listen_backlog"]
)
def test_the_http_servers_limits_are_positive(field: str) -> None:
    """0 would close every connection at once, or answer every request 503."""
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: 0})  # type: ignore[arg-type]


def test_the_pushed_request_store_is_database_or_redis() -> None:
    with pytest.raises(ValidationError, match="'database' or 'redis'"):
        Settings(pushed_request_store="memcached")


# --- PAR_<NAME>_FILE ----------------------------------------------------------------------------------

# A value for each setting that may come from a file, as Settings holds it once read.
FILE_VALUES = {
    "database_url": "postgresql+psycopg://par:file-password@db.example:5432/par",
    "admin_token": STRONG_TOKEN,
    "pepper": STRONG_PEPPER,
    "secret_encryption_key": secrets.token_urlsafe(32),
    "redis_url": "redis://:file-password@redis.example:6379/0",
}
SENTINEL = "sentinel-content-that-must-never-be-shown"


def plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def file_setting(monkeypatch: pytest.MonkeyPatch, path: Path, content: str | bytes, variable: str) -> Path:
    """Write `content` to `path` and point `variable` (e.g. PAR_PEPPER_FILE) at it."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    monkeypatch.setenv(variable, str(path))
    return path


def file_error(match: str) -> str:
    with pytest.raises(SettingsError, match=match) as raised:
        Settings()
    return str(raised.value)


def test_every_file_setting_has_a_value_here() -> None:
    assert set(FILE_VALUES) == set(FILE_SETTINGS)


@pytest.mark.parametrize("field", FILE_SETTINGS)
def test_a_setting_is_read_from_the_file_its_file_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, field: str
) -> None:
    file_setting(monkeypatch, tmp_path / field, FILE_VALUES[field] + "\n", f"PAR_{field.upper()}_FILE")
    settings = Settings()
    assert plain(getattr(settings, field)) == FILE_VALUES[field]
    if isinstance(getattr(settings, field), SecretStr):
        assert FILE_VALUES[field] not in repr(settings)


def test_secrets_from_files_pass_the_production_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file_setting(monkeypatch, tmp_path / "token", STRONG_TOKEN, "PAR_ADMIN_TOKEN_FILE")
    file_setting(monkeypatch, tmp_path / "pepper", STRONG_PEPPER + "\n", "PAR_PEPPER_FILE")
    settings = Settings()
    settings.require_production_secrets()
    assert settings.pepper_bytes == STRONG_PEPPER.encode()


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("value", "value"),
        ("value\n", "value"),
        ("value\r\n", "value"),
        ("value\n\n", "value"),
        ("inner \t space\nand lines \n", "inner \t space\nand lines "),  # only line endings go, at the end
        (" leading", " leading"),
    ],
)
def test_trailing_line_endings_are_dropped_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, value: str
) -> None:
    file_setting(monkeypatch, tmp_path / "pepper", content, "PAR_PEPPER_FILE")
    assert plain(Settings().pepper) == value


def test_a_file_database_url_is_normalised_like_any_other(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file_setting(monkeypatch, tmp_path / "url", "postgres://par:pw@db.example/par\n", "PAR_DATABASE_URL_FILE")
    assert Settings().database_url == "postgresql+psycopg://par:pw@db.example/par"


def test_a_variable_and_its_file_variable_together_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file_setting(monkeypatch, tmp_path / "token", STRONG_TOKEN, "PAR_ADMIN_TOKEN_FILE")
    monkeypatch.setenv("PAR_ADMIN_TOKEN", SENTINEL)
    message = file_error("PAR_ADMIN_TOKEN and PAR_ADMIN_TOKEN_FILE are both set")
    assert SENTINEL not in message and STRONG_TOKEN not in message
    with pytest.raises(SettingsError, match="both set"):  # an empty variable is set too
        monkeypatch.setenv("PAR_ADMIN_TOKEN", "")
        Settings()


def test_file_variables_are_looked_up_like_the_others_regardless_of_case(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """pydantic-settings matches PAR_ variables case-insensitively; the _FILE ones match the same way."""
    file_setting(monkeypatch, tmp_path / "pepper", STRONG_PEPPER, "par_pepper_file")
    assert plain(Settings().pepper) == STRONG_PEPPER
    monkeypatch.setenv("PAR_PEPPER", STRONG_PEPPER)
    file_error("PAR_PEPPER and PAR_PEPPER_FILE are both set")


def test_init_kwargs_win_over_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file_setting(monkeypatch, tmp_path / "pepper", STRONG_PEPPER, "PAR_PEPPER_FILE")
    assert plain(Settings(pepper="given-explicitly").pepper) == "given-explicitly"
    (tmp_path / "pepper").unlink()  # a file whose value would be discarded is not read at all
    assert plain(Settings(pepper="given-explicitly").pepper) == "given-explicitly"
    file_error("PAR_PEPPER_FILE: cannot read")


def test_a_missing_file_is_an_error_naming_the_variable_and_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-secret"
    monkeypatch.setenv("PAR_PEPPER_FILE", str(missing))
    message = file_error("PAR_PEPPER_FILE")
    assert f"cannot read {missing}: No such file or directory" in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (SENTINEL.encode() + b"\xff\xfe", "is not UTF-8 text"),
        (SENTINEL.encode() * (MAX_SETTING_FILE_BYTES // len(SENTINEL) + 1), "is larger than 64 KiB"),
    ],
)
def test_an_unusable_file_is_an_error_that_never_shows_its_content(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes, problem: str
) -> None:
    path = file_setting(monkeypatch, tmp_path / "secret", content, "PAR_ADMIN_TOKEN_FILE")
    with pytest.raises(SettingsError) as raised:
        Settings()
    assert str(raised.value) == f"PAR_ADMIN_TOKEN_FILE: {path} {problem}"
    shown = "".join(traceback.format_exception(raised.value))  # the error with whatever it chains
    assert SENTINEL not in shown and "codec" not in shown


def test_a_file_of_exactly_the_bound_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file_setting(monkeypatch, tmp_path / "secret", "x" * MAX_SETTING_FILE_BYTES, "PAR_ADMIN_TOKEN_FILE")
    assert plain(Settings().admin_token) == "x" * MAX_SETTING_FILE_BYTES


def test_a_directory_or_an_unreadable_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAR_PEPPER_FILE", str(tmp_path))
    assert f"cannot read {tmp_path}: Is a directory" in file_error("PAR_PEPPER_FILE")
    unreadable = file_setting(monkeypatch, tmp_path / "pepper", SENTINEL, "PAR_PEPPER_FILE")
    unreadable.chmod(0)
    if os.access(unreadable, os.R_OK):
        pytest.skip("running as root: file permissions do not apply")
    message = file_error("PAR_PEPPER_FILE")
    assert f"cannot read {unreadable}: Permission denied" in message and SENTINEL not in message


def test_an_empty_file_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAR_PEPPER_FILE", "")
    file_error("PAR_PEPPER_FILE is empty")


def test_an_invalid_value_from_a_file_is_not_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file_setting(monkeypatch, tmp_path / "key", SENTINEL, "PAR_SECRET_ENCRYPTION_KEY_FILE")
    with pytest.raises(ValidationError, match="32 bytes") as raised:
        Settings()
    assert SENTINEL not in str(raised.value)


def test_validation_errors_never_show_the_values_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model-level error would otherwise print every input, secrets and URL passwords included."""
    monkeypatch.setenv("PAR_ADMIN_TOKEN", SENTINEL)
    monkeypatch.setenv("PAR_DATABASE_URL", f"postgresql://par:{SENTINEL}@db/par")
    monkeypatch.setenv("PAR_PUSHED_REQUEST_STORE", "redis")
    with pytest.raises(ValidationError, match="needs redis_url") as raised:
        Settings()
    assert SENTINEL not in str(raised.value)


async def test_the_app_factory_reads_files_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`uvicorn --factory app.main:app_from_environment` (what `par-server serve` runs) takes the same path."""
    monkeypatch.setenv("PAR_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'par.db'}")
    file_setting(monkeypatch, tmp_path / "token", STRONG_TOKEN + "\n", "PAR_ADMIN_TOKEN_FILE")
    file_setting(monkeypatch, tmp_path / "pepper", STRONG_PEPPER + "\n", "PAR_PEPPER_FILE")
    app = app_from_environment()
    try:
        assert app.state.par.settings.pepper_bytes == STRONG_PEPPER.encode()
        assert plain(app.state.par.settings.admin_token) == STRONG_TOKEN
    finally:
        await app.state.par.aclose()
