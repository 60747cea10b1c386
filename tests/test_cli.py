"""``par-server`` run in-process (``app.cli.main``) against a temporary SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import pickle
import secrets
import signal
import socket
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from passlib.hash import bcrypt, django_pbkdf2_sha256, pbkdf2_sha256

from app.api.http_protocol import CoalescingHttpToolsProtocol
from app.api.observability import MULTIPROCESS_DIR_VARIABLE, server_log_config
from app.cli import main, run_migrations
from app.core.secrets import CLIENT_SECRET_PREFIX
from app.main import create_app
from app.settings import Settings
from tests.factories import ClientHandle, par_params
from tests.faults import support

PEPPER = "cli-test-pepper-0123456789abcdefghijklmnopq"
REDIRECT_URI = "https://c.example/cb"
APP_TABLES = {"service", "client", "service_access_token", "pushed_request"}
UNLOGGABLE = "SHOULD-NOT-APPEAR"
# Variables the CLI reads, or sets for itself (`demo` exports its settings into os.environ).
CLI_VARIABLES = ("PAR_DATABASE_URL", "PAR_DATA_DIR", "PAR_ADMIN_TOKEN", "PAR_PEPPER", "PAR_PUBLIC_BASE_URL")


@dataclass
class Cli:
    capsys: pytest.CaptureFixture[str]
    database: Path
    data_dir: Path

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        """Run a command that must succeed and print JSON."""
        code, out, err = self.run(*argv)
        assert code == 0, err
        return json.loads(out)

    def rows(self, table: str) -> int:
        with sqlite3.connect(self.database) as connection:
            count: int = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
        return count


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.chdir(tmp_path)  # no alembic.ini here: the CLI falls back to the repository's
    for name in {name for name in os.environ if name.startswith("PAR_")} | set(CLI_VARIABLES):
        monkeypatch.setenv(name, "")  # records the original, so whatever the CLI sets is undone
        monkeypatch.delenv(name)
    database = tmp_path / "par.db"
    monkeypatch.setenv("PAR_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.setenv("PAR_DATA_DIR", str(tmp_path / "data"))
    return Cli(capsys=capsys, database=database, data_dir=tmp_path / "data")


@pytest.fixture
def migrated(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    code, _, err = cli.run("migrate")
    assert code == 0, err
    monkeypatch.setenv("PAR_PEPPER", PEPPER)
    return cli


@pytest.fixture
def service_id(migrated: Cli) -> int:
    service: dict[str, Any] = migrated.json("service", "create", "--name", "x", "--scope", "openid")
    return int(service["apiKey"])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def push_with_demo_credentials(database: Path, demo: dict[str, Any]) -> int:
    """The demo's confidential client pushes to the demo service, as its banner suggests."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database}", admin_token=demo["admin_token"], pepper=demo["pepper"]
    )
    app = create_app(settings)
    client = ClientHandle(id=demo["client_id"], secret=demo["client_secret"], body={})
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://par.test") as http:
            response = await http.post(
                f"/services/{demo['service_id']}/par", data=par_params(client), headers=client.basic()
            )
    finally:
        await app.state.par.aclose()
    return response.status_code


# --- migrate ------------------------------------------------------------------------------------------


