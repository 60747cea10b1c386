"""In-memory implementations of the ports ``app.core`` declares (``app.core.ports``), for testing the core
without storage."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from app.core.model import ClientRecord, PushedRequestRecord


class MemoryClients:
    """``ClientDirectory``: clients by (service, id or alias)."""

    def __init__(self, clients: Iterable[ClientRecord]) -> None:
        self.clients = list(clients)

    async def get_client(self, service_id: int, client_identifier: str) -> ClientRecord | None:
        for client in self.clients:
            if client.service_id == service_id and client_identifier in client.identifiers:
                return client
        return None


class MemoryPushedRequests:
    """``PushedRequestStore``: the requests stored so far. ``client_gone`` refuses every request, as the
    database does for a client deleted between its read and the insert."""

    def __init__(self, *, client_gone: bool = False) -> None:
        self.stored: list[PushedRequestRecord] = []
        self.client_gone = client_gone

    async def add(self, record: PushedRequestRecord) -> bool:
        if self.client_gone:
            return False
        self.stored.append(record)
        return True

    async def get(self, service_id: int, reference_hash: str) -> PushedRequestRecord | None:
        for record in self.stored:
            if (record.service_id, record.reference_hash) == (service_id, reference_hash):
                return record
        return None

    async def mark_resolved(self, service_id: int, reference_hash: str, *, now: datetime, expires_at: datetime) -> None:
        record = await self.get(service_id, reference_hash)
        if record is not None and record.resolved_at is None and record.consumed_at is None and record.expires_at > now:
            self._put(dataclasses.replace(record, resolved_at=now, expires_at=expires_at))

    async def consume(
        self, service_id: int, reference_hash: str, *, client_id: int, now: datetime
    ) -> PushedRequestRecord | None:
        record = await self.get(service_id, reference_hash)
        if record is None or record.client_id != client_id or record.consumed_at is not None:
            return None
        if record.expires_at <= now:
            return None
        consumed = dataclasses.replace(record, consumed_at=now, expires_at=now)
        self._put(consumed)
        return consumed

    def _put(self, changed: PushedRequestRecord) -> None:
        """In place of the record it changes."""
        self.stored = [changed if record.reference_hash == changed.reference_hash else record for record in self.stored]


class MemoryReplayStore:
    """``ReplayStore``: the keys seen so far, with the time each may be forgotten."""

    def __init__(self) -> None:
        self.seen: dict[str, datetime] = {}

    async def remember(self, key: str, *, expires_at: datetime) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = expires_at
        return True


class MemorySecretHashes:
    """``SecretHashStore``: the replacements asked for."""

    def __init__(self) -> None:
        self.replaced: list[tuple[int, str, str]] = []

    async def release(self) -> None:
        return None

    async def replace_secret_hash(self, client: ClientRecord, imported_hash: str, keyed_hash: str) -> None:
        self.replaced.append((client.id, imported_hash, keyed_hash))
