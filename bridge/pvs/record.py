"""The PVS's track record, for /health: when it last answered and how it last failed.

Kept apart from the backoff (which decides when to try again): this only remembers, and
says in one plain log line when the PVS answers again after failing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bridge.clock import Clock

log = logging.getLogger(__name__)


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
        self.failed_attempts = 0  # since the last success

    def success(self) -> None:
        """The PVS gave the data the bridge asked for."""
        now_wall = self._clock.wall()
        if self.failing_since_wall is not None:
            log.info(
                "PVS answering again after %s (%d failed attempt%s)",
                plain_duration(now_wall - self.failing_since_wall),
                self.failed_attempts,
                "" if self.failed_attempts == 1 else "s",
            )
        self.failing_since_wall = None
        self.failed_attempts = 0
        self.last_success_wall = now_wall

    def remember_success(self, at_wall: float) -> None:
        """A success from before this run (the warm-start answer), if none is known yet."""
        if self.last_success_wall is None and self.failing_since_wall is None:
            self.last_success_wall = at_wall

    def failure(self, kind: str, message: str) -> None:
        """A failed attempt."""
        now_wall = self._clock.wall()
        if self.failing_since_wall is None:
            self.failing_since_wall = now_wall
        self.failed_attempts += 1
        self.last_failure = FailureRecord(kind, message, now_wall)


def plain_duration(seconds: float) -> str:
    """A duration as people say it: "45 s", "7 min", "2 h 5 min", "3 days"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"