def test_migrate_creates_the_schema(cli: Cli, caplog: pytest.LogCaptureFixture) -> None:
    code, _, err = cli.run("migrate")
    assert code == 0, err
    [done] = [record for record in caplog.records if record.name == "par_server.migrate"]
    assert getattr(done, "fields", None) == {"database": f"sqlite+aiosqlite:///{cli.database}", "revision": "head"}
    assert any(record.getMessage().startswith("Running upgrade") for record in caplog.records)
    with sqlite3.connect(cli.database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert APP_TABLES | {"alembic_version"} <= tables
    assert cli.run("migrate")[0] == 0  # idempotent


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default, under which SQLite would create its files 0644
    yield
    os.umask(previous)


async def files_while_serving(database: Path) -> dict[str, int]:
    """The modes of the database's files while the server has it open, after it wrote to it."""
    settings = Settings(database_url=f"sqlite+aiosqlite:///{database}", admin_token="a" * 43, pepper=PEPPER)
    app = create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://par.test") as http:
            await http.post(
                "/api/service/create", json={"serviceName": "x"}, headers={"Authorization": f"Bearer {'a' * 43}"}
            )
            return {path.name: mode(path) for path in database.parent.iterdir() if path.name.startswith(database.name)}
    finally:
        await app.state.par.aclose()


@pytest.mark.usefixtures("usual_umask")
def test_the_database_files_are_owner_only(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQLite file and its -wal and -shm files hold pushed parameters and secret hashes: 0600, in a
    directory made 0700, whether migrate or the server creates them."""
    database = cli.data_dir / "nested" / "par.db"
    monkeypatch.setenv("PAR_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    assert cli.run("migrate")[0] == 0
    assert (mode(database.parent), mode(database)) == (0o700, 0o600)
    with contextlib.closing(sqlite3.connect(database)) as migrated:  # WAL from the start
        assert migrated.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    modes = asyncio.run(files_while_serving(database))
    assert {"par.db", "par.db-wal", "par.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes
    served = cli.data_dir / "served" / "par.db"  # the server's engine, on a file no migration made
    assert set(asyncio.run(files_while_serving(served)).values()) == {0o600}
    assert mode(served.parent) == 0o700


# --- demo ---------------------------------------------------------------------------------------------


def test_demo_prepares_secrets_and_seeds_a_service(cli: Cli) -> None:
    code, _, err = cli.run("demo", "--no-serve")
    assert code == 0, err
    secrets_file, env_file = cli.data_dir / "demo-secrets.json", cli.data_dir / "demo.env"
    assert mode(secrets_file) == 0o600
    assert mode(env_file) == 0o600
    assert mode(cli.data_dir) == 0o700
    demo = json.loads(secrets_file.read_text())
    assert len(demo["admin_token"]) >= 43 and len(demo["pepper"]) >= 43
    assert demo["service_token"].startswith("par_sat_")
    assert demo["client_secret"].startswith("parcs")
    assert (cli.rows("service"), cli.rows("client")) == (1, 2)
    env = env_file.read_text()
    assert f"export PAR_DEMO_SERVICE_ID={demo['service_id']}\n" in env
    assert f"export PAR_DEMO_CLIENT_ID={demo['client_id']}\n" in env
    assert f"export PAR_DEMO_PUBLIC_CLIENT_ID={demo['public_client_id']}\n" in env
    assert f"/services/{demo['service_id']}/par" in env
    assert str(demo["client_id"]) in err  # the banner
    assert asyncio.run(push_with_demo_credentials(cli.database, demo)) == 201


def test_demo_run_twice_reuses_its_service_and_clients(cli: Cli) -> None:
    assert cli.run("demo", "--no-serve")[0] == 0
    first = json.loads((cli.data_dir / "demo-secrets.json").read_text())
    assert cli.run("demo", "--no-serve")[0] == 0
    second = json.loads((cli.data_dir / "demo-secrets.json").read_text())
    assert second == first
    assert (cli.rows("service"), cli.rows("client"), cli.rows("service_access_token")) == (1, 2, 1)


# --- services -----------------------------------------------------------------------------------------


def test_service_create_prints_the_access_token(migrated: Cli) -> None:
    service = migrated.json("service", "create", "--name", "x", "--scope", "openid", "--duration", "90")
    assert service["serviceName"] == "x"
    assert service["serviceAccessToken"].startswith("par_sat_")
    assert [scope["name"] for scope in service["supportedScopes"]] == ["openid"]
    assert service["pushedAuthReqDuration"] == 90
    assert service["issuer"] == f"http://127.0.0.1:8000/services/{service['apiKey']}"
    listed = migrated.json("service", "list")
    assert [entry["apiKey"] for entry in listed] == [service["apiKey"]]
    assert "serviceAccessToken" not in listed[0]


def test_management_commands_refuse_without_a_pepper(cli: Cli) -> None:
    assert cli.run("migrate")[0] == 0
    code, out, err = cli.run("service", "create", "--name", "x")
    assert code == 2
    assert out == ""
    assert "PAR_PEPPER is not set" in err
    assert cli.rows("service") == 0


@pytest.mark.parametrize("issuer", ["https://éx.example/\u2028", "https://as.example/a\nb"])
def test_service_create_refuses_an_issuer_that_is_not_an_ascii_uri(migrated: Cli, issuer: str) -> None:
    code, out, err = migrated.run("service", "create", "--name", "x", "--issuer", issuer)
    assert (code, out) == (1, "")
    assert "issuer must be a URI of ASCII characters" in err
    assert migrated.rows("service") == 0


# --- clients ------------------------------------------------------------------------------------------


def test_client_create_prints_a_secret(migrated: Cli, service_id: int) -> None:
    created = migrated.json("client", "create", "--service", str(service_id), "--redirect-uri", REDIRECT_URI)
    assert (created["clientType"], created["tokenAuthMethod"]) == ("CONFIDENTIAL", "CLIENT_SECRET_BASIC")
    assert created["clientSecret"].startswith("parcs")
    assert created["redirectUris"] == [REDIRECT_URI]


def test_client_create_public_prints_no_secret(migrated: Cli, service_id: int) -> None:
    created = migrated.json(
        "client", "create", "--service", str(service_id), "--redirect-uri", REDIRECT_URI, "--public"
    )
    assert (created["clientType"], created["tokenAuthMethod"]) == ("PUBLIC", "NONE")
    assert "clientSecret" not in created


ADOPTED_SECRET = "adopted-Zq8vN3xR7mK2pL9wT4bY6cJ1hF5sD0gA"


def _client_secret_hash(migrated: Cli, client_id: int) -> str:
    with sqlite3.connect(migrated.database) as connection:
        stored: str = connection.execute("SELECT secret_hash FROM client WHERE id = ?", (client_id,)).fetchone()[0]
    return stored


def test_client_create_keeps_a_secret_from_stdin(
    migrated: Cli, service_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(ADOPTED_SECRET + "\n"))
    created = migrated.json(
        "client", "create", "--service", str(service_id), "--redirect-uri", REDIRECT_URI, "--secret-stdin"
    )
    assert created["clientSecret"] == ADOPTED_SECRET
    stored = _client_secret_hash(migrated, created["clientId"])
    assert stored.startswith("$par-hmac-sha256$") and ADOPTED_SECRET not in stored


def test_client_create_keeps_a_secret_hash_from_stdin(
    migrated: Cli, service_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported = pbkdf2_sha256.using(rounds=1000).hash(ADOPTED_SECRET)
    monkeypatch.setattr("sys.stdin", io.StringIO(imported + "\n"))
    created = migrated.json(
        "client", "create", "--service", str(service_id), "--redirect-uri", REDIRECT_URI, "--secret-hash-stdin"
    )
    assert "clientSecret" not in created
    assert _client_secret_hash(migrated, created["clientId"]) == imported


@pytest.mark.parametrize(
    ("option", "given", "message"),
    [
        ("--secret-stdin", "too-short", "the client secret must be 32 to 128 characters long"),
        ("--secret-stdin", "a" * 40, "too predictable"),
        ("--secret-hash-stdin", "$2b$13$" + "a" * 53, "cost 13 exceeds the 12"),
        ("--secret-hash-stdin", ADOPTED_SECRET, "must be a bcrypt"),
    ],
)
def test_client_create_refuses_weak_secrets_and_unusable_hashes(
    migrated: Cli, service_id: int, monkeypatch: pytest.MonkeyPatch, option: str, given: str, message: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(given + "\n"))
    code, out, err = migrated.run(
        "client", "create", "--service", str(service_id), "--redirect-uri", REDIRECT_URI, option
    )
    assert (code, out) == (1, "")
    assert message in err and given not in err
    assert migrated.rows("client") == 0


def _import_file(tmp_path: Path, records: Any) -> str:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(records))
    return str(path)


IMPORTED_HASH = pbkdf2_sha256.using(rounds=1000).hash(ADOPTED_SECRET)
VALID_RECORDS = [
    {"clientName": "kept", "redirectUris": [REDIRECT_URI], "clientSecret": ADOPTED_SECRET},
    {"clientName": "hashed", "redirectUris": [REDIRECT_URI], "clientSecretHash": IMPORTED_HASH, "clientIdAlias": "h"},
    {"clientName": "new", "redirectUris": [REDIRECT_URI]},
]
INVALID_RECORDS = [
    {"redirectUris": [REDIRECT_URI], "clientSecret": "weak-" + UNLOGGABLE},
    {"redirectUris": [REDIRECT_URI], "clientSecretHash": "$2b$13$" + "a" * 53},
    {"redirectUris": ["/relative"]},
    {"redirectUris": [REDIRECT_URI], "clientIdAlias": "h"},  # the alias of an earlier record
    ["not", "an", "object"],
    {"redirectUris": REDIRECT_URI, "clientSecret": 42},
]


def test_client_import_stores_every_record(migrated: Cli, service_id: int, tmp_path: Path) -> None:
    path = _import_file(tmp_path, VALID_RECORDS)
    result = migrated.json("client", "import", path, "--service", str(service_id))
    assert result["refused"] == []
    kept, hashed, new = result["created"]
    assert [entry["index"] for entry in result["created"]] == [0, 1, 2]
    assert "clientSecret" not in kept and "clientSecret" not in hashed  # the file has them already
    assert new["clientSecret"].startswith(CLIENT_SECRET_PREFIX)  # generated: shown once
    assert _client_secret_hash(migrated, hashed["clientId"]) == IMPORTED_HASH
    assert _client_secret_hash(migrated, kept["clientId"]).startswith("$par-hmac-sha256$")


def test_imported_secrets_of_every_kind_authenticate_and_hashes_are_replaced_after_first_use(
    migrated: Cli, service_id: int, tmp_path: Path
) -> None:
    """An import file with a plain secret, a bcrypt hash (as ORY Hydra keeps), passlib's pbkdf2-sha256 and
    Django's pbkdf2_sha256 (as django-oauth-toolkit keeps): each client authenticates with its secret, and
    each legacy hash is the keyed HMAC after its first successful push."""
    secrets_by_name = {name: f"{name}-{secrets.token_urlsafe(32)}" for name in ("plain", "bcrypt", "pbkdf2", "django")}
    hashes = {
        "bcrypt": bcrypt.using(rounds=4).hash(secrets_by_name["bcrypt"]),
        "pbkdf2": pbkdf2_sha256.using(rounds=1000).hash(secrets_by_name["pbkdf2"]),
        "django": django_pbkdf2_sha256.using(rounds=1000).hash(secrets_by_name["django"]),
    }
    records = [
        {"clientName": name, "redirectUris": [REDIRECT_URI]}
        | ({"clientSecretHash": hashes[name]} if name in hashes else {"clientSecret": secret})
        for name, secret in secrets_by_name.items()
    ]
    result = migrated.json("client", "import", _import_file(tmp_path, records), "--service", str(service_id))
    client_ids = {entry["clientName"]: entry["clientId"] for entry in result["created"]}
    assert result["refused"] == [] and sorted(client_ids) == sorted(secrets_by_name)
    for name, imported in hashes.items():
        assert _client_secret_hash(migrated, client_ids[name]) == imported

    async def push(name: str, secret: str) -> int:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{migrated.database}", admin_token="a" * 43, pepper=PEPPER
        )
        app = create_app(settings)
        client = ClientHandle(id=client_ids[name], secret=secret, body={})
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://par.test") as http:
                response = await http.post(
                    f"/services/{service_id}/par",
                    data=par_params(client, redirect_uri=REDIRECT_URI, scope="openid"),
                    headers=client.basic(),
                )
        finally:
            await app.state.par.aclose()
        assert response.status_code in (201, 401), response.text
        return response.status_code

    for name, secret in secrets_by_name.items():
        assert asyncio.run(push(name, secret + "x")) == 401, name
        assert asyncio.run(push(name, secret)) == 201, name
        assert _client_secret_hash(migrated, client_ids[name]).startswith("$par-hmac-sha256$"), name
        assert asyncio.run(push(name, secret)) == 201, name  # the keyed hash authenticates from then on


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_client_import_reports_every_refused_record(
    migrated: Cli, service_id: int, tmp_path: Path, skip_invalid: bool
) -> None:
    """Every refused record is reported by index, never with its values; without --skip-invalid
    nothing of the file is stored."""
    path = _import_file(tmp_path, VALID_RECORDS + INVALID_RECORDS)
    code, out, err = migrated.run(
        "client", "import", path, "--service", str(service_id), *(["--skip-invalid"] if skip_invalid else [])
    )
    assert code == (0 if skip_invalid else 1), err
    result = json.loads(out)
    refused = {entry["index"]: entry["error"] for entry in result["refused"]}
    assert sorted(refused) == [3, 4, 5, 6, 7, 8]
    assert "too predictable" in refused[3] or "characters long" in refused[3]
    assert "cost 13 exceeds" in refused[4]
    assert "redirect URI" in refused[5]
    assert "clientIdAlias 'h' is already used" in refused[6]
    assert UNLOGGABLE not in out + err
    if skip_invalid:
        assert [entry["index"] for entry in result["created"]] == [0, 1, 2]
        assert migrated.rows("client") == 3
    else:
        assert result["created"] == []
        assert migrated.rows("client") == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{}", "must hold a JSON list"),
        ("[", "cannot read"),
        ("[NaN]", "cannot read"),
        ("[" * 100 + "]" * 100, "cannot read"),
    ],
)
def test_client_import_refuses_an_unreadable_file(
    migrated: Cli, service_id: int, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "clients.json"
    path.write_text(content)
    code, out, err = migrated.run("client", "import", str(path), "--service", str(service_id))
    assert (code, out) == (1, "")
    assert message in err
    assert migrated.rows("client") == 0


def test_client_import_into_an_unknown_service(migrated: Cli, tmp_path: Path) -> None:
    path = _import_file(tmp_path, VALID_RECORDS)
    code, out, err = migrated.run("client", "import", path, "--service", "999999999999")
    assert (code, out) == (1, "")
    assert "does not exist" in err


@pytest.mark.parametrize(
    ("service", "redirect_uri", "message"),
    [
        ("999999999999", REDIRECT_URI, "does not exist"),
        (None, "/relative", "redirect URI"),
        (None, "https://a.example/c\u0001", "redirect URI (redirectUris) must be a URI of ASCII characters"),
        (None, "https://é.example/cb", "redirect URI (redirectUris) must be a URI of ASCII characters"),
    ],
)
def test_client_create_reports_errors(
    migrated: Cli, service_id: int, service: str | None, redirect_uri: str, message: str
) -> None:
    code, out, err = migrated.run(
        "client", "create", "--service", service or str(service_id), "--redirect-uri", redirect_uri
    )
    assert (code, out) == (1, "")
    assert message in err
    assert migrated.rows("client") == 0


# --- service access tokens ----------------------------------------------------------------------------


def test_token_create_list_and_revoke(migrated: Cli, service_id: int) -> None:
    service = str(service_id)
    created = migrated.json("token", "create", "--service", service, "--description", "ci")
    assert created["accessToken"].startswith("par_sat_")
    assert created["description"] == "ci"

    code, out, _ = migrated.run("token", "list", "--service", service)
    assert code == 0
    assert created["accessToken"] not in out
    listed = {entry["id"]: entry for entry in json.loads(out)}
    assert len(listed) == 2  # the token made with the service, and this one
    assert all("accessToken" not in entry for entry in listed.values())
    assert listed[created["id"]]["revokedAt"] is None

    assert migrated.json("token", "revoke", "--service", service, "--token-id", str(created["id"])) == {
        "revoked": created["id"]
    }
    revoked = {entry["id"]: entry for entry in migrated.json("token", "list", "--service", service)}
    assert revoked[created["id"]]["revokedAt"] is not None
    code, _, err = migrated.run("token", "revoke", "--service", service, "--token-id", str(created["id"]))
    assert code == 1
    assert "no active token" in err


# --- serve --------------------------------------------------------------------------------------------


def test_serve_refuses_to_start_without_secrets(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_serve(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("uvicorn.run was called with unsafe settings")

    monkeypatch.setattr(uvicorn, "run", must_not_serve)
    code, out, err = cli.run("serve")
    assert code == 2
    assert out == ""
    assert "refusing to start" in err
    assert "PAR_ADMIN_TOKEN is not set" in err and "PAR_PEPPER is not set" in err


@pytest.mark.parametrize("flags", [[], ["--no-access-log"]])  # the old option is still accepted
def test_serve_passes_its_options_to_uvicorn(cli: Cli, monkeypatch: pytest.MonkeyPatch, flags: list[str]) -> None:
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_args, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("PAR_ADMIN_TOKEN", "a" * 43)
    monkeypatch.setenv("PAR_PEPPER", "p" * 43)
    code, _, _ = cli.run("serve", "--port", "8123", "--workers", "2", *flags)
    assert code == 0
    [options] = calls
    assert (options["port"], options["workers"], options["access_log"]) == (8123, 2, False)
    assert options["log_config"] == server_log_config("INFO")
    assert options["factory"] is True and options["server_header"] is False and options["ws"] == "none"
    assert options["timeout_graceful_shutdown"] == 25
    assert options["proxy_headers"] is False  # PAR_TRUSTED_PROXIES decides, in the app
    assert (options["timeout_keep_alive"], options["limit_concurrency"], options["backlog"]) == (5, 1000, 2048)
    protocol = options["http"]
    assert isinstance(protocol, functools.partial) and protocol.func is CoalescingHttpToolsProtocol
    assert protocol.keywords == {"request_read_timeout": 30.0, "max_header_bytes": 16384}
    # --workers hands the config to each worker process pickled.
    assert pickle.loads(pickle.dumps(protocol)).keywords == protocol.keywords  # noqa: S301 (our own bytes)


def test_serve_takes_uvicorns_limits_from_the_settings(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_args, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("PAR_ADMIN_TOKEN", "a" * 43)
    monkeypatch.setenv("PAR_PEPPER", "p" * 43)
    monkeypatch.setenv("PAR_KEEP_ALIVE_TIMEOUT_SECONDS", "75")
    monkeypatch.setenv("PAR_REQUEST_READ_TIMEOUT_SECONDS", "12.5")
    monkeypatch.setenv("PAR_MAX_CONNECTIONS", "300")
    monkeypatch.setenv("PAR_LISTEN_BACKLOG", "512")
    monkeypatch.setenv("PAR_MAX_HEADER_BYTES", "8192")
    code, _, _ = cli.run("serve")
    assert code == 0
    [options] = calls
    assert (options["timeout_keep_alive"], options["limit_concurrency"], options["backlog"]) == (75, 300, 512)
    protocol_limits = {"request_read_timeout": 12.5, "max_header_bytes": 8192}
    assert options["http"].keywords == protocol_limits  # type: ignore[attr-defined]


@dataclass
class ServedWith:
    """What ``uvicorn.run`` was called with, and the metrics directory its workers were told of."""

    workers: int
    metrics_directory: str | None


@pytest.fixture
def served(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> list[ServedWith]:
    calls: list[ServedWith] = []

    def record(*_args: object, **kwargs: Any) -> None:
        directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
        if directory is not None:  # what a worker would find there
            assert os.path.isdir(directory) and mode(Path(directory)) == 0o700 and not os.listdir(directory)
        calls.append(ServedWith(kwargs["workers"], directory))

    monkeypatch.setattr(uvicorn, "run", record)
    monkeypatch.setenv("PAR_ADMIN_TOKEN", "a" * 43)
    monkeypatch.setenv("PAR_PEPPER", "p" * 43)
    monkeypatch.delenv(MULTIPROCESS_DIR_VARIABLE, raising=False)
    return calls


def test_serve_with_several_workers_gives_them_a_new_metrics_directory_each_run(
    cli: Cli, served: list[ServedWith]
) -> None:
    """Files of an earlier run would add its counts to this one's: each run has its own, removed after."""
    assert cli.run("serve", "--workers", "2")[0] == 0
    assert cli.run("serve", "--workers", "3")[0] == 0
    first, second = (call.metrics_directory for call in served)
    assert first is not None and second is not None and first != second
    assert not os.path.exists(first) and not os.path.exists(second)
    assert MULTIPROCESS_DIR_VARIABLE not in os.environ


def test_serve_with_one_worker_keeps_the_metrics_in_the_process(cli: Cli, served: list[ServedWith]) -> None:
    assert cli.run("serve")[0] == 0
    assert served == [ServedWith(1, None)]


def test_serve_uses_the_operators_metrics_directory_as_it_is(
    cli: Cli, served: list[ServedWith], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = tmp_path / "operators"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(directory))
    assert cli.run("serve", "--workers", "2")[0] == 0
    assert served == [ServedWith(2, str(directory))]
    assert directory.is_dir() and os.environ[MULTIPROCESS_DIR_VARIABLE] == str(directory)


def test_serve_with_several_workers_and_no_writable_temporary_directory_is_a_clear_error(
    cli: Cli, served: list[ServedWith], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    code, out, err = cli.run("serve", "--workers", "2")
    assert (code, out, served) == (2, "", [])
    assert err.startswith("par-server serve: --workers 2 needs a writable temporary directory")


@pytest.mark.parametrize("unusable", ["missing", "a-file", "read-only"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_an_unusable_operators_metrics_directory_in_one_line(
    cli: Cli, served: list[ServedWith], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unusable: str, workers: str
) -> None:
    """Each worker would fail as it starts, again and again: the server refuses to start instead."""
    directory = tmp_path / unusable
    if unusable == "a-file":
        directory.write_text("")
    elif unusable == "read-only":  # a file made there fails, even as root: a directory of /proc
        directory = Path("/proc/self/fdinfo")
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(directory))
    code, out, err = cli.run("serve", "--workers", workers)
    assert (code, out, served) == (2, "", [])
    assert err.startswith(f"par-server serve: {MULTIPROCESS_DIR_VARIABLE} {directory} ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        ({"OTEL_TRACES_EXPORTER": "bogus"}, "no span exporter named 'bogus'"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "'grpc'"),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_PROPAGATORS": "tracecontext,bogus"}, "no propagator named 'bogus'"),
        ({"OTEL_PROPAGATORS": "bogus"}, "no propagator named 'bogus'"),  # read whether tracing is on or not
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_MAX_QUEUE_SIZE": "-5"}, "max_queue_size"),
    ],
)
def test_serve_refuses_invalid_tracing_variables_in_one_line(
    cli: Cli, served: list[ServedWith], monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], reason: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    code, out, err = cli.run("serve")
    assert (code, out, served) == (2, "", [])
    assert err.startswith("par-server serve: tracing (OTEL_* variables): ") and reason in err
    assert err.count("\n") == 1


def test_serve_starts_with_valid_tracing_variables(
    cli: Cli, served: list[ServedWith], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext,baggage")
    assert cli.run("serve")[0] == 0
    assert served == [ServedWith(1, None)]


@pytest.mark.parametrize("flags", [["--proxy-headers"], ["--forwarded-allow-ips", "10.0.0.1"]])
def test_serve_refuses_the_replaced_proxy_options(cli: Cli, monkeypatch: pytest.MonkeyPatch, flags: list[str]) -> None:
    """A proxy is trusted through PAR_TRUSTED_PROXIES only: an old option is refused, not silently ignored."""
    monkeypatch.setattr(uvicorn, "run", lambda *_args, **_kwargs: pytest.fail("served"))
    monkeypatch.setenv("PAR_ADMIN_TOKEN", "a" * 43)
    monkeypatch.setenv("PAR_PEPPER", "p" * 43)
    code, out, err = cli.run("serve", *flags)
    assert code == 2 and out == ""
    assert "PAR_TRUSTED_PROXIES" in err


def test_serve_help_does_not_offer_the_access_log_option(cli: Cli) -> None:
    with pytest.raises(SystemExit):
        cli.run("serve", "--help")
    assert "access-log" not in cli.capsys.readouterr().out


@pytest.mark.parametrize("options", [[], ["--workers", "2"]])
def test_serve_writes_one_json_log_stream_without_request_parameters(
    tmp_path: Path, options: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's start-up, warning and shutdown lines are JSON like the app's, in every worker, and
    neither they nor the request lines carry a query string."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the workers' metrics directory, should the server not remove it
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'par.db'}"
    run_migrations(Settings(database_url=database_url))
    deployment = support.Deployment(database_url, tmp_path)
    with deployment.server("logs", *options) as server:
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10.0) as http:
            assert http.get("/healthz", params={"client_secret": UNLOGGABLE}).status_code == 200
        # A request httptools cannot parse: uvicorn warns about it.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10.0) as sock:
            sock.sendall(f"GET /healthz?client_secret={UNLOGGABLE} HTTP/1.1\r\nno colon\r\n\r\n".encode())
            assert sock.recv(1024).startswith(b"HTTP/1.1 400")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM), server.log()
        output = server.log_path.read_text()

    assert UNLOGGABLE not in output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # fails on any line not JSON
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines), output
    uvicorn_messages = {line["msg"] for line in lines if line["logger"] == "uvicorn.error"}
    assert {"Application startup complete.", "Application shutdown complete."} <= uvicorn_messages, output
    assert any(message.startswith("Uvicorn running on") for message in uvicorn_messages), output
    assert any(message.startswith("Finished server process") for message in uvicorn_messages), output
    assert any(line["level"] == "warning" and line["msg"] == "Invalid HTTP request received." for line in lines)
    requests = [line for line in lines if line["logger"] == "par_server.request" and line["route"] == "/healthz"]
    assert [request["status"] for request in requests] == [200]  # the app's line, and uvicorn's access log is off


