"""Application factory: ``create_app(settings)`` wires routers, error handlers and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import ASGIApp

from app.api import authorization, backend, docs_ui, health, management, metadata, par
from app.api.body_size import BodySizeLimitMiddleware, SizeLimits
from app.api.direct import ParServerApp, direct_routes
from app.api.errors import install_error_handlers
from app.api.observability import RequestObservationMiddleware, configure_logging, flush_log_handlers
from app.db.rate_limit_counters import SqlRateLimitStorage
from app.db.replay import SqlReplayStore
from app.db.repositories import PushedRequestRepository
from app.settings import Settings
from app.state import AppState, build_state, utc_now

logger = logging.getLogger("par_server")
VERSION = "0.1.0"


def create_app(settings: Settings) -> ParServerApp:
    settings.require_production_secrets()
    configure_logging(settings.log_level)
    state = build_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Everything built so far (modules, the app, its routes and models) lives as long as the process:
        # keep it out of the cyclic collector, whose full collections otherwise scanned it all and
        # stalled every request in flight (bench/RESULTS.md, "What bounds it").
        gc.freeze()
        tasks = [asyncio.create_task(purge_expired_forever(state), name="purge-expired-pushed-requests")]
        if state.metrics.runtime is not None:
            tasks.append(asyncio.create_task(publish_runtime_metrics_forever(state), name="publish-runtime-metrics"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            state.metrics.worker_stopped()
            await state.aclose()
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
        limited = BodySizeLimitMiddleware(inner, limits=limits)
        # Outermost: sees every answer.
        return RequestObservationMiddleware(limited, metrics=state.metrics, routes=app.routes)

    # The endpoints marked @served_directly, ahead of the app's own routing and middlewares, whose work
    # they do themselves (app.api.direct).
    app.serve_in_front(
        direct_routes(route for router in routers for route in router.routes), middlewares, limits, state.metrics
    )
    return app


def app_from_environment() -> ParServerApp:
    """Entry point for ``uvicorn --factory``: settings from the environment."""
    return create_app(Settings())


async def purge_expired(state: AppState) -> int:
    """Delete expired pushed requests in short batches; returns how many went. Pushed requests in Redis
    expire with their keys: the table is then purged only of rows left from before the switch."""
    removed = 0
    while True:
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


async def purge_expired_forever(state: AppState) -> None:
    while True:
        await asyncio.sleep(state.settings.purge_interval_seconds)
        try:
            removed = await purge_expired(state)
        except Exception as exc:  # the database may be briefly away; try again next round
            logger.warning("purging expired pushed requests failed: %s", type(exc).__name__)
            continue
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
        logger.warning("updating gauges failed: %s", type(exc).__name__)
