"""Backoff: how long to wait before trying again something that keeps failing.

After each consecutive failure the next attempt waits an exponentially growing,
jittered delay, capped at `maximum`. From `threshold` failures on it is a circuit
breaker: callers fail fast and only a single probe goes out when the delay has passed.
One success resets it. The gate uses one for the PVS; the login session uses another
for refused credentials (same rule, its own numbers).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bridge.clock import Clock


class Backoff:
    """Counts consecutive failures and says when the next attempt may go."""

    def __init__(
        self,
        clock: Clock,
        *,
        initial: float,
        maximum: float,
        threshold: int = 1,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self.initial = initial
        self.maximum = maximum
        self.threshold = threshold
        self._jitter = jitter
        self.consecutive_failures = 0
        self.not_before = 0.0  # monotonic time before which no attempt goes
        self.attempts_refused = 0

    @property
    def state(self) -> str:
        """`closed`, `open` (waiting out the delay) or `half-open` (a probe may go)."""
        if self.consecutive_failures < self.threshold:
            return "closed"
        return "open" if self._clock.monotonic() < self.not_before else "half-open"

    def wait_seconds(self) -> float:
        """How long until the next attempt may go (0 when it may go now)."""
        return max(0.0, self.not_before - self._clock.monotonic())

    def delay_for(self, failures: int) -> float:
        """The capped exponential delay after this many consecutive failures, with jitter."""
        base = min(self.maximum, self.initial * (2 ** max(0, failures - 1)))
        # Full jitter on the upper half: between 50% and 100% of the base delay, so a
        # fleet of bridges restarted together does not probe in lockstep.
        return base * (0.5 + 0.5 * self._jitter())

    def succeeded(self) -> None:
        """A success: forget the failures and the delay."""
        self.consecutive_failures = 0
        self.not_before = 0.0

    def failed(self, at_least: float = 0.0) -> float:
        """A failure: push the next attempt out (no sooner than `at_least` seconds, when
        the PVS said when to come back); returns the delay."""
        self.consecutive_failures += 1
        delay = max(self.delay_for(self.consecutive_failures), at_least)
        self.not_before = self._clock.monotonic() + delay
        return delay
