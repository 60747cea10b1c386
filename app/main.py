"""Application factory: ``create_app(settings)`` wires routers, error handlers and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp

from app.api import authorization, backend, docs_ui, health, management, metadata, par
from app.api.body_size import BodySizeLimitMiddleware, SizeLimits
from app.api.direct import ParServerApp, direct_routes
from app.api.errors import install_error_handlers
from app.api.head import HeadAsGetMiddleware
from app.api.observability import RequestObservationMiddleware, configure_logging, flush_log_handlers
from app.db.background import Periodic
from app.db.engine import failure_name
from app.db.rate_limit_counters import SqlRateLimitStorage
from app.db.replay import SqlReplayStore
from app.db.repositories import PushedRequestRepository
from app.settings import Settings
from app.state import AppState, build_state, utc_now

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("par_server")
VERSION = "0.1.0"
# How long a stopping server waits for the requests uvicorn cut off (PAR_SHUTDOWN_GRACE_SECONDS passed) to
# send their 503: a few turns of the event loop each, unless a frozen database holds them, which this bounds.
CUT_OFF_ANSWER_SECONDS = 2.0


def create_app(settings: Settings, *, tracer_provider: TracerProvider | None = None) -> ParServerApp:
    """The app; with a ``tracer_provider``, traced into it (``app.tracing``, which only then is imported)."""
    settings.require_production_secrets()
    configure_logging(settings.log_level)
    state = build_state(settings)
    trace_fields = None
    if tracer_provider is not None:
        from app import tracing

        tracing.quiet_opentelemetry_logs()
        tracing.trace_storage(state, tracer_provider)
        trace_fields = tracing.request_trace_fields

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Everything built so far (modules, the app, its routes and models) lives as long as the process:
        # keep it out of the cyclic collector, whose full collections otherwise scanned it all and
        # stalled every request in flight (bench/RESULTS.md, "What bounds it").
        gc.freeze()
        purging = Periodic(interval=settings.purge_interval_seconds, name="purge-expired-pushed-requests")
        purging.start(partial(purge_and_count, state, stopping=purging.stopping))
        publishing = None
        if state.metrics.runtime is not None:
            publishing = asyncio.create_task(publish_runtime_metrics_forever(state), name="publish-runtime-metrics")
        try:
            yield
        finally:
            await app.requests_ended(within=CUT_OFF_ANSWER_SECONDS)
            await purging.stop()  # a purge in progress ends its batch first: it holds a connection
            if publishing is not None:  # touches no database: cancelled where it waits
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
            state.metrics.worker_stopped()
            await state.aclose()
            if tracer_provider is not None:  # the spans still held, exported within the bound
                await tracing.shut_down_within(tracer_provider, settings.traces_shutdown_flush_seconds)
            flush_log_handlers()  # the last requests' lines, held for a turn of the loop that may not come

    app = ParServerApp(
        title="par-server",
        version=VERSION,
        summary="OAuth 2.0 Pushed Authorization Requests (RFC 9126) with an Authlete-compatible backend API",
        lifespan=lifespan,
        # A path with an extra trailing slash is a 404, not a 307 to a Location built from the Host header
        # that a client would follow, sending its credentials again.
        redirect_slashes=False,
        # FastAPI's pages load their files from a CDN: app.api.docs_ui serves its own.
        docs_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry spans, metrics and logs (on once a process-wide provider is set) would
        # trace FastAPI's routes only, a second time, and log exception messages that can quote parameter
        # values: the requests are traced in front of everything instead (app.tracing), by our rules.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    app.state.par = state
    routers = [module.router for module in (par, backend, authorization, management, metadata, health)]
    for router in routers:
        app.include_router(router)
    app.include_router(docs_ui.router)
    app.router.routes.append(docs_ui.assets)
    install_error_handlers(app)

    limits = SizeLimits(settings.max_body_bytes, settings.max_api_body_bytes, settings.max_header_bytes)

    def middlewares(inner: ASGIApp) -> ASGIApp:
        limited = BodySizeLimitMiddleware(HeadAsGetMiddleware(inner), limits=limits)
        # Outermost: sees every answer.
        return RequestObservationMiddleware(
            limited, metrics=state.metrics, routes=app.routes, trace_fields=trace_fields
        )

    # The endpoints marked @served_directly, ahead of the app's own routing and middlewares, whose work
    # they do themselves (app.api.direct).
    app.serve_in_front(
        direct_routes(route for router in routers for route in router.routes),
        middlewares,
        limits,
        state.metrics,
        trace_fields,
    )
    if tracer_provider is not None:  # in front of everything: the direct routes get their spans too
        app.wrap_front(
            partial(
                tracing.request_spans,
                provider=tracer_provider,
                routes=app.routes,
                redacted_headers=tracing.secret_headers(settings),
            )
        )
    return app


def app_from_environment() -> ParServerApp:
    """Entry point for ``uvicorn --factory`` (so each worker process builds its own): settings, and
    tracing when asked for, from the environment."""
    settings = Settings()
    if not tracing_requested(os.environ):
        return create_app(settings)
    try:
        from app.tracing import tracer_provider_from_environment
    except ImportError as error:
        raise RuntimeError(
            "OTEL_* variables turn tracing on, but OpenTelemetry is not installed: install par-server[tracing]"
        ) from error
    return create_app(settings, tracer_provider=tracer_provider_from_environment())


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables turn tracing on (README, "Traces"): off unless OTEL_TRACES_EXPORTER
    names an exporter (not "none") or an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and always off with OTEL_SDK_DISABLED=true. The specification's
    default exporter ("otlp") alone does not turn it on: tracing is off by default."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


async def purge_expired(state: AppState, *, stopping: Callable[[], bool] = lambda: False) -> int:
    """Delete expired pushed requests in short batches; returns how many went. Pushed requests in Redis
    expire with their keys: the table is then purged only of rows left from before the switch. Once
    ``stopping`` says so, no further batch starts."""
    removed = 0
    while not stopping():
        async with state.sessions.begin() as session:
            batch = await PushedRequestRepository(session).purge_expired(
                before=utc_now(), batch_size=state.settings.purge_batch_size
            )
        removed += batch
        if batch < state.settings.purge_batch_size:
            await state.replay_store.purge_expired(before=utc_now())
            if isinstance(state.rate_limits.storage.shared, SqlRateLimitStorage):
                await state.rate_limits.storage.shared.purge_expired(before=utc_now())
            return removed
        await asyncio.sleep(0)  # let requests run between batches
    return removed


async def purge_and_count(state: AppState, *, stopping: Callable[[], bool]) -> None:
    """One round of the purger: expired pushed requests go, then the gauges are counted again."""
    try:
        removed = await purge_expired(state, stopping=stopping)
    except Exception as exc:  # the database may be briefly away; try again next round
        logger.warning("purging expired pushed requests failed: %s", failure_name(exc))
        return
    if removed:
        logger.info("purged %d expired pushed requests", removed)
    await update_gauges(state)


async def publish_runtime_metrics_forever(state: AppState) -> None:
    """With several workers, this worker's process and GC metrics, for whichever worker answers a scrape."""
    while True:
        try:
            state.metrics.publish_runtime()
        except OSError as exc:  # the metrics directory's file system full or gone: the next round may do
            logger.warning("publishing runtime metrics failed: %s", type(exc).__name__)
        await asyncio.sleep(state.settings.worker_metrics_interval_seconds)


async def update_gauges(state: AppState) -> None:
    """Gauges that need a count are refreshed with the purge, not on every scrape."""
    try:
        async with state.sessions() as session:
            if state.pushed_requests is None:  # Redis has no cheap count of one key prefix: not reported
                state.metrics.live_pushed_requests.set(await PushedRequestRepository(session).count_live(utc_now()))
            if isinstance(state.replay_store, SqlReplayStore):
                state.metrics.replay_entries.set(await state.replay_store.count(session))
    except Exception as exc:  # the database may be briefly away; try again next round
        logger.warning("updating gauges failed: %s", failure_name(exc))
