"""In-process caches of service and client records, each entry kept at most ``ttl`` seconds.

Why: every push needs its service and its client; reading both from the database costs two of a push's
three statements. The bound on staleness is the point: a change made through another replica (a
rotated secret, a changed client or service setting) takes effect here at most ``ttl`` seconds later
(``PAR_RECORD_CACHE_SECONDS``); the replica that made the change drops its cache at once. A deleted
client or service is refused at once everywhere: the stored request's foreign keys refuse it
(``app.db.pushed_requests``; with pushed requests in Redis, see README "Redis for pushed requests").
Unknown ids are not cached, so a new client works at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from app.settings import Settings

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecordCache(Generic[K, V]):
    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> RecordCache[K, V]:
        return cls(ttl=settings.record_cache_seconds, max_entries=settings.record_cache_max_entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if self._ttl <= 0:
            return
        self._entries[key] = (value, time.monotonic() + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)  # the oldest entry

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
