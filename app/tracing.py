"""OpenTelemetry tracing (README, "Traces"), imported only when the environment turns it on
(``app.main.tracing_requested``): with it off, nothing here, nor OpenTelemetry, is ever imported.

What is traced, each by OpenTelemetry's maintained instrumentation where there is one:

- every HTTP request, by the ASGI middleware put in front of everything (the direct routes of
  ``app.api.direct`` included), continuing the caller's trace (``traceparent``); its span is named by the
  route's template once the route is known (``POST /services/{service_id}/par``), and no query string
  ever reaches it;
- database statements (SQLAlchemy's engine events, which ``app.db.engine.DriverStatements`` also sends),
  their text with placeholders, never the bound values; a failed one's status names the error's type
  only, as the driver's message can quote values;
- Redis commands (the command name, every argument replaced by ``?``);
- jwksUri fetches (httpx), which carry ``traceparent``; their URL attributes lose any query string;
- the batched writes of pushed requests (``app.db.batch_writer``): each push's wait for its batch, and
  the batch's write, a child of one waiting push's span and linked both ways with the others'.

The tracer provider is the app's own, not the process's global one, and is shut down (its spans
flushed, within a bound: ``shut_down_within``) as the app's lifespan ends; each uvicorn worker builds its
own as it creates its app. OpenTelemetry's own log records never carry what a client sent, nor an
exporter's URL query or credentials (``quiet_opentelemetry_logs``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, Tracer, format_span_id, format_trace_id
from opentelemetry.trace.status import Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.observability import STANDARD_METHODS, route_label
from app.db.batch_writer import BatchWriter
from app.settings import Settings
from app.state import AppState

logger = logging.getLogger("par_server.tracing")

TRACER_NAME = "par_server"
DEFAULT_SERVICE_NAME = "par-server"
# Request headers never written to a span, even where an operator asks for headers to be
# (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST): their values are replaced by "[REDACTED]".
# Regular expressions, searched in the header's name regardless of case; with them, the client certificate
# header the settings name (``secret_headers``).
SECRET_HEADERS = [
    "authorization",
    "proxy-authorization",
    "dpop",
    "cookie",
    "set-cookie",
    ".*token.*",
    ".*secret.*",
    ".*password.*",
    ".*credential.*",
    ".*api[-_]?key.*",
    "client-cert.*",
]
# OpenTelemetry's loggers whose warnings quote what a client sent (the baggage, traceparent and tracestate
# headers, whole): kept below ERROR, which they never log at, so that no request writes its headers, or
# hundreds of lines, to the log.
CLIENT_INPUT_LOGGERS = ("opentelemetry.baggage", "opentelemetry.trace.propagation", "opentelemetry.trace.span")
# Loggers whose warnings quote the configuration's header values (OTEL_EXPORTER_OTLP_HEADERS holds API keys):
# every argument of theirs is withheld.
CONFIGURATION_LOGGERS = ("opentelemetry.util.re",)
_HIDDEN_QUERY = "par_server.hidden_query_string"  # where the query waits in the scope while the span starts


def tracer_provider_from_environment(environ: Mapping[str, str] = os.environ) -> TracerProvider:
    """The SDK's tracer provider as the OTEL_* variables describe it: the SDK reads the sampler
    (OTEL_TRACES_SAMPLER, _ARG), the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), the batch
    processor's limits (OTEL_BSP_*) and each exporter's options (OTEL_EXPORTER_OTLP_*) itself; the
    exporters are those OTEL_TRACES_EXPORTER names (``span_exporters``). The service is "par-server"
    unless the variables name it."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # No exit hook: it would flush again, unbounded, after the lifespan's bounded shutdown gave up on a
    # collector that does not answer (``shut_down_within``).
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for exporter in span_exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def span_exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names (a comma-separated list; "otlp" by default, "none" for
    none): "otlp" is OTLP over HTTP/protobuf, the only OTLP protocol installed; any other name is looked up
    among the installed exporters' entry points ("console", "otlp_proto_http", ...)."""
    kinds: list[type[SpanExporter]] = []
    for name in (part.strip() for part in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")):
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            )
            if protocol != "http/protobuf":
                raise ValueError(f"OTLP protocol {protocol!r} is not installed: only http/protobuf is")
            name = "otlp_proto_http"
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            raise ValueError(f"OTEL_TRACES_EXPORTER: no span exporter named {name!r} is installed")
        kinds.append(next(iter(found)).load())
    quiet_opentelemetry_logs()  # the exporters' loggers now exist: quiet before they log their options
    return [kind() for kind in kinds]


def secret_headers(settings: Settings) -> list[str]:
    """``SECRET_HEADERS`` and the header that carries the client's mTLS certificate."""
    return [*SECRET_HEADERS, re.escape(settings.client_certificate_header)]


