"""What the management use cases are given: the application's state, and who may act on which service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import result_codes
from app.core.errors import ApiBadRequest, ApiNotFound
from app.core.model import ServiceRecord
from app.core.secrets import SecretBox, SecretHasher
from app.db.models import Service
from app.db.repositories import RowLock, ServiceRepository
from app.settings import Settings

MAX_PAGE = 1000
DEFAULT_PAGE = 5  # Authlete's


class ManagementContext(Protocol):
    """The part of the application state (``AppState``) the use cases use."""

    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...

    @property
    def hasher(self) -> SecretHasher: ...

    @property
    def secret_box(self) -> SecretBox: ...

    def forget_records(self) -> None:
        """After a committed change: this process's record caches must not serve the old rows."""

    def service_record(self, row: Service) -> ServiceRecord:
        """The service as the protocol rules see it: the server's defaults filled in."""
        ...


class ServiceAccess(Protocol):
    """The service ``service_id`` once the caller is known to be allowed to act on it, read within the
    use case's transaction and locked as ``lock`` says (``ServiceRepository.lock``). The HTTP API checks
    the caller's bearer token (``app.api.deps.authorize_service_call``); the operator acts on every service
    (``any_service``)."""

    async def __call__(self, session: AsyncSession, service_id: int, *, lock: RowLock | None = None) -> Service: ...


async def any_service(session: AsyncSession, service_id: int, *, lock: RowLock | None = None) -> Service:
    """The operator's access (the CLI): every service that exists."""
    return service_or_404(await ServiceRepository(session).get(service_id, lock=lock), service_id)


def service_or_404(row: Service | None, service_id: int) -> Service:
    if row is None:
        raise ApiNotFound(f"service {service_id} does not exist", result_code=result_codes.SERVICE_NOT_FOUND)
    return row


@dataclass(frozen=True, slots=True)
class Page:
    """Rows ``start`` (inclusive) to ``end`` (exclusive) of a list, oldest first."""

    start: int
    end: int

    @classmethod
    def asked(cls, start: int, end: int | None) -> Page:
        """The page a caller asks for, within ``MAX_PAGE`` rows."""
        end = start + DEFAULT_PAGE if end is None else end
        if start < 0 or end < start or end - start > MAX_PAGE:
            raise ApiBadRequest(f"start and end must satisfy 0 <= start <= end <= start + {MAX_PAGE}")
        return cls(start, end)


def utc_now() -> datetime:
    return datetime.now(UTC)
