"""OpenTelemetry tracing (app/tracing.py): the spans of a request, on both databases and with the Redis store,
what they carry and what they never do, propagation both ways, the log line's trace id, and nothing at all
with tracing off."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from sqlalchemy import text

from app.main import create_app
from app.settings import Settings
from app.tracing import shut_down_within, span_exporters, tracer_provider_from_environment
from tests.conftest import ADMIN_TOKEN, BASE_URL, PEPPER, forget_pushed_requests, make_settings
from tests.factories import ClientHandle, Factory, ServiceHandle, client_assertion, par_params, public_jwks, push
from tests.jwks_server import JwksServer

KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "traced-1"})
PAR_ROUTE = "POST /services/{service_id}/par"
# What a push sends that no span may carry: its parameter values and its credentials.
SECRET_QUERY = "query-value-never-in-a-span"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, jwks_allow_private_addresses=True)


@pytest.fixture
async def app(settings: Settings, provider: TracerProvider) -> AsyncIterator[FastAPI]:
    application = create_app(settings, tracer_provider=provider)
    yield application
    await application.state.par.aclose()


def server_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is SpanKind.SERVER]


def children_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [other for other in spans if other.parent is not None and other.parent.span_id == span.context.span_id]


def database_spans(spans: Sequence[ReadableSpan], system: str) -> list[ReadableSpan]:
    return [span for span in spans if (span.attributes or {}).get("db.system") == system]


def status_code_of(span: ReadableSpan) -> object:
    attributes = span.attributes or {}
    return attributes.get("http.status_code", attributes.get("http.response.status_code"))


def assert_carries_none_of(spans: Sequence[ReadableSpan], values: Sequence[str]) -> None:
    """No attribute, name, event or status of any span holds any of ``values``."""
    for span in spans:
        texts = [span.name, span.status.description or "", *map(str, (span.attributes or {}).values())]
        texts += [str(value) for event in span.events for value in (event.attributes or {}).values()]
        for value in values:
            assert not any(value in text for text in texts), (span.name, value, texts)


def secret_values(client: ClientHandle) -> list[str]:
    assert client.secret is not None
    public = {str(client.id), "code", "S256", "openid profile"}
    return [*(value for value in par_params(client).values() if value not in public), client.secret]


def batch_size(write: ReadableSpan) -> int:
    size = (write.attributes or {})["par.batch.size"]
    assert isinstance(size, int)
    return size


def database_system(database_url: str) -> str:
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


async def test_a_push_is_one_server_span_named_by_its_route_with_its_database_work(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    exporter: InMemorySpanExporter,
    database_url: str,
) -> None:
    exporter.clear()
    response = await push(client, service, basic_client)
    assert response.status_code == 201, response.text

    spans = exporter.get_finished_spans()
    [server] = server_spans(spans)
    assert server.name == PAR_ROUTE
    assert (server.attributes or {})["http.route"] == "/services/{service_id}/par"
    assert status_code_of(server) == 201
    assert server.status.status_code is StatusCode.UNSET
    assert {span.context.trace_id for span in spans} == {server.context.trace_id}
    # The push read its service and client (the management calls emptied the caches) in its own span,
    # then waited for its batch, whose write (written in the writer's task) is a child of that wait.
    system = database_system(database_url)
    assert database_spans(children_of(server, spans), system), [span.name for span in spans]
    [wait] = [span for span in children_of(server, spans) if span.name == "wait for pushed request batch"]
    [write] = children_of(wait, spans)
    assert write.name == "write pushed request batch"
    assert batch_size(write) == 1
    [insert] = database_spans(children_of(write, spans), system)
    assert "INSERT INTO pushed_request" in str((insert.attributes or {})["db.statement"])
    assert_carries_none_of(spans, secret_values(basic_client))


async def test_a_resolve_is_named_by_its_route_with_its_database_work(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    exporter: InMemorySpanExporter,
    database_url: str,
) -> None:
    pushed = await push(client, service, basic_client)
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]
    exporter.clear()
    resolved = await client.post(
        f"/api/{service.id}/pushed_auth_req/resolve",
        json={"parameters": urlencode({"client_id": str(basic_client.id), "request_uri": request_uri})},
        headers=service.bearer,
    )
    assert resolved.status_code == 200, resolved.text

    spans = exporter.get_finished_spans()
    [server] = server_spans(spans)
    assert server.name == "POST /api/{service_id}/pushed_auth_req/resolve"
    statements = [str((span.attributes or {})["db.statement"]) for span in children_of(server, spans)
                  if span in database_spans(spans, database_system(database_url))]  # fmt: skip
    assert any("UPDATE pushed_request" in statement for statement in statements), statements
    assert_carries_none_of(spans, [request_uri.rsplit(":", 1)[-1], *secret_values(basic_client)])


async def test_other_routes_are_named_by_their_templates_and_no_query_reaches_a_span(
    client: httpx.AsyncClient, service: ServiceHandle, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    answers = [
        await client.get(f"/.well-known/oauth-authorization-server/services/{service.id}?token={SECRET_QUERY}"),
        await client.get(f"/no/such/path?token={SECRET_QUERY}"),
        await client.get(f"/services/{service.id}/par?token={SECRET_QUERY}"),  # a direct route's path, not its method
    ]
    spans = exporter.get_finished_spans()
    names = [(span.name, status_code_of(span)) for span in server_spans(spans)]
    assert names == [
        ("GET /.well-known/oauth-authorization-server/services/{service_id}", answers[0].status_code),
        ("GET", 404),  # no route: the method alone
        ("GET /services/{service_id}/par", 405),
    ]
    assert_carries_none_of(spans, [SECRET_QUERY])


async def test_headers_an_operator_has_captured_are_redacted_where_secret(
    database_url: str, provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    settings = make_settings(database_url, client_certificate_header="X-Mtls-Certificate")
    application = create_app(settings, tracer_provider=provider)
    secrets = {
        "Authorization": "Basic c2VjcmV0",
        "DPoP": "proof-value",
        "X-Refresh-Token": "token-value",
        "Client-Cert": ":certificate-value:",
        "X-Mtls-Certificate": ":configured-certificate-value:",  # the header the settings name
        "X-Api-Key": "api-key-value",
        "X-Password": "password-value",
        "X-Credential": "credential-value",
    }
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE_URL) as http:
            await http.get("/healthz", headers=secrets | {"X-Tenant": "eu-1"})
    finally:
        await application.state.par.aclose()

    [server] = server_spans(exporter.get_finished_spans())
    attributes = server.attributes or {}
    for name in secrets:
        assert attributes[f"http.request.header.{name.lower().replace('-', '_')}"] == ("[REDACTED]",), name
    assert attributes["http.request.header.x_tenant"] == ("eu-1",)  # what an operator asked for
    assert_carries_none_of([server], list(secrets.values()))


async def test_an_incoming_traceparent_is_continued(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, exporter: InMemorySpanExporter
) -> None:
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    exporter.clear()
    response = await push(client, service, basic_client, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    assert response.status_code == 201, response.text

    [server] = server_spans(exporter.get_finished_spans())
    assert format_trace_id(server.context.trace_id) == trace_id
    assert server.parent is not None and server.parent.is_remote
    assert format_span_id(server.parent.span_id) == parent_id


async def test_the_request_log_line_carries_the_trace_and_span_ids(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="par_server.request")
    exporter.clear()
    response = await push(client, service, basic_client)
    assert response.status_code == 201, response.text
    metadata = await client.get(f"/.well-known/oauth-authorization-server/services/{service.id}")

    servers = server_spans(exporter.get_finished_spans())
    lines = [getattr(record, "fields", {}) for record in caplog.records if record.name == "par_server.request"]
    assert [(line["trace_id"], line["span_id"]) for line in lines] == [
        (format_trace_id(span.context.trace_id), format_span_id(span.context.span_id)) for span in servers
    ]
    assert [line["status"] for line in lines] == [201, metadata.status_code]


async def test_a_jwks_uri_fetch_is_a_child_span_and_carries_traceparent(
    client: httpx.AsyncClient, factory: Factory, service: ServiceHandle, exporter: InMemorySpanExporter
) -> None:
    jwks = JwksServer()
    jwks.document = json.loads(public_jwks(KEY))
    try:
        jwt_client = await factory.client(
            service, tokenAuthMethod="PRIVATE_KEY_JWT", jwksUri=f"{jwks.url}?tenant={SECRET_QUERY}"
        )
        exporter.clear()
        credentials = client_assertion(jwt_client, KEY, "ES256", aud=service.issuer)
        response = await client.post(service.par_path, data=par_params(jwt_client) | credentials)
        assert response.status_code == 201, response.text
    finally:
        jwks.close()

    spans = exporter.get_finished_spans()
    [server] = server_spans(spans)
    [fetch] = [span for span in spans if span.kind is SpanKind.CLIENT and span.name == "GET"]
    assert fetch.parent is not None and fetch.parent.span_id == server.context.span_id
    assert status_code_of(fetch) == 200
    [headers] = jwks.headers
    assert headers["traceparent"].split("-")[1:3] == [
        format_trace_id(server.context.trace_id),
        format_span_id(fetch.context.span_id),
    ]
    assert_carries_none_of(spans, [SECRET_QUERY, credentials["client_assertion"]])


async def test_concurrent_pushes_each_see_their_batch_linked_both_ways(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, exporter: InMemorySpanExporter
) -> None:
    await push(client, service, basic_client)  # the caches filled: the pushes below only wait for the writer
    exporter.clear()
    answers = await asyncio.gather(*(push(client, service, basic_client) for _ in range(8)))
    assert [answer.status_code for answer in answers] == [201] * 8

    spans = exporter.get_finished_spans()
    waits = [span for span in spans if span.name == "wait for pushed request batch"]
    writes = {span.context.span_id: span for span in spans if span.name == "write pushed request batch"}
    assert len(waits) == 8
    assert sum(batch_size(write) for write in writes.values()) == 8
    for wait in waits:
        children = [write for write in writes.values() if write.parent and write.parent.span_id == wait.context.span_id]
        linked = [writes[link.context.span_id] for link in wait.links if link.context.span_id in writes]
        assert len(children) + len(linked) == 1, wait  # its row's batch: its child, or linked
        for write in linked:
            assert wait.context.span_id in {link.context.span_id for link in write.links}


async def test_a_failed_statement_s_span_names_the_error_type_only(
    client: httpx.AsyncClient,
    service: ServiceHandle,
    basic_client: ClientHandle,
    exporter: InMemorySpanExporter,
    app: FastAPI,
    database_url: str,
) -> None:
    assert (await push(client, service, basic_client)).status_code == 201  # the client now cached
    async with app.state.par.engine.begin() as connection:  # deleted behind the cache's back
        await connection.execute(text("DELETE FROM client WHERE id = :id"), {"id": basic_client.id})
    exporter.clear()
    response = await push(client, service, basic_client)
    assert response.status_code >= 400

    spans = exporter.get_finished_spans()
    failed = [span for span in database_spans(spans, database_system(database_url)) if not span.status.is_ok]
    assert failed, [(span.name, span.status) for span in spans]
    for span in failed:
        assert span.status.description in {"IntegrityError", "ForeignKeyViolation"}, span.status.description
        assert span.end_time is not None


@pytest.mark.parametrize("store", ["redis"])
async def test_with_the_redis_store_a_push_writes_in_a_redis_span_without_values(
    store: str, database_url: str, redis_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    application = create_app(
        make_settings(database_url, redis_url=redis_url, pushed_request_store=store), tracer_provider=provider
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE_URL) as http:
            factory = Factory(http, admin_token=ADMIN_TOKEN)
            service = await factory.service()
            client = await factory.client(service)
            exporter.clear()
            response = await push(http, service, client)
            assert response.status_code == 201, response.text
        spans = exporter.get_finished_spans()
        [server] = server_spans(spans)
        [wait] = [span for span in children_of(server, spans) if span.name == "wait for pushed request batch"]
        [write] = children_of(wait, spans)
        [command] = database_spans(children_of(write, spans), "redis")
        statement = str((command.attributes or {})["db.statement"])
        assert statement.startswith("SET ?"), statement  # the command, its arguments replaced
        assert_carries_none_of(spans, secret_values(client))
    finally:
        await forget_pushed_requests(application.state.par)
        await application.state.par.aclose()


def test_exporters_are_those_otel_traces_exporter_names() -> None:
    assert span_exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    [otlp] = span_exporters({})  # the specification's default: otlp, over HTTP/protobuf here
    assert isinstance(otlp, OTLPSpanExporter)
    kinds = [type(exporter) for exporter in span_exporters({"OTEL_TRACES_EXPORTER": "otlp, console"})]
    assert kinds == [OTLPSpanExporter, ConsoleSpanExporter]
    with pytest.raises(ValueError, match="only http/protobuf"):
        span_exporters({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(ValueError, match="no span exporter named 'zipkin'"):
        span_exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_the_service_is_par_server_unless_the_environment_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    resource = tracer_provider_from_environment({"OTEL_TRACES_EXPORTER": "none"}).resource
    assert resource.attributes["service.name"] == "par-server"
    assert resource.attributes["deployment.environment"] == "test"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "par-eu-1")
    named = tracer_provider_from_environment({"OTEL_TRACES_EXPORTER": "none"}).resource
    assert named.attributes["service.name"] == "par-eu-1"


# Creates the app as uvicorn's factory does, with no OTEL_* variable, and serves a push's path, the
# backend API, a FastAPI route and a 404 through it.
# Libraries import parts of OpenTelemetry by themselves: FastAPI the API (for its own telemetry, which
# create_app turns off), redis-py the SDK's metrics when installed (for metrics of its own, off unless an
# application starts them). Nothing of tracing may be: the SDK's, an instrumentation, an exporter, ours.
TRACING_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.instrumentation", "opentelemetry.exporter", "app.tracing")
UNTRACED_APP = """
import asyncio, sys
import httpx
from app.main import app_from_environment

