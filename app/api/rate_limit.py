"""Rate limiting at both front doors (RFC 9126 §2.3: "429 Too Many Requests"; RFC 6585 §4 Retry-After).

Budgets exist to stop abuse, and nobody may spend a budget that protects someone else. Client ids
are public (a public client proves nothing), so:

- per client address (``app.api.client_address``): spent by every push that did not authenticate a
  confidential client (public clients, bad requests, failed authentications). A confidential client
  is bounded by its own budget instead, so its servers may push from one address at any rate;
- per confidential client (off by default): spent only by pushes that authenticated as that client;
- per service access token at the backend API (off by default): spent by the authorization server's
  calls, after its token was checked;
- failed client authentications, per client address and per (client, address): once spent, that
  address (or that address for that client) is refused for the window. Never keyed by the client
  alone, nor by the relaying authorization server's address: a stranger can lock out only itself.
  At the backend API without a forwarded client address (``PAR_TRUSTED_PROXIES``) neither address
  budget applies; the authorization server limits its own front door.

Keys built from what a request claims are bounded: a claimed client id is counted by its digest, an
address by its normalised form, and the counters and keys a process keeps are capped
(``PAR_RATE_LIMIT_MAX_COUNTERS``).

Budgets are checked before a request reaches the push logic. Counters live in the process and are
synchronised with the shared store (the database or Redis) in the background
(``app.db.rate_limit_counters.SyncedCounters``), so checking and spending costs a request no round trip
unless it names a counter this replica has not seen lately.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter

from app.api.client_address import TrustedProxies
from app.api.observability import Metrics
from app.db.rate_limit_counters import SyncedCounters


@dataclass(frozen=True, slots=True)
class Refusal:
    retry_after: int  # seconds
    scope: str  # which budget: address, client, service_token, failed_authentication


def claimed(client_id: str) -> str:
    """A claimed client id, as a counter key part: a digest, so a request naming a 16 KB client id
    costs a counter no more memory than any other."""
    return hashlib.blake2b(client_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Caller:
    front_door: str
    service_id: int
    address: str | None  # the client's (``TrustedProxies.client_address``); None when unknown
    client_id: str | None  # as claimed; proven only once the push authenticated it
    token: str | None = None  # the backend caller's service access token, by its lookup digest

    def key(self, scope: str, *, client: bool = False, address: bool = False, token: bool = False) -> tuple[str, ...]:
        parts = [self.front_door, str(self.service_id), scope]
        if client:
            parts.append(f"client:{claimed(self.client_id or '')}")
        if address:
            parts.append(f"address:{self.address}")
        if token:
            parts.append(f"token:{self.token}")
        return tuple(parts)


@dataclass(frozen=True, slots=True)
class Budgets:
    per_address: RateLimitItem | None
    per_client: RateLimitItem | None
    per_service_token: RateLimitItem | None
    failed_authentication: RateLimitItem


def _budget(setting: str) -> RateLimitItem | None:
    return parse(setting) if setting else None


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
        per_service_token: str = "",
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        self.storage = storage
        self.trusted_proxies = trusted_proxies or TrustedProxies()
        self._limiter = FixedWindowRateLimiter(storage)
        self._budgets = Budgets(
            _budget(per_address), _budget(per_client), _budget(per_service_token), parse(failed_authentication)
        )
        self._metrics = metrics
        self._keys: dict[tuple[RateLimitItem, tuple[str, ...]], str] = {}
        self._max_keys = max_remembered_keys

    def _checks(self, caller: Caller) -> list[tuple[str, RateLimitItem, tuple[str, ...]]]:
        """The budgets a push by ``caller`` must not have spent, cheapest refusal first."""
        budgets = self._budgets
        checks: list[tuple[str, RateLimitItem, tuple[str, ...]]] = []
        if caller.address:
            lockout = budgets.failed_authentication
            checks.append(("failed_authentication", lockout, caller.key("failed_authentication", address=True)))
            if caller.client_id:
                checks.append(
                    ("failed_authentication", lockout, caller.key("failed_authentication", client=True, address=True))
                )
            if budgets.per_address:
                checks.append(("address", budgets.per_address, caller.key("address", address=True)))
        if caller.client_id and budgets.per_client:
            checks.append(("client", budgets.per_client, caller.key("client", client=True)))
        if caller.token and budgets.per_service_token:
            checks.append(("service_token", budgets.per_service_token, caller.key("service_token", token=True)))
        return checks

    async def admit(self, caller: Caller) -> Refusal | None:
        """Refuse when a budget is spent; otherwise spend from the service token's budget (the other
        budgets are spent by ``record``, once the push showed who it was)."""
        checks = self._checks(caller)
        keys = [self._key(item, identifiers) for _, item, identifiers in checks]
        await self.storage.prefetch(keys)  # one read for all unknown
        # What FixedWindowRateLimiter.test and .hit do, on remembered keys (``_key``).
        for (scope, item, identifiers), key in zip(checks, keys, strict=True):
            if await self.storage.get(key) >= item.amount:
                return await self._refuse(caller, scope, item, identifiers)
        if caller.token and self._budgets.per_service_token:
            await self._hit(self._budgets.per_service_token, caller.key("service_token", token=True))
        return None

    async def record(self, caller: Caller, *, authenticated_confidential: bool, failed_authentication: bool) -> None:
        """Spend from the budgets a finished push concerns.

        ``authenticated_confidential``: the push proved a credential of the client it claimed, so it
        spends that client's budget and not its address's. ``failed_authentication``: it claimed a
        client and did not prove it."""
        budgets = self._budgets
        if authenticated_confidential:
            if budgets.per_client:
                await self._hit(budgets.per_client, caller.key("client", client=True))
            return
        if not caller.address:
            return
        if budgets.per_address:
            await self._hit(budgets.per_address, caller.key("address", address=True))
        if failed_authentication:
            await self._hit(budgets.failed_authentication, caller.key("failed_authentication", address=True))
            if caller.client_id:
                await self._hit(
                    budgets.failed_authentication, caller.key("failed_authentication", client=True, address=True)
                )

    async def _hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> None:
        """``FixedWindowRateLimiter.hit`` on a remembered key."""
        await self.storage.incr(self._key(item, identifiers), item.get_expiry())

    def _key(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> str:
        """``item.key_for(*identifiers)``, remembered: building a key cost more than counting on it. At
        most ``PAR_RATE_LIMIT_MAX_COUNTERS`` are remembered, each of bounded length (``Caller.key``)."""
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
