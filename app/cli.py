"""``par-server``: serve, migrate, run a local demo, and manage services, clients and tokens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from app.settings import FILE_SUFFIX, Settings, UnsafeSettingsError, settings_error_message

if TYPE_CHECKING:  # imported when used: `par-server serve` and `healthcheck` start without them
    from app.management.schemas import ClientIn
    from app.state import AppState

# The container's port: docker/entrypoint.sh serves on it and `par-server healthcheck` probes it.
PORT_VARIABLE = "PAR_PORT"
DEFAULT_PORT = 8000
DEMO_REDIRECT_URI = "https://client.example.org/cb"
DEMO_AUTHORIZATION_SERVER = "https://as.example.org"
DEMO_SECRETS_FILE = "demo-secrets.json"
DEMO_ENV_FILE = "demo.env"
# RFC 7636 Appendix B: the S256 challenge of the verifier "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".
EXAMPLE_CODE_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        result: int = args.handler(args)
    except UnsafeSettingsError as error:
        print(f"par-server: refusing to start: {error}", file=sys.stderr)
        return 2
    except SettingsError as error:  # a PAR_*_FILE that cannot be used; the message names no value
        print(f"par-server: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        if error.title != Settings.__name__:
            raise
        print(f"par-server: {settings_error_message(error)}", file=sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="par-server", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    commands = parser.add_subparsers(title="commands")

    # No abbreviated options for the server: `--por 9000` must not slip past the container entrypoint's
    # refusal of --port (the HEALTHCHECK probes PAR_PORT).
    serve = commands.add_parser("serve", help="serve HTTP (run `par-server migrate` first)", allow_abbrev=False)
    _add_server_options(serve)
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser(
        "demo", help="local instance on SQLite: generate secrets, migrate, seed, serve", allow_abbrev=False
    )
    _add_server_options(demo)
    demo.add_argument("--no-serve", action="store_true", help="prepare and print, but do not serve")
    demo.set_defaults(handler=_demo)

    healthcheck = commands.add_parser(
        "healthcheck", help="exit 0 when the server on this host answers /healthz (the image's HEALTHCHECK)"
    )
    healthcheck.add_argument("--port", type=int, help=f"default: ${PORT_VARIABLE}, else {DEFAULT_PORT}")
    healthcheck.add_argument("--timeout", type=float, default=4.0, help="seconds (default 4)")
    healthcheck.set_defaults(handler=_healthcheck)

    migrate = commands.add_parser("migrate", help="upgrade the database schema (alembic upgrade)")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(handler=_migrate)

    service = commands.add_parser("service", help="manage services").add_subparsers(title="service commands")
    create_service = service.add_parser("create", help="create a service and print its access token")
    create_service.add_argument("--name", required=True)
    create_service.add_argument("--issuer", help="default: <public base URL>/services/<id>")
    create_service.add_argument("--scope", action="append", default=[], help="a supported scope (repeatable)")
    create_service.add_argument("--duration", type=int, help="pushedAuthReqDuration in seconds")
    create_service.add_argument("--par-required", action="store_true")
    create_service.add_argument("--pkce-s256-required", action="store_true")
    create_service.set_defaults(handler=_service_create)
    list_services = service.add_parser("list", help="list services")
    list_services.set_defaults(handler=_service_list)

    client = commands.add_parser("client", help="manage clients").add_subparsers(title="client commands")
    create_client = client.add_parser("create", help="register a client and print its credentials")
    create_client.add_argument("--service", type=int, required=True, help="service id (apiKey)")
    create_client.add_argument("--redirect-uri", action="append", required=True, help="repeatable")
    create_client.add_argument(
        "--auth-method", default=None, choices=["NONE", "CLIENT_SECRET_BASIC", "CLIENT_SECRET_POST"]
    )
    create_client.add_argument("--public", action="store_true", help="a public client (auth method NONE)")
    create_client.add_argument("--alias", help="clientIdAlias")
    create_client.add_argument("--name", help="clientName")
    create_client.add_argument("--scope", action="append", help="restrict the requestable scopes (repeatable)")
    # From standard input, not the command line: argv is visible to every user of the machine (ps).
    given = create_client.add_mutually_exclusive_group()
    given.add_argument(
        "--secret-stdin", action="store_true", help="keep the client's existing secret, read from standard input"
    )
    given.add_argument(
        "--secret-hash-stdin",
        action="store_true",
        help="keep the client's existing secret, given as its bcrypt or pbkdf2_sha256 hash on standard input",
    )
    create_client.set_defaults(handler=_client_create)
    import_clients = client.add_parser(
        "import", help="register the clients of a JSON file (a list of client/create bodies), all or none"
    )
    import_clients.add_argument("file", type=Path, help="JSON list of client objects, as client/create takes them")
    import_clients.add_argument("--service", type=int, required=True, help="service id (apiKey)")
    import_clients.add_argument(
        "--skip-invalid", action="store_true", help="register the valid records even if others are refused"
    )
    import_clients.set_defaults(handler=_client_import)

    token = commands.add_parser("token", help="manage service access tokens").add_subparsers(title="token commands")
    create_token = token.add_parser("create", help="issue a service access token")
    create_token.add_argument("--service", type=int, required=True)
    create_token.add_argument("--description")
    create_token.set_defaults(handler=_token_create)
    list_tokens = token.add_parser("list", help="list a service's tokens (never their values)")
    list_tokens.add_argument("--service", type=int, required=True)
    list_tokens.set_defaults(handler=_token_list)
    revoke_token = token.add_parser("revoke", help="revoke a service access token")
    revoke_token.add_argument("--service", type=int, required=True)
    revoke_token.add_argument("--token-id", type=int, required=True)
    revoke_token.set_defaults(handler=_token_revoke)
    return parser


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("par-server")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workers", type=int, default=1)
    # Replaced by PAR_TRUSTED_PROXIES, which every replica and the container read (app/api/client_address.py);
    # refused rather than ignored, so that nobody believes a proxy is trusted when it is not.
    parser.add_argument("--proxy-headers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--forwarded-allow-ips", default=None, help=argparse.SUPPRESS)
    # uvicorn's access log is always off now (the app logs each request); the option stays for old command lines.
    parser.add_argument("--no-access-log", action="store_true", help=argparse.SUPPRESS)


# --- serving ------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    if args.proxy_headers or args.forwarded_allow_ips is not None:
        print(
            "par-server serve: --proxy-headers and --forwarded-allow-ips are replaced by PAR_TRUSTED_PROXIES "
            "(the addresses or CIDRs of the proxies whose X-Forwarded-For names the client)",
            file=sys.stderr,
        )
        return 2
    settings = Settings()
    settings.require_production_secrets()  # a clear message here, not a traceback in each worker
    try:
        metrics_directory = multiprocess_metrics_directory(args.workers)
    except OSError as error:
        print(
            f"par-server serve: --workers {args.workers} needs a writable temporary directory for the workers' "
            f"metrics (TMPDIR, else /tmp): {error}",
            file=sys.stderr,
        )
        return 2
    unusable = unusable_metrics_directory()
    if unusable is not None:
        print(f"par-server serve: {unusable}", file=sys.stderr)
        return 2
    tracing_error = tracing_configuration_error()
    if tracing_error is not None:
        print(f"par-server serve: tracing (OTEL_* variables): {tracing_error}", file=sys.stderr)
        return 2
    with metrics_directory:
        _run_uvicorn(args, settings)
    return 0


def unusable_metrics_directory() -> str | None:
    """Why the ``PROMETHEUS_MULTIPROC_DIR`` the operator set cannot hold the workers' metrics files, if it
    cannot: checked once here, where each worker would otherwise fail to start, again and again."""
    from app.api.observability import MULTIPROCESS_DIR_VARIABLE

    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if not directory:
        return None
    path = Path(directory)
    if not path.exists():
        problem = "does not exist"
    elif not path.is_dir():
        problem = "is not a directory"
    else:
        try:  # a file made there: what the workers do, whatever the permissions say (root's, a read-only mount)
            with tempfile.NamedTemporaryFile(dir=path, suffix=".probe"):
                return None
        except OSError as error:
            problem = f"is not writable ({error.strerror or type(error).__name__})"
    return f"{MULTIPROCESS_DIR_VARIABLE} {directory} {problem}: the workers' metrics are written there"


def tracing_configuration_error(environ: Mapping[str, str] = os.environ) -> str | None:
    """What is wrong with the OTEL_* variables: the propagators named, whether tracing is on or not
    (OpenTelemetry's API reads them as it is imported, and FastAPI imports it), and, when they turn tracing
    on, the tracer provider built from them once here (and shut down), so that a wrong value is one line
    at start-up rather than a traceback in each worker."""
    unknown = unknown_propagator(environ)
    if unknown is not None:
        return f"OTEL_PROPAGATORS: no propagator named {unknown!r} is installed"
    from app.main import tracing_requested

    if not tracing_requested(environ):
        return None
    try:
        from app.tracing import tracer_provider_from_environment
    except ImportError:
        return "OpenTelemetry is not installed: install par-server[tracing]"
    try:
        provider = tracer_provider_from_environment(environ)
    except Exception as error:  # the SDK's and the exporters' own checks, of any type
        return _error_line(error)
    provider.shutdown()
    return None


def unknown_propagator(environ: Mapping[str, str]) -> str | None:
    """The first of the OTEL_PROPAGATORS names that no installed propagator has, as OpenTelemetry's API
    looks them up (their entry points; "none" ends the list)."""
    configured = environ.get("OTEL_PROPAGATORS", "")
    if not configured.strip():
        return None
    for name in (part.strip() for part in configured.split(",")):
        if name.lower() == "none":
            return None
        if not entry_points(group="opentelemetry_propagator", name=name):
            return name
    return None


def _error_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _run_uvicorn(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from app.api.http_protocol import request_timed_protocol
    from app.api.observability import server_log_config

    uvicorn.run(
        "app.main:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # An answer's head and body in one write, and bounds on the time a request takes to arrive and on its
        # line and headers.
        http=request_timed_protocol(  # type: ignore[arg-type]
            settings.request_read_timeout_seconds, settings.max_header_bytes
        ),
        proxy_headers=False,  # PAR_TRUSTED_PROXIES decides whose X-Forwarded-For is read, in the app
        log_config=server_log_config(settings.log_level),
        log_level=settings.log_level.lower(),
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        limit_concurrency=settings.max_connections,  # read by our protocol, which answers 503 beyond it
        backlog=settings.listen_backlog,
        server_header=False,
        ws="none",  # no WebSocket routes: an Upgrade request is not handed to a protocol implementation
        access_log=False,  # its line carries the raw query string; the app's own request line is the access log
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def multiprocess_metrics_directory(workers: int) -> contextlib.AbstractContextManager[None]:
    """With several workers, a new private directory for their metrics (prometheus_client's
    multiprocess mode), named to the workers by ``PROMETHEUS_MULTIPROC_DIR`` while the context lasts
    and removed as it ends.

    New for every run: files left by an earlier one would add its counts to this one's. A directory the
    operator names in ``PROMETHEUS_MULTIPROC_DIR`` is used as it is (emptying it is theirs to do); with
    one worker and none named, the metrics stay in the process, where an observation costs less."""
    from app.api.observability import MULTIPROCESS_DIR_VARIABLE

    if workers <= 1 or os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        return contextlib.nullcontext()
    directory = tempfile.mkdtemp(prefix="par-server-metrics-")  # mode 0700; OSError without a writable TMPDIR

    @contextlib.contextmanager
    def named_to_the_workers() -> Iterator[None]:
        os.environ[MULTIPROCESS_DIR_VARIABLE] = directory  # the spawned workers inherit it
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR_VARIABLE]
            shutil.rmtree(directory, ignore_errors=True)

    return named_to_the_workers()


def _healthcheck(args: argparse.Namespace) -> int:
    import httpx

    port = args.port if args.port is not None else os.environ.get(PORT_VARIABLE, str(DEFAULT_PORT))
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        # trust_env=False: a proxy configured for the container's outbound traffic must not see this.
        status = httpx.get(url, timeout=args.timeout, trust_env=False).status_code
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        print(f"par-server: {url}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"par-server: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import logging

    from app.api.observability import configure_logging

    settings = Settings()
    run_migrations(settings, args.revision)
    configure_logging(settings.log_level)
    logging.getLogger("par_server.migrate").info(
        "database migrated",
        extra={"fields": {"database": _redacted_url(settings.database_url), "revision": args.revision}},
    )
    return 0


def run_migrations(settings: Settings, revision: str = "head") -> None:
    from alembic import command

    from app.api.observability import configure_logging
    from app.db.schema import alembic_config

    try:
        config = alembic_config(settings.database_url)
    except FileNotFoundError as error:
        raise SystemExit(f"par-server: {error}") from error
    configure_logging("INFO", "alembic")  # "Running upgrade a -> b": the one log stream's JSON lines
    command.upgrade(config, revision)


def _redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- the demo -----------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    base_url = os.environ.get("PAR_PUBLIC_BASE_URL", f"http://{args.host}:{args.port}")
    os.environ["PAR_PUBLIC_BASE_URL"] = base_url
    data_dir = Path(os.environ.get("PAR_DATA_DIR", "data"))
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # its files hold secrets and pushed parameters
    secrets_path = data_dir / DEMO_SECRETS_FILE
    demo: dict[str, Any] = json.loads(secrets_path.read_text()) if secrets_path.exists() else {}
    for name in ("admin_token", "pepper"):
        demo.setdefault(name, secrets.token_urlsafe(32))
        variable = f"PAR_{name.upper()}"
        if variable not in os.environ and variable + FILE_SUFFIX not in os.environ:  # both set is refused
            os.environ[variable] = demo[name]
    settings = Settings()
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else demo["admin_token"]
    run_migrations(settings)
    demo.update(asyncio.run(_seed_demo(settings, demo)))
    _write_private(secrets_path, json.dumps(demo, indent=2))
    endpoint = f"{base_url}/services/{demo['service_id']}/par"
    env = {
        "PAR_DEMO_BASE_URL": base_url,
        "PAR_DEMO_ADMIN_TOKEN": admin_token,
        "PAR_DEMO_SERVICE_ID": demo["service_id"],
        "PAR_DEMO_SERVICE_TOKEN": demo["service_token"],
        "PAR_DEMO_CLIENT_ID": demo["client_id"],
        "PAR_DEMO_CLIENT_SECRET": demo["client_secret"],
        "PAR_DEMO_PUBLIC_CLIENT_ID": demo["public_client_id"],
        "PAR_DEMO_PAR_ENDPOINT": endpoint,
        "PAR_DEMO_ISSUER": f"{base_url}/services/{demo['service_id']}",
    }
    _write_private(data_dir / DEMO_ENV_FILE, "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in env.items()))
    print(_demo_banner(env, data_dir), file=sys.stderr)
    if args.no_serve:
        return 0
    return _serve(args)


async def _seed_demo(settings: Settings, demo: dict[str, Any]) -> dict[str, Any]:
    from app.core.errors import ApiNotFound
    from app.management import services
    from app.management.context import any_service
    from app.management.schemas import ClientIn, ServiceIn

    state = _state(settings)
    try:
        if "service_id" in demo:
            try:
                await services.get_service(state, any_service, int(demo["service_id"]))
                return {}
            except ApiNotFound:
                pass  # gone with an earlier database: seed a new one
        service = await services.create_service(
            state,
            ServiceIn(
                service_name="demo",
                # Placeholders, like the demo's redirect URI: the service's metadata (RFC 8414) needs them.
                authorization_endpoint=f"{DEMO_AUTHORIZATION_SERVER}/authorize",
                token_endpoint=f"{DEMO_AUTHORIZATION_SERVER}/token",
                supported_scopes=[{"name": "openid"}, {"name": "profile"}, {"name": "email"}],
                pkce_s256_required=True,
            ),
        )
        confidential = await _create_client(
            state, service.api_key, ClientIn(client_name="demo confidential client", redirect_uris=[DEMO_REDIRECT_URI])
        )
        public = await _create_client(
            state,
            service.api_key,
            ClientIn(client_name="demo public client", client_type="PUBLIC", redirect_uris=[DEMO_REDIRECT_URI]),
        )
        return {
            "service_id": service.api_key,
            "service_token": service.service_access_token,
            "client_id": confidential["clientId"],
            "client_secret": confidential["clientSecret"],
            "public_client_id": public["clientId"],
        }
    finally:
        await state.aclose()


def _demo_banner(env: dict[str, Any], data_dir: Path) -> str:
    return f"""
par-server demo (embedded SQLite). Credentials are kept in {data_dir / DEMO_SECRETS_FILE} and exported by
{data_dir / DEMO_ENV_FILE}. Push an authorization request from another terminal:

  . {data_dir / DEMO_ENV_FILE}
  curl -s -u "$PAR_DEMO_CLIENT_ID:$PAR_DEMO_CLIENT_SECRET" "$PAR_DEMO_PAR_ENDPOINT" \\
    -d response_type=code -d client_id="$PAR_DEMO_CLIENT_ID" \\
    --data-urlencode redirect_uri={DEMO_REDIRECT_URI} -d scope=openid \\
    -d code_challenge={EXAMPLE_CODE_CHALLENGE} -d code_challenge_method=S256

  admin token (PAR_ADMIN_TOKEN)  {env["PAR_DEMO_ADMIN_TOKEN"]}
  service {env["PAR_DEMO_SERVICE_ID"]}  issuer {env["PAR_DEMO_ISSUER"]}
  service access token  {env["PAR_DEMO_SERVICE_TOKEN"]}
  confidential client {env["PAR_DEMO_CLIENT_ID"]} (client_secret_basic)
  public client {env["PAR_DEMO_PUBLIC_CLIENT_ID"]} (none, PKCE)
"""


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


# --- management commands ------------------------------------------------------------------------------


def _state(settings: Settings) -> AppState:
    from app.state import build_state

    return build_state(settings)


def _management_settings() -> Settings:
    """The pepper is what management needs; after `par-server demo` it is read from the demo's file."""
    settings = Settings()
    demo_file = settings.data_dir / DEMO_SECRETS_FILE
    if settings.pepper is None and demo_file.exists():
        demo = json.loads(demo_file.read_text())
        settings = Settings(pepper=demo["pepper"], admin_token=demo["admin_token"])
        print(f"par-server: using the demo secrets in {demo_file}", file=sys.stderr)
    if settings.pepper is None:
        raise UnsafeSettingsError("PAR_PEPPER is not set")
    return settings


def _run(use_case: Callable[[AppState], Awaitable[object]]) -> int:
    """Run a use case (``app.management``) as the operator, and print its answer as JSON."""
    from app.core.errors import ApiError

    async def run() -> object:
        state = _state(_management_settings())
        try:
            return await use_case(state)
        finally:
            await state.aclose()

    try:
        result = asyncio.run(run())
    except ApiError as error:
        print(f"par-server: {error.description}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _json(answer: BaseModel, *, exclude_none: bool = True) -> dict[str, Any]:
    """As the management API answers."""
    return answer.model_dump(by_alias=True, exclude_none=exclude_none)


def _service_create(args: argparse.Namespace) -> int:
    from app.management import services
    from app.management.schemas import ServiceIn

    body = ServiceIn(
        service_name=args.name,
        issuer=args.issuer,
        supported_scopes=[{"name": s} for s in args.scope],
        pushed_auth_req_duration=args.duration,
        par_required=args.par_required or None,
        pkce_s256_required=args.pkce_s256_required or None,
    )

    async def create(state: AppState) -> dict[str, Any]:
        return _json(await services.create_service(state, body))

    return _run(create)


LISTED_SERVICES = 10_000  # every one, in practice: the operator's list is not paged


def _service_list(_args: argparse.Namespace) -> int:
    from app.management import services
    from app.management.context import Page

    async def list_services(state: AppState) -> list[dict[str, Any]]:
        listed = await services.list_services(state, Page(0, LISTED_SERVICES))
        return [_json(service) for service in listed.services]

    return _run(list_services)


async def _create_client(state: AppState, service_id: int, body: ClientIn) -> dict[str, Any]:
    from app.management import clients
    from app.management.context import any_service

    return _json(await clients.create_client(state, any_service, service_id, body))


def _client_create(args: argparse.Namespace) -> int:
    from app.management.schemas import ClientExtension, ClientIn

    method = "NONE" if args.public else args.auth_method
    given = sys.stdin.readline().rstrip("\r\n") if args.secret_stdin or args.secret_hash_stdin else None
    body = ClientIn(
        client_secret=given if args.secret_stdin else None,
        client_secret_hash=given if args.secret_hash_stdin else None,
        client_name=args.name,
        client_id_alias=args.alias,
        token_auth_method=method,
        redirect_uris=args.redirect_uri,
        extension=ClientExtension(requestable_scopes_enabled=True, requestable_scopes=args.scope)
        if args.scope
        else None,
    )
    return _run(lambda state: _create_client(state, args.service, body))


MAX_IMPORT_FILE_BYTES = 64 * 1024 * 1024  # a list of client registrations, not a database dump


def _client_import(args: argparse.Namespace) -> int:
    """Every refused record is reported (by index, never with its values: they may hold secrets), and
    nothing is stored if any is refused, unless ``--skip-invalid``."""
    from app.core import json_input
    from app.management import clients

    try:
        with args.file.open("rb") as handle:
            text = handle.read(MAX_IMPORT_FILE_BYTES + 1)
        if len(text) > MAX_IMPORT_FILE_BYTES:
            raise ValueError(f"it is larger than {MAX_IMPORT_FILE_BYTES} bytes")
        records = json_input.loads(text)
    except (OSError, ValueError) as error:
        print(f"par-server: cannot read {args.file}: {error}", file=sys.stderr)
        return 1
    if not isinstance(records, list):
        print(f"par-server: {args.file} must hold a JSON list of client objects", file=sys.stderr)
        return 1
    refused = False

    async def import_all(state: AppState) -> dict[str, Any]:
        nonlocal refused
        outcome = await clients.import_clients(state, args.service, records, keep_valid=args.skip_invalid)
        refused = bool(outcome.refused)
        return {
            "created": [{"index": created.index, **_json(created.client)} for created in outcome.created],
            "refused": [{"index": record.index, "error": record.error} for record in outcome.refused],
        }

    code = _run(import_all)
    return 1 if code == 0 and refused and not args.skip_invalid else code


def _token_create(args: argparse.Namespace) -> int:
    from app.management import tokens

    async def create(state: AppState) -> dict[str, Any]:
        return _json(await tokens.create_service_token(state, args.service, args.description), exclude_none=False)

    return _run(create)


def _token_list(args: argparse.Namespace) -> int:
    from app.core.errors import ApiNotFound
    from app.management import tokens

    async def list_tokens(state: AppState) -> list[dict[str, Any]]:
        try:
            listed = await tokens.list_service_tokens(state, args.service)
        except ApiNotFound:
            return []  # as this command has always answered for a service that does not exist
        return [_json(token, exclude_none=False) for token in listed]

    return _run(list_tokens)


def _token_revoke(args: argparse.Namespace) -> int:
    from app.management import tokens

    async def revoke(state: AppState) -> dict[str, int]:
        await tokens.revoke_service_token(state, args.service, args.token_id)
        return {"revoked": args.token_id}

    return _run(revoke)


if __name__ == "__main__":
    raise SystemExit(main())
