"""The storage ports of the protocol rules: what ``app.core`` reads and writes, declared once, in its own terms.

``app.db`` holds one adapter for each store: the database, or Redis for pushed requests and replay
entries; the composition root (``app.state``) picks them. A push reads its client from a
:class:`ClientDirectory` and writes its request to a :class:`PushedRequestStore`; resolve and consume
read both. Adapters bound to a request's database connection give it back before any wait that does
not need it (the write of a pushed request, a Redis command, a slow hash check), so that no request
holds a pooled connection that others wait for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from app.core.model import ClientRecord, PushedRequestRecord


class ClientDirectory(Protocol):
    """The registered clients."""

    async def get_client(self, service_id: int, client_identifier: str) -> ClientRecord | None:
        """The client of the service that ``client_identifier`` names (its id or its alias); None if none."""
        ...


class PushedRequestStore(Protocol):
    """The pushed requests: added by a push, then read, marked resolved and consumed for the authorization
    endpoint."""

    async def add(self, record: PushedRequestRecord) -> bool:
        """Store the request, answering once it is stored; False if its client no longer exists (deleted
        since it was read)."""
        ...

    async def get(self, service_id: int, reference_hash: str) -> PushedRequestRecord | None: ...

    async def mark_resolved(self, service_id: int, reference_hash: str, *, now: datetime, expires_at: datetime) -> None:
        """Record the first resolve and extend the validity to ``expires_at``; a concurrent first resolve,
        or a consume that got there first, makes this a no-op."""
        ...

    async def consume(
        self, service_id: int, reference_hash: str, *, client_id: int, now: datetime
    ) -> PushedRequestRecord | None:
        """The request, once, to the client it is bound to, before it expires, now consumed (expiring
        now); None, and nothing changed, otherwise. Atomic: among concurrent callers one gets it."""
        ...


class ReplayStore(Protocol):
    """Single-use values (client assertions' and DPoP proofs' ``jti``), remembered across every replica."""

    async def remember(self, key: str, *, expires_at: datetime) -> bool:
        """Record ``key`` until ``expires_at``; False when it was already recorded (a replay)."""
        ...


class SecretHashStore(Protocol):
    """Where a client's imported secret hash is replaced by the keyed one."""

    async def release(self) -> None:
        """Give back the request's database connection while a slow hash is checked."""
        ...

    async def replace_secret_hash(self, client: ClientRecord, imported_hash: str, keyed_hash: str) -> str | None:
        """Store ``keyed_hash`` only if the client's stored hash is still ``imported_hash``: a secret
        updated meanwhile must not be overwritten by the one it replaced. Answers the hash stored now
        (None when the client is gone)."""
        ...
