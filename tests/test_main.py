"""The application lifespan: the expired-request purger runs in the background."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.core.model import PushedRequestRecord
from app.db.models import PushedRequest
from app.main import create_app, tracing_requested
from app.settings import Settings
from tests.conftest import make_settings
from tests.factories import ClientHandle, ServiceHandle


async def test_lifespan_purges_expired_requests(
    settings: Settings, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Expired rows are purged periodically without a request having to trigger it."""
    app = create_app(make_settings(settings.database_url, purge_interval_seconds=0.05))
    state = app.state.par
    async with state.request_connection() as connection:
        await state.pushed_request_store(connection).add(
            PushedRequestRecord(
                reference_hash="e" * 64,
                service_id=service.id,
                client_id=basic_client.id,
                parameters="",
                request={},
                created_at=datetime.now(UTC) - timedelta(minutes=2),
                expires_at=datetime.now(UTC) - timedelta(minutes=1),
            )
        )
    async with app.router.lifespan_context(app):
        for _ in range(100):
            async with state.sessions() as session:
                remaining = await session.scalar(select(func.count()).select_from(PushedRequest))
            if remaining == 0:
                break
            await asyncio.sleep(0.05)
    assert remaining == 0


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),  # the specification's default exporter (otlp) alone does not turn it on
        ({"OTEL_SERVICE_NAME": "par", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": " None "}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_tracing_is_on_only_when_the_otel_variables_ask_for_it(environ: dict[str, str], on: bool) -> None:
    assert tracing_requested(environ) is on