def quiet_opentelemetry_logs() -> None:
    """OpenTelemetry's log records without what a client sent, nor configured secrets: the loggers quoting
    client headers silenced (``CLIENT_INPUT_LOGGERS``), those quoting configured headers without their
    arguments (``CONFIGURATION_LOGGERS``), and every other OpenTelemetry logger's arguments redacted
    (``RedactedArguments``): an exporter's warnings quote its endpoint's URL, whose query or userinfo can
    hold a token. Idempotent; covers the loggers of the modules imported so far (the exporters' included,
    once ``tracer_provider_from_environment`` has loaded them)."""
    for name in CLIENT_INPUT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in CONFIGURATION_LOGGERS:
        _add_filter(logging.getLogger(name), RedactedArguments(keep_text=False))
    loggers = [
        logging.getLogger(name)
        for name in list(logging.Logger.manager.loggerDict)
        if name.startswith("opentelemetry") and name not in CONFIGURATION_LOGGERS
    ]
    for otel_logger in loggers:
        _add_filter(otel_logger, RedactedArguments(keep_text=True))


def _add_filter(target: logging.Logger, redaction: RedactedArguments) -> None:
    if not any(isinstance(existing, RedactedArguments) for existing in target.filters):
        target.addFilter(redaction)


_URL_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")
_URL_QUERY = re.compile(r"\?[^\s'\"()<>]*")


class RedactedArguments(logging.Filter):
    """A record's arguments, redacted: an exception by its type's name (its message can quote a URL with
    its query), a number as it is, and any other value withheld, or with ``keep_text`` written without a
    URL's userinfo or query string. The message is then fixed, so that no handler formats it again."""

    def __init__(self, *, keep_text: bool) -> None:
        super().__init__()
        self.keep_text = keep_text

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            arguments = record.args if isinstance(record.args, tuple) else (record.args,)
            try:
                record.msg = str(record.msg) % tuple(self._redacted(argument) for argument in arguments)
            except (TypeError, ValueError):  # not a %-format for these: the message alone
                record.msg = str(record.msg)
            record.args = None
        return True

    def _redacted(self, argument: object) -> object:
        if isinstance(argument, BaseException):
            return type(argument).__name__
        if isinstance(argument, int | float):
            return argument
        if not self.keep_text:
            return "[REDACTED]"
        return _URL_QUERY.sub("?[REDACTED]", _URL_USERINFO.sub("[REDACTED]@", str(argument)))


async def shut_down_within(provider: TracerProvider, seconds: float) -> bool:
    """Shut ``provider`` down, exporting the spans it still holds, for at most ``seconds``; whether it
    finished. In a daemon thread of its own: an export to a collector that accepts and never answers can
    block for the exporter's timeout, its retries and the batch processor's own 30 s, and neither a thread
    of the loop's default executor (which ``asyncio.run`` waits for as it closes the loop) nor any other
    thread the interpreter waits for at exit may hold the process up past the bound."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()

    def shut_down() -> None:
        try:
            provider.shutdown()
        except Exception as error:  # an exporter's failure: its type only, its message can quote a URL
            logger.warning("tracing: shutting down failed", extra={"fields": {"error": type(error).__name__}})
        finally:
            try:
                loop.call_soon_threadsafe(finished.set)
            except RuntimeError:  # the loop closed after giving up on this thread
                pass

    threading.Thread(target=shut_down, name="par-server-tracing-shutdown", daemon=True).start()
    try:
        await asyncio.wait_for(finished.wait(), seconds)
    except TimeoutError:
        logger.warning(
            "tracing: spans not exported at shutdown within the bound: dropped",
            extra={"fields": {"seconds": seconds}},
        )
        return False
    return True


def trace_storage(state: AppState, provider: TracerProvider) -> None:
    """Spans for the statements of the database, the commands of Redis, the jwksUri fetches and the
    batched writes of pushed requests, all of ``state``."""
    sync_engine = state.engine.sync_engine
    # Ahead of the instrumentation's listeners (SQLAlchemy calls handle-error listeners in the order they
    # were added, ``insert`` notwithstanding), which are added on this engine only: its instrumentor patches
    # every engine the process creates, and only once per process. Its pool-usage metrics go nowhere.
    event.listen(sync_engine, "handle_error", end_statement_span)
    EngineTracer(  # type: ignore[no-untyped-call]
        trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", tracer_provider=provider),
        sync_engine,
        NoOpMeterProvider().get_meter(TRACER_NAME).create_up_down_counter("db.client.connections.usage"),
    )
    if state.redis is not None:
        RedisInstrumentor.instrument_client(state.redis, tracer_provider=provider)
    HTTPXClientInstrumentor.instrument_client(
        state.jwks_fetcher.http_client,
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),
        request_hook=url_without_query,
    )
    tracer = provider.get_tracer(TRACER_NAME)
    writers: list[BatchWriter[Any, Any]] = [state.writer]
    if state.pushed_requests is not None:
        writers.append(state.pushed_requests.writer)
    for writer in writers:
        writer.observer = BatchSpans(tracer, "pushed request")


def end_statement_span(context: ExceptionContext) -> None:
    """A failed statement's span ends here, its status naming the error's type: the instrumentation's own
    listener, which runs after this one and then finds no span, would write the driver's message, which
    can quote the values of a row (PostgreSQL's DETAIL)."""
    execution = context.execution_context
    span: Span | None = getattr(execution, "_otel_span", None)  # where EngineTracer keeps it
    if span is None:
        return
    span.set_status(Status(StatusCode.ERROR, type(context.original_exception).__name__))
    span.end()
    execution._otel_span = None  # type: ignore[union-attr]  # noqa: SLF001


async def url_without_query(span: Span, request: RequestInfo) -> None:
    """A jwksUri fetch's URL attributes without its query string (whichever of the old and the stable
    HTTP conventions the instrumentation writes)."""
    attributes = getattr(span, "attributes", None) or {}
    url = request.url
    if not isinstance(url, httpx.URL):  # httpx's raw form: scheme, host, port and target (path and query)
        scheme, host, port, target = url
        url = httpx.URL(scheme=scheme.decode(), host=host.decode(), port=port, raw_path=target)
    for key in ("http.url", "url.full"):
        if key in attributes:
            span.set_attribute(key, str(url.copy_with(query=None, fragment=None)))


def request_spans(
    app: ASGIApp, *, provider: TracerProvider, routes: Sequence[BaseRoute], redacted_headers: Sequence[str]
) -> ASGIApp:
    """``app`` with one server span per HTTP request around it (OpenTelemetry's ASGI middleware, without
    its spans per ASGI message or its metrics), named by the route's template; the values of the
    ``redacted_headers`` (regular expressions) never written to it."""
    traced = OpenTelemetryMiddleware(
        SpanNamedByRoute(app, routes),
        default_span_details=_method_only,
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),
        exclude_spans=["receive", "send"],
        http_capture_headers_sanitize_fields=list(redacted_headers),
    )
    return QueryHidden(traced)


