"""Token-bucket rate limit per client address, in bounded memory.

Each address gets `burst` tokens refilled at `rate` per second; a request costs one.
The buckets live in an LRU map of at most `max_clients` addresses, so a LAN full of
spoofed or short-lived clients cannot grow the Pi's memory.
"""

from __future__ import annotations

from aiohttp import web
from cachetools import LRUCache

from bridge.clock import Clock
from bridge.errors import json_error


class RateLimiter:
    """Decides whether one more request from an address may go on now."""

    def __init__(self, clock: Clock, *, rate: float, burst: int, max_clients: int) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = float(burst)
        # address -> (tokens left, monotonic time of the last update)
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_clients)
        self.refused = 0

    def retry_after(self, address: str) -> float:
        """Take a token for `address`: 0 when allowed, else seconds until one is free."""
        now = self.clock.monotonic()
        tokens, updated = self._buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        if tokens >= 1.0:
            self._buckets[address] = (tokens - 1.0, now)
            return 0.0
        self._buckets[address] = (tokens, now)
        self.refused += 1
        return (1.0 - tokens) / self.rate

    @property
    def tracked(self) -> int:
        """How many addresses have a bucket now."""
        return len(self._buckets)


def refusal(limiter: RateLimiter | None, request: web.Request) -> web.Response | None:
    """The JSON 429 for a client over its rate (None when allowed, or with no limit)."""
    if limiter is None:
        return None
    wait = limiter.retry_after(request.remote or "unknown")
    if wait <= 0:
        return None
    return json_error(
        429,
        "rate_limited",
        f"too many requests from {request.remote}; "
        f"allowed {limiter.rate:g}/s with bursts of {limiter.burst:g}",
        retry_after=wait,
    )
