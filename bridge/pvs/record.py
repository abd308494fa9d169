"""The PVS's track record, for /health: when it last answered and how it last failed.

Kept apart from the backoff (which decides when to try again): this only remembers.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.clock import Clock


@dataclass(frozen=True)
class FailureRecord:
    """The last failure."""

    kind: str
    message: str
    at_wall: float


class HealthRecord:
    """Wall times of the last success and of the failures since it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.last_failure: FailureRecord | None = None
        self.failing_since_wall: float | None = None
        self.last_success_wall: float | None = None

    def success(self) -> None:
        """The PVS gave the data the bridge asked for."""
        self.failing_since_wall = None
        self.last_success_wall = self._clock.wall()

    def remember_success(self, at_wall: float) -> None:
        """A success from before this run (the warm-start answer), if none is known yet."""
        if self.last_success_wall is None and self.failing_since_wall is None:
            self.last_success_wall = at_wall

    def failure(self, kind: str, message: str) -> None:
        """A failed attempt."""
        now_wall = self._clock.wall()
        if self.failing_since_wall is None:
            self.failing_since_wall = now_wall
        self.last_failure = FailureRecord(kind, message, now_wall)
