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


@router.get("/readyz", summary="The database answers and its schema is at the migrations' head")
async def readyz(state: StateDep) -> JSONResponse:
    try:
        async with state.engine.connect() as connection:
            current = await connection.run_sync(current_revisions)
    except Exception as exc:  # any driver or pool failure means "not ready"
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    if current != state.schema_head:
        return JSONResponse({"status": "unavailable", "database": "ok", "migrations": "pending"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", "migrations": "current"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
