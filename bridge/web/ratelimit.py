"""Per-client rate limit on what must reach the PVS, in bounded memory.

Answers from memory cost the PVS nothing and are never refused for rate (a Home
Assistant restart sends dozens of requests in a second, and a PVS never answers 429).
Requests that need the PVS take a token from their address's bucket (`burst` tokens,
refilled at `rate` per second); a client without a token first waits for one, up to
`max_wait`, and only then gets a JSON 429 with Retry-After. The buckets live in an LRU
map of at most `max_clients` addresses, so a LAN full of spoofed or short-lived clients
cannot grow the Pi's memory.
"""

from __future__ import annotations

from aiohttp import web
from cachetools import LRUCache

from bridge.clock import Clock
from bridge.config import RateLimitConfig
from bridge.web.errors import json_error


class RateLimiter:
    """Decides whether, and after how long, one more PVS-bound request from an address goes."""

    def __init__(self, clock: Clock, config: RateLimitConfig) -> None:
        self.clock = clock
        self.rate = config.rate
        self.burst = float(config.burst)
        self.max_wait = config.max_wait
        # address -> (tokens left, monotonic time of the last update); tokens go below
        # zero while clients wait for them, which keeps the waiters in line.
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=config.max_clients)
        self.refused = 0
        self.delayed = 0

    def reserve(self, address: str) -> float:
        """Take a token: 0 to go now, a wait in seconds to go after, or -1 when refused."""
        now = self.clock.monotonic()
        tokens, updated = self._buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        wait = max(0.0, (1.0 - tokens) / self.rate)
        if wait > self.max_wait:
            self._buckets[address] = (tokens, now)
            self.refused += 1
            return -1.0
        self._buckets[address] = (tokens - 1.0, now)
        if wait > 0:
            self.delayed += 1
        return wait

    def retry_after(self, address: str) -> float:
        """Seconds until `address` has a token again (for the 429's Retry-After)."""
        tokens, updated = self._buckets.get(address, (self.burst, self.clock.monotonic()))
        tokens = min(self.burst, tokens + (self.clock.monotonic() - updated) * self.rate)
        return max(0.0, (1.0 - tokens) / self.rate)

    @property
    def tracked(self) -> int:
        """How many addresses have a bucket now."""
        return len(self._buckets)

    def describe(self) -> dict[str, object]:
        """For /health."""
        return {
            "rate": self.rate,
            "burst": self.burst,
            "max_wait_s": self.max_wait,
            "clients_tracked": self.tracked,
            "delayed": self.delayed,
            "refused": self.refused,
        }


async def wait_turn(limiter: RateLimiter | None, request: web.Request) -> web.Response | None:
    """Wait (bounded) for the client's token; the JSON 429 when it would wait too long."""
    if limiter is None:
        return None
    address = request.remote or "unknown"
    wait = limiter.reserve(address)
    if wait == 0:
        return None
    if wait > 0:
        await limiter.clock.sleep(wait)
        return None
    return json_error(
        429,
        "rate_limited",
        f"too many requests from {request.remote} that need the PVS; "
        f"allowed {limiter.rate:g}/s with bursts of {limiter.burst:g}",
        retry_after=limiter.retry_after(address),
    )