def _method_only(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The span's first name, before any route is chosen: the method (semantic conventions: a span of an
    unknown route is named by its method alone)."""
    return _method_name(scope), {}


def _method_name(scope: Scope) -> str:
    method = scope.get("method", "")
    return method if method in STANDARD_METHODS else "HTTP"


class QueryHidden:
    """Outermost: the request's query string kept out of the scope while the ASGI middleware starts the span
    (it would write it into the URL attributes); ``SpanNamedByRoute`` puts it back for the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string")
        if query and scope["type"] == "http":
            scope[_HIDDEN_QUERY] = query
            scope["query_string"] = b""
        await self.app(scope, receive, send)


class SpanNamedByRoute:
    """Inside the request's span: the query string back in the scope, and the span named by the method and
    the route's template, which is its ``http.route``, as the answer starts (the route is chosen by then;
    the ASGI middleware ends the span with the answer's last message), or as the app ends without one."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.pop(_HIDDEN_QUERY, None)
        if query is not None:
            scope["query_string"] = query
        span = trace.get_current_span()

        async def naming_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._name(span, scope)
            await send(message)

        try:
            await self.app(scope, receive, naming_send)
        finally:
            self._name(span, scope)

    def _name(self, span: Span, scope: Scope) -> None:
        if span.is_recording() and "http.route" not in (getattr(span, "attributes", None) or {}):
            route = route_label(scope, self.routes)
            if route != "unmatched":
                span.update_name(f"{_method_name(scope)} {route}")
                span.set_attribute("http.route", route)


def request_trace_fields() -> dict[str, str]:
    """The current span's trace and span ids, for the request's log line (``app.api.observability``)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format_trace_id(context.trace_id), "span_id": format_span_id(context.span_id)}


class BatchSpans:
    """``app.db.batch_writer.BatchObserver``: a span around each caller's wait for its batch (a child of
    its request's span), and one around each batch's write: the child of one waiting caller's span (a
    sampled one where there is one), linked with every other's, which each link back to it. So every push's
    trace shows the write of its row, whichever request's task the batch was written in."""

    def __init__(self, tracer: Tracer, what: str) -> None:
        self._tracer = tracer
        self._wait_name = f"wait for {what} batch"
        self._write_name = f"write {what} batch"

    @contextmanager
    def waiting(self) -> Iterator[object]:
        with _span(self._tracer, self._wait_name) as span:
            yield span

    @contextmanager
    def writing(self, waits: Sequence[object]) -> Iterator[object]:
        spans = [wait for wait in waits if isinstance(wait, Span)]
        sampled = [span for span in spans if span.get_span_context().trace_flags.sampled]
        parent = (sampled or spans)[0] if spans else None
        context = trace.set_span_in_context(parent) if parent is not None else Context()
        others = [span for span in spans if span is not parent]
        links = [Link(span.get_span_context()) for span in others]
        with _span(self._tracer, self._write_name, context=context, links=links) as batch:
            batch.set_attribute("par.batch.size", len(waits))
            for span in others:
                span.add_link(batch.get_span_context())
            yield batch


@contextmanager
def _span(tracer: Tracer, name: str, **options: Any) -> Iterator[Span]:
    """A current span whose failure names the error's type only (an exception's message, which the SDK
    would record by default, can quote values)."""
    with tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False, **options) as span:
        try:
            yield span
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
