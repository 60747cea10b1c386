"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import StateDep
from app.api.observability import MetricsUnreadable
from app.db.engine import failure_name
from app.state import AppState

router = APIRouter(tags=["Operations"])
logger = logging.getLogger("par_server.metrics")


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database (and Redis, when configured) answers and the schema is at the migrations' head, or ahead",
)
async def readyz(state: StateDep) -> JSONResponse:
    """Answered within ``PAR_READYZ_TIMEOUT_SECONDS`` whatever the database and Redis do: a probe that
    hangs on a stopped database tells the load balancer nothing (it times out), and holds a request slot.
    Both are checked at once, each within the bound; one that does not answer in time is not ready."""
    bound = state.settings.readyz_timeout_seconds
    database, redis = await asyncio.gather(_check_database(state, bound), _check_redis(state, bound))
    if isinstance(database, str):
        return JSONResponse({"status": "unavailable", "database": database}, status_code=503)
    report = {"database": "ok", "migrations": state.schema.compare(database)}
    if redis is not None:  # replay entries, rate-limit counters and perhaps pushed requests live there
        report["redis"] = redis
    ready = report["migrations"] != "pending" and report.get("redis", "ok") == "ok"
    return JSONResponse({"status": "ok" if ready else "unavailable", **report}, status_code=200 if ready else 503)


async def _check_database(state: AppState, bound: float) -> frozenset[str] | str:
    """The schema's current revisions, or why the database cannot tell them. A read that outlasts the
    bound is left to finish, not cancelled (``UncancelledCheck``)."""
    try:
        return await state.schema_check.within(bound)
    except Exception as exc:  # any driver or pool failure, or no answer within the bound: not ready
        return failure_name(exc)


async def _check_redis(state: AppState, bound: float) -> str | None:
    """How Redis answered a PING within the bound: ok, or why not; None without Redis."""
    if state.redis is None:
        return None
    try:
        async with asyncio.timeout(bound):
            await state.redis.ping()
    except Exception as exc:  # refused, timed out (PAR_REDIS_TIMEOUT_SECONDS or the bound): not ready
        return type(exc).__name__
    return "ok"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """With several workers, 503 when a file of the metrics directory cannot be read (one warning line
    each time): a total without that worker's counts would be wrong, and would go down."""
    state.metrics.publish_runtime()  # with several workers, the answering worker's own are current
    try:
        text = generate_latest(state.metrics.registry)
    except MetricsUnreadable as error:
        logger.warning("metrics unavailable", extra={"fields": {"reason": str(error)}})
        return JSONResponse({"status": "unavailable", "metrics": str(error)}, status_code=503)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
