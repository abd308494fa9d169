"""Backoff and circuit breaker: how often the bridge may try a PVS that keeps failing.

After each consecutive failure the next attempt waits an exponentially growing,
jittered delay, capped at `backoff_max`. From `threshold` failures on the breaker is
open: callers fail fast and only a single probe goes out when the delay has passed.
One success closes it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from bridge.clock import Clock


@dataclass
class FailureRecord:
    """The last failure, kept for /health."""

    kind: str
    message: str
    at_wall: float


class Breaker:
    """Counts consecutive upstream failures and says when the next attempt may go."""

    def __init__(
        self,
        clock: Clock,
        *,
        initial: float,
        maximum: float,
        threshold: int,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self.initial = initial
        self.maximum = maximum
        self.threshold = threshold
        self.jitter = jitter  # tests replace it to make delays exact
        self.consecutive_failures = 0
        self.not_before = 0.0  # monotonic time before which no attempt goes upstream
        self.last_failure: FailureRecord | None = None
        self.failing_since_wall: float | None = None
        self.last_success_wall: float | None = None
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
        return base * (0.5 + 0.5 * self.jitter())

    def record_success(self) -> None:
        """A good answer: close the breaker and forget the delay."""
        self.consecutive_failures = 0
        self.not_before = 0.0
        self.failing_since_wall = None
        self.last_success_wall = self._clock.wall()

    def remember_success(self, at_wall: float) -> None:
        """A success from before this run (the warm-start answer), if none is known yet."""
        if self.last_success_wall is None and not self.consecutive_failures:
            self.last_success_wall = at_wall

    def record_failure(self, kind: str, message: str) -> None:
        """A failed attempt: push the next one out by the backoff delay."""
        self.consecutive_failures += 1
        now_wall = self._clock.wall()
        if self.failing_since_wall is None:
            self.failing_since_wall = now_wall
        self.last_failure = FailureRecord(kind, message, now_wall)
        self.not_before = self._clock.monotonic() + self.delay_for(self.consecutive_failures)
