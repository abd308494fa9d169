"""Answers kept in memory: single-flight, refresh-ahead, stale-if-error, maximum staleness.

The cache never talks to the PVS itself; it calls the `fetch` it was given (which goes
through the one upstream gate). Rules it keeps:
- identical concurrent requests share one fetch (single-flight);
- a fresh entry is a HIT; an expired one that is not older than `max_stale` is served at
  once as STALE while one shared refresh runs; older data is never served;
- REFRESH-class entries (the device list) are refreshed in the background one interval
  after the last read started, while clients keep asking (see `refresh`); an answer
  stays fresh while its successor is on schedule (see `entries.Entry.fresh_until`);
- an answer the PVS layer rejects (see `pvs.devices`) never replaces good data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from cachetools import TLRUCache

from bridge.cache.entries import STALE_WARNING, Entry, Lookup, TooStale
from bridge.cache.refresh import RefreshAhead
from bridge.cache.waiting import within
from bridge.clock import Clock
from bridge.flight import SingleFlight
from bridge.pvs.answer import Answer
from bridge.pvs.budget import OverBudget
from bridge.pvs.errors import BadAnswer, GateFull, Rejected, UpstreamError
from bridge.pvs.requests import CacheClass, ProxyRequest

log = logging.getLogger(__name__)

Fetch = Callable[[ProxyRequest], Awaitable[Answer]]


def keeps_data_and_refusals(answer: Answer) -> bool:
    """2xx, and the PVS's definitive refusals: an endpoint it lacks (404) or parameters it
    rejects (400) stay so, and polling them must not reach it every time."""
    return answer.ok or answer.status in (400, 404)


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
        backoff_wait: Callable[[], float] = lambda: 0.0,
        keeps: Callable[[Answer], bool] = keeps_data_and_refusals,
        refresh_cap: Callable[[ProxyRequest], float] = lambda _request: 0.0,
        client_wait: float = 30.0,
    ) -> None:
        self.clock = clock
        self.client_wait = client_wait  # the longest a client waits for the PVS
        self._keeps = keeps
        self._fetch = fetch
        self._ttl_for = ttl_for
        self._refresh_cap = refresh_cap  # the longest a refresh may be expected to take
        self._backoff_wait = backoff_wait
        self.max_stale = max_stale
        # Entries vanish once they are too old to be served even as stale data.
        self._entries: TLRUCache[str, Entry] = TLRUCache(
            maxsize=max_entries,
            ttu=lambda _key, entry, _now: entry.answer.fetched_at + max(entry.ttl, max_stale),
            timer=clock.monotonic,
        )
        # The same entries by key, for reads: a plain dict lookup is the cheapest thing on
        # the cache-hit path. Pruned to the TLRU's keys on every store, so it stays bounded.
        self._index: dict[str, Entry] = {}
        self._flights: SingleFlight[str, Answer] = SingleFlight()
        self.refresh = RefreshAhead(
            clock, self._entries.get, self._shared_fetch_quiet,
            idle_after=idle_after, backoff_wait=backoff_wait,
        )  # fmt: skip
        self._last_good_at: dict[str, float] = {}  # survives eviction, for error messages
        self.counts: Counter[str] = Counter()
        self.rejections: list[tuple[float, str, str]] = []  # (wall time, key, why), last few

    async def get(self, request: ProxyRequest) -> Lookup:
        """From memory when possible, else the one shared fetch, awaited `client_wait` at most."""
        return self.from_memory(request) or await within(
            self.clock, self.client_wait, request.name, self.fetch_shared(request)
        )

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
                self.refresh.ensure(entry)
            self.counts["HIT"] += 1
            return Lookup(entry.answer, "HIT", age, entry.fresh_until - age)
        if age < entry.fresh_until and self._backoff_wait() <= 0:
            self._revalidate(entry)  # its successor is (now) on its way, on schedule
            self.counts["HIT"] += 1
            return Lookup(entry.answer, "HIT", age, entry.fresh_until - age)
        if age <= self.max_stale:
            self._revalidate(entry)
            self.counts["STALE"] += 1
            return Lookup(entry.answer, "STALE", age, 0.0, STALE_WARNING)
        return None

    async def fetch_shared(self, request: ProxyRequest) -> Lookup:
        """Wait for the one upstream fetch every concurrent asker of `request` shares (MISS)."""
        key = request.target
        try:
            answer = await self._flights.run(key, lambda: self._fetch_and_store(request))
        except (BadAnswer, GateFull, OverBudget):
            raise  # the PVS's own answer, a full queue, the day's budget: not data age
        except UpstreamError as error:
            last = self._last_good_at.get(key)
            raise TooStale(error, None if last is None else self.clock.monotonic() - last) from None
        self.counts["MISS"] += 1
        stored = self._entries.get(key)
        if stored is not None and request.route.cache is CacheClass.REFRESH:
            stored.last_access = self.clock.monotonic()
            self.refresh.ensure(stored)
        age = self.clock.monotonic() - answer.fetched_at
        # Only an answer the cache holds may be called fresh for a while; a client that
        # just waited for it is told what is left of its interval (the refresh's grace
        # is for answers held while their successor is on its way).
        fresh_for = stored.ttl - age if stored is not None and stored.answer is answer else 0
        return Lookup(answer, "MISS", age, max(0.0, fresh_for))

    async def prefetch(self, request: ProxyRequest) -> None:
        """Fill the cache without counting as client interest (used to warm up at start)."""
        try:
            await self._shared_fetch_quiet(request)
        except UpstreamError as error:
            log.info("warm-up of %s failed: %s", request.name, error.message)

    async def _shared_fetch_quiet(self, request: ProxyRequest) -> Answer:
        return await self._flights.run(request.target, lambda: self._fetch_and_store(request))

    async def _fetch_and_store(self, request: ProxyRequest) -> Answer:
        started = self.clock.monotonic()
        try:
            answer = await self._fetch(request)
        except Rejected as rejected:
            self.counts["rejected"] += 1
            why = rejected.message
            self.rejections = [*self.rejections[-9:], (self.clock.wall(), request.target, why)]
            log.warning("kept the previous %s: %s", request.name, why)
            raise
        if not self._keeps(answer) or request.route.cache is CacheClass.NEVER:
            return answer
        previous = self._entries.get(request.target)
        if previous is not None and previous.answer.ok and not answer.ok:
            return answer  # a refusal never replaces good data; passed on, not kept
        self._store(self._entry(request, answer, previous, self.clock.monotonic() - started))
        if len(self._last_good_at) > 4 * (self._entries.maxsize or 1):
            self._last_good_at.clear()  # bounded: only a hint for error messages
        return answer

    def _entry(
        self, request: ProxyRequest, answer: Answer, previous: Entry | None, took: float
    ) -> Entry:
        """The new entry, with what the refreshes before it taught about their duration."""
        ttl, cap = self._ttl_for(request), self._refresh_cap(request)
        return Entry.succeeding(previous, request, answer, ttl, took, cap, self.clock.monotonic())

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
        if self.refresh.closed:
            return
        if entry.request.route.cache is CacheClass.REFRESH:
            self.refresh.ensure(entry)
        elif entry.request.target not in self._flights:
            request = entry.request
            self._flights.task(request.target, lambda: self._fetch_and_store(request))

    def snapshot(self) -> list[dict[str, object]]:
        """Each entry's age and state, for /health."""
        now, backing_off = self.clock.monotonic(), self._backoff_wait() > 0
        return [
            entry.describe(now - entry.answer.fetched_at, key in self.refresh, backing_off)
            for key, entry in list(self._entries.items())
        ]

    def preload(self, request: ProxyRequest, answer: Answer) -> None:
        """Hold a good answer kept from an earlier run (warm start), unless one is here."""
        if request.target not in self._entries:
            self._store(Entry(request, answer, self._ttl_for(request), float("-inf")))

    def keep_fresh(self, request: ProxyRequest, *, read_if_missing: bool = False) -> None:
        """A consumer that reads this data elsewhere (a metrics scrape, MQTT, the home
        page) counts as interest, as a client's read would: refresh-ahead keeps going at
        one read per interval. No HIT counted, nothing awaited. `read_if_missing`: with
        nothing held at all, start the one shared read in the background (single flight;
        the gate's backoff still decides whether it goes)."""
        entry = self._entries.get(request.target)
        if entry is None:
            if read_if_missing and not self.refresh.closed:
                self._flights.task(request.target, lambda: self._fetch_and_store(request))
            return
        entry.last_access = self.clock.monotonic()
        if request.route.cache is CacheClass.REFRESH:
            self.refresh.ensure(entry)

    def holds_fresh(self, request: ProxyRequest) -> bool:
        """Whether a fresh answer for `request` is held (no side effects)."""
        entry = self._entries.get(request.target)
        return entry is not None and self.clock.monotonic() - entry.answer.fetched_at < entry.ttl

    def peek(self, key: str) -> Answer | None:
        """The good answer held for `key`, if any (no side effects)."""
        entry = self._entries.get(key)
        return None if entry is None else entry.answer

    @property
    def fetching(self) -> int:
        """How many fetches are in flight now."""
        return len(self._flights)

    def servable(self) -> bool:
        """Whether any entry can still be served (fresh or within the maximum staleness)."""
        now = self.clock.monotonic()
        return any(
            now - entry.answer.fetched_at <= max(entry.ttl, self.max_stale)
            for entry in list(self._entries.values())
        )

    async def close(self) -> None:
        """Stop every background refresh and wait for in-flight fetches to end."""
        await self.refresh.close()
        await self._flights.cancel_all()
