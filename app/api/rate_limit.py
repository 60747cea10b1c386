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
from typing import NamedTuple

from limits import RateLimitItem, parse

from app.api.client_address import TrustedProxies
from app.api.observability import Metrics
from app.db.rate_limit_counters import SyncedCounters

# A claimed client id longer than this is digested on every push rather than remembered with its keys:
# real ids are far shorter, and a remembered key costs no more memory than any other.
REMEMBERED_CLIENT_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Refusal:
    retry_after: int  # seconds
    scope: str  # which budget: address, client, service_token, failed_authentication


def claimed(client_id: str) -> str:
    """A claimed client id, as a counter key part: a digest, so a request naming a 16 KB client id
    costs a counter no more memory than any other."""
    return hashlib.blake2b(client_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class Caller(NamedTuple):
    """Who pushes; a tuple, so that it is cheap to build per push and is itself the key its counters are
    remembered by (``RateLimits._counters``)."""

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


@dataclass(frozen=True, slots=True)
class _Counters:
    """The counters of one caller, by their storage keys (``RateLimitItem.key_for``, as the shared store
    has always named them)."""

    checks: tuple[tuple[str, int, str], ...]  # (scope, budget, key) that admit checks, cheapest refusal first
    check_keys: tuple[str, ...]
    # Spent, as (key, window length in seconds):
    service_token: tuple[str, int] | None  # by admit
    client: tuple[str, int] | None  # by a push that authenticated the client
    address: tuple[str, int] | None  # by any other push from a known address
    failed_authentication: tuple[tuple[str, int], ...]  # by a failed authentication from a known address

    @property
    def size(self) -> int:
        """At most how many keys this holds."""
        return len(self.checks) + (self.client is not None)


def _budget(setting: str) -> RateLimitItem | None:
    return parse(setting) if setting else None


class RateLimits:
    """Fixed windows (what ``limits``' ``FixedWindowRateLimiter`` does: refuse once a window's count reaches
    the budget; a hit opens a window of the budget's length) on ``SyncedCounters``. Counting calls the
    counters directly, without I/O unless a counter must be read from the shared store first: the
    strategy's and the storage API's per-call layers cost more than the counting itself. ``limits``
    still parses the settings, names the counters and is the shared store's API (Redis)."""

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
        self._budgets = Budgets(
            _budget(per_address), _budget(per_client), _budget(per_service_token), parse(failed_authentication)
        )
        self._metrics = metrics
        self._keys: dict[Caller, _Counters] = {}
        self._kept_keys = 0  # counter keys held by ``_keys``
        self._max_keys = max_remembered_keys

    def _counters(self, caller: Caller) -> _Counters:
        """The counters of ``caller``, remembered: building their keys cost more than counting on them. At
        most ``PAR_RATE_LIMIT_MAX_COUNTERS`` keys are remembered, each of bounded length (``Caller.key``)."""
        counters = self._keys.get(caller)
        if counters is None:
            counters = self._build(caller)
            if caller.client_id is None or len(caller.client_id) <= REMEMBERED_CLIENT_ID_LENGTH:
                if self._kept_keys + counters.size > self._max_keys:
                    self._keys.clear()
                    self._kept_keys = 0
                self._keys[caller] = counters
                self._kept_keys += counters.size
        return counters

    def _build(self, caller: Caller) -> _Counters:
        budgets = self._budgets
        checks: list[tuple[str, int, str]] = []

        def counter(budget: RateLimitItem, scope: str, **parts: bool) -> tuple[str, int]:
            key = budget.key_for(*caller.key(scope, **parts))
            checks.append((scope, budget.amount, key))
            return key, budget.get_expiry()

        address = None
        failed: tuple[tuple[str, int], ...] = ()
        if caller.address:
            lockout = budgets.failed_authentication
            failed = (counter(lockout, "failed_authentication", address=True),)
            if caller.client_id:
                failed += (counter(lockout, "failed_authentication", client=True, address=True),)
            if budgets.per_address:
                address = counter(budgets.per_address, "address", address=True)
        client = None
        if budgets.per_client:
            if caller.client_id:
                client = counter(budgets.per_client, "client", client=True)
            else:  # checked for no one; spent only by a push that authenticated a client
                client = budgets.per_client.key_for(*caller.key("client", client=True)), budgets.per_client.get_expiry()
        service_token = None
        if caller.token and budgets.per_service_token:
            service_token = counter(budgets.per_service_token, "service_token", token=True)
        return _Counters(tuple(checks), tuple(key for _, _, key in checks), service_token, client, address, failed)

    async def admit(self, caller: Caller) -> Refusal | None:
        """Refuse when a budget is spent; otherwise spend from the service token's budget (the other
        budgets are spent by ``record``, once the push showed who it was)."""
        counters = self._counters(caller)
        storage = self.storage
        counts = storage.counts(counters.check_keys)
        if counts is None:
            await storage.prefetch(counters.check_keys)  # one read for all unknown
            counts = storage.counts(counters.check_keys, read=True)
        for (scope, budget, key), count in zip(counters.checks, counts, strict=True):
            if count >= budget:
                return await self._refuse(caller, scope, key)
        if counters.service_token is not None:
            await self._hit(counters.service_token)
        return None

    async def record(self, caller: Caller, *, authenticated_confidential: bool, failed_authentication: bool) -> None:
        """Spend from the budgets a finished push concerns.

        ``authenticated_confidential``: the push proved a credential of the client it claimed, so it
        spends that client's budget and not its address's. ``failed_authentication``: it claimed a
        client and did not prove it."""
        counters = self._counters(caller)
        if authenticated_confidential:
            if counters.client is not None:
                await self._hit(counters.client)
            return
        if not caller.address:
            return
        if counters.address is not None:
            await self._hit(counters.address)
        if failed_authentication:
            for counter in counters.failed_authentication:
                await self._hit(counter)

    async def _hit(self, counter: tuple[str, int]) -> None:
        """One hit, opening a window of the budget's length if none is open (``FixedWindowRateLimiter.hit``)."""
        key, expiry = counter
        if not self.storage.hit(key, expiry):
            await self.storage.incr(key, expiry)

    async def _refuse(self, caller: Caller, scope: str, key: str) -> Refusal:
        self._metrics.rate_limited.labels(caller.front_door, scope).inc()
        reset = await self.storage.get_expiry(key)  # ``FixedWindowRateLimiter.get_window_stats``' reset
        return Refusal(retry_after=max(1, math.ceil(reset - time.time())), scope=scope)