async def main() -> None:
    app = app_from_environment()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://par.test") as http:
        for method, path in [("POST", "/services/1/par"), ("POST", "/api/1/pushed_auth_req/resolve"),
                             ("GET", "/healthz"), ("GET", "/no/such/path")]:
            await http.request(method, path, data={"client_id": "1"})
    await app.state.par.aclose()
    print(sorted(name for name in sys.modules if name.startswith(TRACING_MODULES)))

asyncio.run(main())
"""


def test_with_tracing_off_no_tracing_module_is_imported(sqlite_template: Path, tmp_path: Path) -> None:
    database = tmp_path / "par.db"
    database.write_bytes(sqlite_template.read_bytes())
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("OTEL_", "PAR_"))} | {
        "PAR_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "PAR_ADMIN_TOKEN": ADMIN_TOKEN,
        "PAR_PEPPER": PEPPER,
        "PAR_PUBLIC_BASE_URL": BASE_URL,
    }
    result = subprocess.run(
        [sys.executable, "-c", f"TRACING_MODULES = {TRACING_MODULES!r}\n{UNTRACED_APP}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def untraced_lines(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="par_server.request")
    yield caplog


async def test_with_tracing_off_the_log_line_has_no_trace_id(
    settings: Settings, untraced_lines: pytest.LogCaptureFixture
) -> None:
    application = create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE_URL) as http:
            await http.post("/services/1/par", data={"client_id": "1"})
            await http.get("/healthz")
    finally:
        await application.state.par.aclose()
    lines = [getattr(record, "fields", {}) for record in untraced_lines.records if record.name == "par_server.request"]
    assert len(lines) == 2
    assert not any("trace_id" in line or "span_id" in line for line in lines)


# --- OpenTelemetry's own log records, and shutdown -----------------------------------------------------------

LEAKED = "LEAKED-HEADER-VALUE"


async def test_opentelemetry_logs_nothing_of_what_a_client_sent(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed baggage and tracestate headers: OpenTelemetry's propagators would warn, quoting them, once
    per list member."""
    caplog.set_level(logging.WARNING)
    many_members = ",".join(f"x{index}" for index in range(1800))[:8000]
    await client.get("/healthz", headers={"baggage": many_members})
    await client.get(
        "/healthz",
        headers={
            "baggage": f"Bearer {LEAKED}",
            "tracestate": f"a=b,{LEAKED} c",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
    )
    assert [record.name for record in caplog.records if record.name.startswith("opentelemetry")] == []
    assert LEAKED not in caplog.text


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_exporter_s_warnings_carry_no_url_query_userinfo_or_configured_header(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collector that is down: the exporter's warnings quote the connection error, which names the
    endpoint's URL with its query; a malformed OTEL_EXPORTER_OTLP_TRACES_HEADERS is quoted whole."""
    caplog.set_level(logging.WARNING)
    endpoint = f"http://user:URL-PASSWORD@127.0.0.1:{closed_port()}/v1/traces?token=URL-TOKEN"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key HEADER-SECRET")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3")  # one retry, after about a second
    [otlp] = span_exporters({})
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(otlp))
    provider.get_tracer("test").start_span("exported").end()
    provider.shutdown()

    assert any(record.name.startswith("opentelemetry.exporter") for record in caplog.records)
    assert any(record.name == "opentelemetry.util.re" for record in caplog.records)
    for secret in ("URL-PASSWORD", "URL-TOKEN", "HEADER-SECRET"):
        assert secret not in caplog.text, secret


