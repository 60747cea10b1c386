"""Service access tokens: issue (the value shown once, only its keyed digest stored), list, revoke."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ApiNotFound
from app.core.secrets import new_numeric_id
from app.db.models import ServiceAccessToken
from app.db.repositories import ServiceRepository, ServiceTokenRepository
from app.management.context import ManagementContext, service_or_404, utc_now
from app.management.schemas import ServiceTokenCreated, ServiceTokenOut


async def add_token(
    context: ManagementContext, session: AsyncSession, service_id: int, description: str | None, now: datetime
) -> ServiceTokenCreated:
    token = context.hasher.generate_service_token()
    row = ServiceAccessToken(
        id=new_numeric_id(),
        service_id=service_id,
        token_digest=context.hasher.lookup_digest(token),
        description=description,
        created_at=now,
        revoked_at=None,
    )
    await ServiceTokenRepository(session).add(row)
    return ServiceTokenCreated(**token_out(row).model_dump(), access_token=token)


def token_out(row: ServiceAccessToken) -> ServiceTokenOut:
    return ServiceTokenOut.model_validate(row, from_attributes=True)


async def create_service_token(
    context: ManagementContext, service_id: int, description: str | None
) -> ServiceTokenCreated:
    async with context.sessions.begin() as session:
        # Locked (shared): a concurrent deletion of the service waits, or is seen here (404).
        service_or_404(await ServiceRepository(session).lock(service_id, exclusive=False), service_id)
        return await add_token(context, session, service_id, description, utc_now())


async def list_service_tokens(context: ManagementContext, service_id: int) -> list[ServiceTokenOut]:
    """Never their values."""
    async with context.sessions() as session:
        service_or_404(await ServiceRepository(session).get_or_none(service_id), service_id)
        return [token_out(row) for row in await ServiceTokenRepository(session).list(service_id)]


async def revoke_service_token(context: ManagementContext, service_id: int, token_id: int) -> None:
    async with context.sessions.begin() as session:
        if not await ServiceTokenRepository(session).revoke(service_id=service_id, token_id=token_id, now=utc_now()):
            raise ApiNotFound(f"no active token {token_id} in service {service_id}")
    context.forget_records()