# --- settings errors ----------------------------------------------------------------------------------

SENTINEL = "sentinel-secret-that-must-never-be-shown"


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_serve(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("uvicorn.run was called with invalid settings")

    monkeypatch.setattr(uvicorn, "run", must_not_serve)


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["demo"], ["service", "list"]])
def test_an_invalid_setting_is_a_one_line_error_and_exit_2(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, no_uvicorn: None, command: list[str]
) -> None:
    monkeypatch.setenv("PAR_MAX_PARAMETERS", "abc")
    code, out, err = cli.run(*command)
    assert (code, out) == (2, "")
    assert (
        err == "par-server: invalid settings: PAR_MAX_PARAMETERS: Input should be a valid integer, unable to "
        "parse string as an integer\n"
    )


def test_an_invalid_settings_combination_never_shows_the_values(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PAR_PEPPER", SENTINEL)
    monkeypatch.setenv("PAR_DATABASE_URL", f"postgresql://par:{SENTINEL}@db.example/par")
    monkeypatch.setenv("PAR_PUSHED_REQUEST_STORE", "redis")
    (tmp_path / "key").write_text(SENTINEL)
    code, out, err = cli.run("migrate")
    assert (code, out) == (2, "")
    assert err.startswith("par-server: invalid settings: pushed_request_store 'redis' needs redis_url")
    monkeypatch.setenv("PAR_SECRET_ENCRYPTION_KEY_FILE", str(tmp_path / "key"))
    code, out, err = cli.run("migrate")
    assert (code, out) == (2, "")
    assert err.startswith("par-server: invalid settings: PAR_SECRET_ENCRYPTION_KEY: secret_encryption_key must be")
    assert SENTINEL not in err


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["demo", "--no-serve"], ["service", "list"]])
def test_an_unusable_secret_file_is_a_one_line_error_and_exit_2(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_uvicorn: None, command: list[str]
) -> None:
    missing = tmp_path / "no-such-secret"
    monkeypatch.setenv("PAR_PEPPER_FILE", str(missing))
    code, out, err = cli.run(*command)
    assert (code, out) == (2, "")
    assert err == f"par-server: PAR_PEPPER_FILE: cannot read {missing}: No such file or directory\n"