@pytest.fixture
def frozen_collector() -> Iterator[str]:
    """The OTLP endpoint of a collector that takes connections (the kernel completes them) and never
    answers: it never accepts them."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        yield f"http://127.0.0.1:{listening.getsockname()[1]}/v1/traces"


SHUTDOWN_BOUND_SECONDS = 1.0
# What the process may take beyond the bound to start and exit: less than the batch processor's 30 s for
# its last exports, which it waited for before (each of them waiting for the exporter's 10 s timeout).
PROCESS_MARGIN_SECONDS = 20
FLUSHING_PROCESS = """
import asyncio
from app.tracing import shut_down_within, tracer_provider_from_environment

provider = tracer_provider_from_environment()
for index in range(100):
    provider.get_tracer("test").start_span(f"held {index}").end()
print(asyncio.run(shut_down_within(provider, BOUND)))
"""


def test_a_collector_that_does_not_answer_holds_the_shutdown_up_no_longer_than_the_bound(
    frozen_collector: str,
) -> None:
    """The spans held are given up after the bound, and nothing waits for the stuck export as the process
    exits: not ``asyncio.run`` (the loop's default executor), nor the SDK's exit hook."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")} | {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": frozen_collector,
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # the spans are still held when the shutdown starts
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",  # in ten batches, each waiting for the exporter's timeout
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "10",
    }
    result = subprocess.run(
        [sys.executable, "-c", f"BOUND = {SHUTDOWN_BOUND_SECONDS}\n{FLUSHING_PROCESS}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=SHUTDOWN_BOUND_SECONDS + PROCESS_MARGIN_SECONDS,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr


async def test_a_collector_that_answers_gets_the_spans_held_at_shutdown(exporter: InMemorySpanExporter) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    provider.get_tracer("test").start_span("held").end()
    assert await shut_down_within(provider, 30)
    assert [span.name for span in exporter.get_finished_spans()] == ["held"]
