"""The application lifespan: the expired-request purger runs in the background."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.core.model import PushedRequestRecord
from app.db.models import PushedRequest
from app.main import create_app
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