def test_a_variable_and_its_file_variable_together_are_a_clean_error(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_uvicorn: None
) -> None:
    (tmp_path / "token").write_text(SENTINEL + "-from-the-file\n")
    monkeypatch.setenv("PAR_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("PAR_ADMIN_TOKEN", SENTINEL)
    code, out, err = cli.run("serve")
    assert (code, out) == (2, "")
    assert err == "par-server: PAR_ADMIN_TOKEN and PAR_ADMIN_TOKEN_FILE are both set; set only one of them\n"


def test_serve_and_demo_take_their_secrets_from_files(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_args, **kwargs: calls.append(kwargs))
    (tmp_path / "token").write_text("t" * 43 + "\n")
    (tmp_path / "pepper").write_text(PEPPER + "\n")
    monkeypatch.setenv("PAR_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("PAR_PEPPER_FILE", str(tmp_path / "pepper"))
    assert cli.run("serve")[0] == 0 and len(calls) == 1  # the production check passed on the files' values
    code, _, err = cli.run("demo", "--no-serve")  # does not set PAR_ADMIN_TOKEN/PAR_PEPPER beside them
    assert code == 0, err
    assert f"export PAR_DEMO_ADMIN_TOKEN={'t' * 43}\n" in (cli.data_dir / "demo.env").read_text()
    assert "PAR_ADMIN_TOKEN" not in os.environ and "PAR_PEPPER" not in os.environ
    assert [service["serviceName"] for service in cli.json("service", "list")] == ["demo"]


def test_no_command_prints_help(cli: Cli) -> None:
    code, out, _ = cli.run()
    assert code == 2
    assert "usage: par-server" in out


def test_version_names_the_installed_package(cli: Cli) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert cli.capsys.readouterr().out == f"par-server {version('par-server')}\n"


# --- healthcheck (the container image's HEALTHCHECK) ----------------------------------------------------


def test_healthcheck_passes_against_the_server_on_par_port(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = support.Deployment(database_url=f"sqlite+aiosqlite:///{cli.database}", log_dir=tmp_path)
    deployment.cli("migrate")
    with deployment.server("healthcheck") as server:
        monkeypatch.setenv("PAR_PORT", str(server.port))
        assert cli.run("healthcheck") == (0, "", "")


@pytest.mark.parametrize("port", ["free", "not-a-port"])
def test_healthcheck_fails_when_no_server_answers(cli: Cli, monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("PAR_PORT", str(support.free_port()) if port == "free" else port)
    code, out, err = cli.run("healthcheck")
    assert (code, out) == (1, "")
    assert "/healthz" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_server_options_cannot_be_abbreviated(cli: Cli, command: str) -> None:
    """`--por 9000` would serve on a port the container's HEALTHCHECK does not probe."""
    with pytest.raises(SystemExit) as exited:
        cli.run(command, "--por", "9000")
    assert exited.value.code == 2
    assert "unrecognized arguments: --por 9000" in cli.capsys.readouterr().err
