"""``app.settings.Settings``: production-secret checks, URL normalisation, and the app factory's guard."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings, UnsafeSettingsError

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


@pytest.mark.parametrize("weak", [{"admin_token": None}, {"pepper": None}, {"pepper": "changeme"}])
def test_create_app_refuses_unsafe_settings(tmp_path: Path, weak: dict[str, str | None]) -> None:
    settings = strong(database_url=f"sqlite+aiosqlite:///{tmp_path / 'par.db'}", **weak)
    with pytest.raises(UnsafeSettingsError):
        create_app(settings)
    assert not (tmp_path / "par.db").exists()


@pytest.mark.parametrize("key", ["too-short", "!!!not base64!!!" * 3, "A" * 44])
def test_secret_encryption_key_must_be_32_bytes(key: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Settings(secret_encryption_key=key)  # type: ignore[arg-type]


def test_secret_encryption_key_accepts_token_urlsafe() -> None:
    import secrets

    settings = Settings(secret_encryption_key=secrets.token_urlsafe(32))  # type: ignore[arg-type]
    assert settings.secret_encryption_key_bytes is not None and len(settings.secret_encryption_key_bytes) == 32


def test_pushed_requests_in_redis_need_a_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 7: PAR_PUSHED_REQUEST_STORE=redis without PAR_REDIS_URL is refused when the settings are read."""
    monkeypatch.setenv("PAR_PUSHED_REQUEST_STORE", "redis")
    with pytest.raises(ValidationError, match=r"pushed_request_store 'redis' needs redis_url \(PAR_REDIS_URL\)"):
        Settings()
    monkeypatch.setenv("PAR_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert Settings().pushed_request_store == "redis"


def test_pushed_requests_stay_in_the_database_by_default() -> None:
    assert Settings().pushed_request_store == "database"
    assert Settings(redis_url="redis://127.0.0.1:6379/0").pushed_request_store == "database"


def test_the_pushed_request_store_is_database_or_redis() -> None:
    with pytest.raises(ValidationError, match="'database' or 'redis'"):
        Settings(pushed_request_store="memcached")  # type: ignore[arg-type]
