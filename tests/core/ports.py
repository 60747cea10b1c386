"""In-memory implementations of the ports ``app.core`` declares, for testing the core without storage."""

from __future__ import annotations

from datetime import datetime


class MemoryReplayStore:
    """``ReplayStore``: the keys seen so far, with the time each may be forgotten."""

    def __init__(self) -> None:
        self.seen: dict[str, datetime] = {}

    async def remember(self, key: str, *, expires_at: datetime) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = expires_at
        return True
