"""Answers kept in memory: single-flight, refresh-ahead, stale-if-error, maximum staleness.

The cache never talks to the PVS itself; it calls the `fetch` it was given (which goes
through the one upstream gate). Rules it keeps:
- identical concurrent requests share one fetch (single-flight);
- a fresh entry is a HIT; an expired one that is not older than `max_stale` is served at
  once as STALE while one shared refresh runs; older data is never served;
- REFRESH-class entries (DeviceList) are refreshed in the background shortly before they
  expire, at most once per TTL, while clients keep asking, and no longer once they stop;
- a suspicious answer (see `sanity`) never replaces good data.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from cachetools import TLRUCache

from bridge.answer import Answer
from bridge.clock import Clock
from bridge.policy import CacheClass, ProxyRequest
from bridge.sanity import suspicious_change
from bridge.upstream import BadAnswer, GateFull, UpstreamError

log = logging.getLogger(__name__)

Fetch = Callable[[ProxyRequest], Awaitable[Answer]]


class TooStale(UpstreamError):
    """Upstream failed and the last good answer is older than the maximum staleness."""

    status = 504
    kind = "too_stale"

    def __init__(self, cause: UpstreamError, age: float | None) -> None:
        where = (
            "no answer was ever received"
            if age is None
            else f"the last good answer is {age:.0f} s old"
        )
        super().__init__(f"{cause.message}; {where}", retry_after=cause.retry_after)
        self.cause = cause
        self.age = age


class Rejected(UpstreamError):
    """The PVS answered 2xx, but the answer looks broken compared with the last good one."""

    status = 502
    kind = "rejected"


@dataclass
class Entry:
    """A good answer, how long it stays fresh, and when a client last asked for it."""

    request: ProxyRequest
    answer: Answer
    ttl: float
    last_access: float


class Lookup(NamedTuple):
    """What a client gets: the answer, HIT/STALE/MISS, its age and remaining freshness.

    A NamedTuple, not a frozen dataclass: one is built for every cache hit.
    """

    answer: Answer
    state: str
    age: float
    fresh_for: float
    warning: str | None = None


class AnswerCache:
    """The in-memory cache of PVS answers, bounded in entries and in age."""

    def __init__(
        self,
        clock: Clock,
        fetch: Fetch,
        ttl_for: Callable[[ProxyRequest], float],
        *,
        max_entries: int,
        max_stale: float,
        idle_after: float,
        # 2xx, and the PVS's definitive refusals: an endpoint it lacks (404) or parameters
        # it rejects (400) stay so, and polling them must not reach it every time.
        keeps: Callable[[Answer], bool] = lambda answer: answer.ok or answer.status in (400, 404),
    ) -> None:
        self.clock = clock
        self._keeps = keeps  # which answers are worth keeping
        self._fetch = fetch
        self._ttl_for = ttl_for
        self.max_stale = max_stale
        self.idle_after = idle_after
        # Entries vanish once they are too old to be served even as stale data.
        self._entries: TLRUCache[str, Entry] = TLRUCache(
            maxsize=max_entries,
            ttu=lambda _key, entry, _now: entry.answer.fetched_at + max(entry.ttl, max_stale),
            timer=clock.monotonic,
        )
        # The same entries by key, for reads: a plain dict lookup is the cheapest thing on
        # the cache-hit path. Pruned to the TLRU's keys on every store, so it stays bounded.
        self._index: dict[str, Entry] = {}
        self._in_flight: dict[str, asyncio.Task[Answer]] = {}
        self._refreshers: dict[str, asyncio.Task[None]] = {}
        self._last_refresh_start: dict[str, float] = {}
        self._last_good_at: dict[str, float] = {}  # survives eviction, for error messages
        self.counts: Counter[str] = Counter()
        self.rejections: list[tuple[float, str, str]] = []  # (wall time, key, why), last few
        self.closed = False

    async def get(self, request: ProxyRequest) -> Lookup:
        """Answer from memory when possible; otherwise wait for the one shared fetch."""
        return self.from_memory(request) or await self.fetch_shared(request)

    def from_memory(self, request: ProxyRequest) -> Lookup | None:
        """A HIT or STALE answer without waiting (None when there is none to serve).

        Synchronous on purpose: this is every cache hit, and the caller need not await.
        """
        entry = self._index.get(request.target)
        if entry is None:
            return None
        now = self.clock.monotonic()
        entry.last_access = now
        age = now - entry.answer.fetched_at
        if age < entry.ttl:
            if request.route.cache is CacheClass.REFRESH:
                self._ensure_refresher(entry)
            self.counts["HIT"] += 1
            return Lookup(entry.answer, "HIT", age, entry.ttl - age)
        if age <= self.max_stale:
            self._revalidate(entry)
            self.counts["STALE"] += 1
            return Lookup(entry.answer, "STALE", age, 0.0, self._stale_warning())
        return None

    async def fetch_shared(self, request: ProxyRequest) -> Lookup:
        """Wait for the one upstream fetch every concurrent asker of `request` shares (MISS)."""
        key = request.target
        try:
            answer = await asyncio.shield(self._shared_fetch(request))
        except (BadAnswer, GateFull):
            raise  # the PVS's own answer, or a full queue: nothing to do with data age
        except UpstreamError as error:
            last = self._last_good_at.get(key)
            raise TooStale(error, None if last is None else self.clock.monotonic() - last) from None
        self.counts["MISS"] += 1
        stored = self._entries.get(key)
        if stored is not None and request.route.cache is CacheClass.REFRESH:
            stored.last_access = self.clock.monotonic()
            self._ensure_refresher(stored)
        age = self.clock.monotonic() - answer.fetched_at
        # Only an answer the cache holds may be called fresh for a while.
        held = stored is not None and stored.answer is answer
        return Lookup(answer, "MISS", age, max(0.0, self._ttl_for(request) - age) if held else 0.0)

    async def prefetch(self, request: ProxyRequest) -> None:
        """Fill the cache without counting as client interest (used to warm up at start)."""
        try:
            await self._shared_fetch(request)
        except UpstreamError as error:
            log.info("warm-up of %s failed: %s", request.name, error.message)

    def _stale_warning(self) -> str:
        return '110 pvs-bridge "Response is Stale"'

    def _shared_fetch(self, request: ProxyRequest) -> asyncio.Task[Answer]:
        key = request.target
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch_and_store(request), name=f"fetch {key}")
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._fetch_done(key, done))
        return task

    def _fetch_done(self, key: str, task: asyncio.Task[Answer]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so a refresh nobody awaits logs nothing

    async def _fetch_and_store(self, request: ProxyRequest) -> Answer:
        answer = await self._fetch(request)
        if not self._keeps(answer) or request.route.cache is CacheClass.NEVER:
            return answer
        key = request.target
        previous = self._entries.get(key)
        if previous is not None and previous.answer.ok and not answer.ok:
            return answer  # a refusal never replaces good data; passed on, not kept
        why = suspicious_change(
            request.name, answer.body, previous.answer.body if previous else None
        )
        if why is not None:
            self.counts["rejected"] += 1
            self.rejections = [*self.rejections[-9:], (self.clock.wall(), key, why)]
            log.warning("kept the previous %s: new answer %s", request.name, why)
            raise Rejected(f"{request.name} answer rejected: {why}")
        last_access = previous.last_access if previous else float("-inf")
        self._store(Entry(request, answer, self._ttl_for(request), last_access))
        if len(self._last_good_at) > 4 * (self._entries.maxsize or 1):
            self._last_good_at.clear()  # bounded: only a hint for error messages
        return answer

    def _store(self, entry: Entry) -> None:
        key = entry.request.target
        self._entries[key] = entry
        if entry.answer.ok:
            self._last_good_at[key] = entry.answer.fetched_at
        if len(self._index) >= (self._entries.maxsize or 1):
            self._index = {k: v for k, v in self._index.items() if k in self._entries}
        self._index[key] = entry

    def _revalidate(self, entry: Entry) -> None:
        """Start one background refresh of an expired entry (unless one is on its way)."""
        if self.closed:
            return
        if entry.request.route.cache is CacheClass.REFRESH:
            self._ensure_refresher(entry)
        elif entry.request.target not in self._in_flight:
            self._shared_fetch(entry.request)

    def _ensure_refresher(self, entry: Entry) -> None:
        key = entry.request.target
        if self.closed or key in self._refreshers:
            return
        task = asyncio.create_task(self._refresh_loop(entry.request), name=f"refresh {key}")
        self._refreshers[key] = task
        task.add_done_callback(lambda _t: self._refreshers.pop(key, None))

    async def _refresh_loop(self, request: ProxyRequest) -> None:
        """Keep one entry fresh while clients ask for it; stop once they have gone quiet."""
        key = request.target
        while not self.closed:
            entry = self._entries.get(key)
            now = self.clock.monotonic()
            if entry is None or now - entry.last_access > self.idle_after:
                log.debug("refresh-ahead of %s stops: no client asked recently", request.name)
                return
            due = self._refresh_due(entry, now)
            if due > now:
                await self.clock.sleep(due - now)
                continue
            self._last_refresh_start[key] = now
            try:
                await asyncio.shield(self._shared_fetch(request))
            except UpstreamError:
                pass  # counted by the upstream and the breaker; the loop waits them out
            except Exception:
                # A bug must not end refresh-ahead for good; the next try is a TTL away.
                log.exception("refresh of %s failed unexpectedly", request.name)

    def _refresh_due(self, entry: Entry, now: float) -> float:
        """When the next refresh should start: ahead of expiry, never twice within a TTL."""
        key = entry.request.target
        lead = min(entry.answer.elapsed + 1.0, entry.ttl / 2)
        due = entry.answer.fetched_at + entry.ttl - lead
        due = max(due, self._last_refresh_start.get(key, float("-inf")) + entry.ttl)
        wait = self._breaker_wait()
        return max(due, now + wait) if wait > 0 else due

    # Set by the app so the refresher follows the same backoff as every other caller.
    _breaker_wait: Callable[[], float] = staticmethod(lambda: 0.0)

    def follow_backoff(self, wait: Callable[[], float]) -> None:
        """Make the refresh loop wait whenever the upstream breaker holds attempts."""
        self._breaker_wait = wait

    def snapshot(self) -> list[dict[str, object]]:
        """Each entry's age and state, for /health."""
        now = self.clock.monotonic()
        rows: list[dict[str, object]] = []
        for key, entry in list(self._entries.items()):
            age = now - entry.answer.fetched_at
            rows.append(
                {
                    "key": key,
                    "name": entry.request.name,
                    "age_s": round(age, 1),
                    "ttl_s": entry.ttl,
                    "state": "fresh" if age < entry.ttl else "stale",
                    "bytes": len(entry.answer.body),
                    "refresh_ahead": key in self._refreshers,
                }
            )
        return rows

    def preload(self, request: ProxyRequest, answer: Answer) -> None:
        """Hold a good answer kept from an earlier run (warm start), unless one is here."""
        key = request.target
        if key not in self._entries:
            self._store(Entry(request, answer, self._ttl_for(request), float("-inf")))

    def holds_fresh(self, request: ProxyRequest) -> bool:
        """Whether a fresh answer for `request` is held (no side effects)."""
        entry = self._entries.get(request.target)
        return entry is not None and self.clock.monotonic() - entry.answer.fetched_at < entry.ttl

    def peek(self, key: str) -> Answer | None:
        """The good answer held for `key`, if any (no side effects)."""
        entry = self._entries.get(key)
        return None if entry is None else entry.answer

    def next_refresh_in(self) -> float | None:
        """Seconds until the soonest background refresh (None when none is scheduled)."""
        now = self.clock.monotonic()
        waits = [
            self._refresh_due(entry, now) - now
            for key in list(self._refreshers)
            if (entry := self._entries.get(key)) is not None
        ]
        return max(0.0, min(waits)) if waits else None

    def servable(self) -> bool:
        """Whether any entry can still be served (fresh or within the maximum staleness)."""
        now = self.clock.monotonic()
        return any(
            now - entry.answer.fetched_at <= max(entry.ttl, self.max_stale)
            for entry in list(self._entries.values())
        )

    async def close(self) -> None:
        """Stop every background refresh and wait for in-flight fetches to end."""
        self.closed = True
        tasks = [*self._refreshers.values(), *self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
