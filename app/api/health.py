"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import StateDep
from app.db.schema import current_revisions

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", summary="The database (and Redis, when configured) answers and the schema is at the migrations' head"
)
async def readyz(state: StateDep) -> JSONResponse:
    try:
        async with state.engine.connect() as connection:
            current = await connection.run_sync(current_revisions)
    except Exception as exc:  # any driver or pool failure means "not ready"
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    report = {"database": "ok", "migrations": "current" if current == state.schema_head else "pending"}
    if state.redis is not None:  # replay entries, rate-limit counters and perhaps pushed requests live there
        try:
            await state.redis.ping()
            report["redis"] = "ok"
        except Exception as exc:  # refused, timed out (PAR_REDIS_TIMEOUT_SECONDS): not ready
            report["redis"] = type(exc).__name__
    ready = report["migrations"] == "current" and report.get("redis", "ok") == "ok"
    return JSONResponse({"status": "ok" if ready else "unavailable", **report}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
