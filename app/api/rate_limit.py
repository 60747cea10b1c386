"""Rate limiting at both front doors (RFC 9126 §2.3: "429 Too Many Requests"; RFC 6585 §4 Retry-After).

Three budgets, each a fixed window from ``limits``: per source address, per claimed client, and a much
smaller one for failed client authentication, which locks further attempts out for the window. They
are checked before a request touches the push logic, so a throttled request costs one counter hit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter

from app.api.observability import Metrics


@dataclass(frozen=True, slots=True)
class Refusal:
    retry_after: int  # seconds
    scope: str  # which budget: address, client, failed_authentication


class RateLimits:
    def __init__(
        self, storage: Storage, *, per_address: str, per_client: str, failed_authentication: str, metrics: Metrics
    ) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._per_address = parse(per_address)
        self._per_client = parse(per_client)
        self._failed_authentication = parse(failed_authentication)
        self._metrics = metrics

    async def admit(
        self, *, front_door: str, service_id: int, address: str | None, client_id: str | None
    ) -> Refusal | None:
        """Count this request; a Refusal when a budget is spent (nothing else is counted then)."""
        checks: list[tuple[str, RateLimitItem, str, bool]] = []
        if address:
            checks.append(("failed_authentication", self._failed_authentication, f"address:{address}", False))
            checks.append(("address", self._per_address, f"address:{address}", True))
        if client_id:
            checks.append(("failed_authentication", self._failed_authentication, f"client:{client_id}", False))
            checks.append(("client", self._per_client, f"client:{client_id}", True))
        for scope, item, key, counts in checks:
            identifiers = (front_door, str(service_id), scope, key)
            allowed = (
                await self._limiter.hit(item, *identifiers) if counts else await self._limiter.test(item, *identifiers)
            )
            if not allowed:
                self._metrics.rate_limited.labels(front_door, scope).inc()
                return Refusal(retry_after=await self._retry_after(item, identifiers), scope=scope)
        return None

    async def failed_authentication(
        self, *, front_door: str, service_id: int, address: str | None, client_id: str | None
    ) -> None:
        """Spend from the failed-authentication budget of the address and the client."""
        for key in (f"address:{address}" if address else None, f"client:{client_id}" if client_id else None):
            if key:
                await self._limiter.hit(
                    self._failed_authentication, front_door, str(service_id), "failed_authentication", key
                )

    async def _retry_after(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
        reset = (await self._limiter.get_window_stats(item, *identifiers)).reset_time
        return max(1, math.ceil(reset - time.time()))
