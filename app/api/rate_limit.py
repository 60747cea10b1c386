"""Rate limiting at both front doors (RFC 9126 §2.3: "429 Too Many Requests"; RFC 6585 §4 Retry-After).

Three budgets, each a fixed window from ``limits``:

- per source address, spent by every request;
- per client, spent only by requests that authenticated as that client, so that nobody else can use
  up a client's budget by naming it (client ids are public);
- failed client authentications, per address and per (client, address): once spent, that address (or
  that address for that client) is refused for the window. Keying by address keeps a stranger from
  locking a client out.

Budgets are checked before a request reaches the push logic. Counters live in the process and are
synchronised with the shared store (the database or Redis) in the background
(``app.db.rate_limits.SyncedCounters``), so checking and spending costs a request no round trip
unless it names a counter this replica has not seen lately.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter

from app.api.observability import Metrics
from app.db.rate_limits import SyncedCounters


@dataclass(frozen=True, slots=True)
class Refusal:
    retry_after: int  # seconds
    scope: str  # which budget: address, client, failed_authentication


@dataclass(frozen=True, slots=True)
class Caller:
    front_door: str
    service_id: int
    address: str | None
    client_id: str | None  # as claimed; proven only once the push authenticated it

    def key(self, scope: str, *, with_client: bool = False, with_address: bool = True) -> tuple[str, ...]:
        parts = [self.front_door, str(self.service_id), scope]
        if with_client:
            parts.append(f"client:{self.client_id}")
        if with_address:
            parts.append(f"address:{self.address}")
        return tuple(parts)


@dataclass(frozen=True, slots=True)
class Budgets:
    per_address: RateLimitItem
    per_client: RateLimitItem
    failed_authentication: RateLimitItem


class RateLimits:
    def __init__(
        self,
        storage: SyncedCounters,
        *,
        per_address: str,
        per_client: str,
        failed_authentication: str,
        metrics: Metrics,
        max_remembered_keys: int,
    ) -> None:
        self.storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._budgets = Budgets(parse(per_address), parse(per_client), parse(failed_authentication))
        self._metrics = metrics
        self._keys: dict[tuple[RateLimitItem, tuple[str, ...]], str] = {}
        self._max_keys = max_remembered_keys

    async def admit(self, caller: Caller) -> Refusal | None:
        """Refuse when a budget is spent; otherwise spend from the address budget."""
        budgets = self._budgets
        checks: list[tuple[str, RateLimitItem, tuple[str, ...]]] = []
        if caller.address:
            checks.append(("failed_authentication", budgets.failed_authentication, caller.key("failed_authentication")))
        if caller.client_id:
            checks.append(
                (
                    "failed_authentication",
                    budgets.failed_authentication,
                    caller.key("failed_authentication", with_client=True),
                )
            )
            checks.append(("client", budgets.per_client, caller.key("client", with_client=True, with_address=False)))
        keys = [self._key(item, identifiers) for _, item, identifiers in checks]
        address_key = self._key(budgets.per_address, caller.key("address")) if caller.address else None
        await self.storage.prefetch([*keys, address_key] if address_key else keys)  # one read for all unknown
        # What FixedWindowRateLimiter.test and .hit do, on remembered keys (``_key``).
        for (scope, item, identifiers), key in zip(checks, keys, strict=True):
            if await self.storage.get(key) >= item.amount:
                return await self._refuse(caller, scope, item, identifiers)
        if address_key is not None:
            if await self.storage.incr(address_key, budgets.per_address.get_expiry()) > budgets.per_address.amount:
                return await self._refuse(caller, "address", budgets.per_address, caller.key("address"))
        return None

    async def authenticated(self, caller: Caller, client_id: int) -> None:
        """Spend from the budget of the client the request proved to be."""
        proven = Caller(caller.front_door, caller.service_id, caller.address, str(client_id))
        await self._hit(self._budgets.per_client, proven.key("client", with_client=True, with_address=False))

    async def failed_authentication(self, caller: Caller) -> None:
        item = self._budgets.failed_authentication
        if caller.address:
            await self._hit(item, caller.key("failed_authentication"))
        if caller.client_id:
            await self._hit(item, caller.key("failed_authentication", with_client=True))

    async def _hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> None:
        """``FixedWindowRateLimiter.hit`` on a remembered key."""
        await self.storage.incr(self._key(item, identifiers), item.get_expiry())

    def _key(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> str:
        """``item.key_for(*identifiers)``, remembered: building a key cost more than counting on it. At
        most as many are remembered as the record caches hold records (``PAR_RECORD_CACHE_MAX_ENTRIES``)."""
        key = self._keys.get((item, identifiers))
        if key is None:
            if len(self._keys) >= self._max_keys:
                self._keys.clear()
            key = self._keys[(item, identifiers)] = item.key_for(*identifiers)
        return key

    async def _refuse(self, caller: Caller, scope: str, item: RateLimitItem, identifiers: tuple[str, ...]) -> Refusal:
        self._metrics.rate_limited.labels(caller.front_door, scope).inc()
        reset = (await self._limiter.get_window_stats(item, *identifiers)).reset_time
        return Refusal(retry_after=max(1, math.ceil(reset - time.time())), scope=scope)
