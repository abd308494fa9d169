"""The truth about the request the PVS holds now: what it is, and whether it is overdue.

The gate lets one request at a time reach the PVS, so while one hangs nothing else can
show that the PVS is unwell: every other request waits behind it, and the hung one
fails only at its timeout (two minutes for a DeviceList). This module remembers how long
each command usually takes (its recent answers' 95th percentile) and the request in
flight now, so `/health` can say `degraded` as soon as that request has taken far longer
than usual, naming the command and the time, instead of `ok` until the timeout.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bridge.clock import Clock

# Recent answer times kept per command: enough for a 95th percentile, bounded in memory.
WINDOW = 50
# A request is overdue past this many times its command's usual (p95) time, and never
# before FLOOR seconds: a PVS that usually answers in 1 s may take 5 s without being sick.
FACTOR = 3.0
FLOOR = 15.0
# With no answer to a command seen yet, only its timeout says how long it may take: half
# of it is "far longer than usual" for any PVS that answers within it, and still warns
# well before the bridge gives up (60 s for a DeviceList, 15 s for others by default).
NO_HISTORY_SHARE = 0.5


@dataclass(frozen=True)
class Request:
    """The request the PVS holds now."""

    name: str
    started: float  # monotonic
    timeout: float


def p95(durations: deque[float]) -> float | None:
    """The nearest-rank 95th percentile (None without any)."""
    if not durations:
        return None
    ranked = sorted(durations)
    return ranked[max(0, math.ceil(0.95 * len(ranked)) - 1)]


class InFlight:
    """The request in flight at the PVS now, and how long each command usually takes."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._durations: dict[str, deque[float]] = {}
        self.now: Request | None = None

    @contextmanager
    def request(self, name: str, timeout: float) -> Iterator[None]:
        """Around one request at the PVS: in flight while inside."""
        self.now = Request(name, self._clock.monotonic(), timeout)
        try:
            yield
        finally:
            self.now = None

    def answered(self, name: str, seconds: float) -> None:
        """One good answer to `name` took `seconds` (a failure's time is not told: a
        timeout says nothing of the usual)."""
        window = self._durations.get(name)
        if window is None:
            # Bounded: command names come from the allowlist, never from clients.
            window = self._durations[name] = deque(maxlen=WINDOW)
        window.append(seconds)

    def usual(self, name: str) -> float | None:
        """How long `name` usually takes (its recent p95), None before its first answer."""
        window = self._durations.get(name)
        return None if window is None else p95(window)

    def overdue_after(self, name: str, timeout: float) -> float:
        """Seconds after which a request for `name` is far longer than usual."""
        usual = self.usual(name)
        if usual is None:
            return max(FLOOR, NO_HISTORY_SHARE * timeout)
        return max(FLOOR, FACTOR * usual)

    def problems(self) -> list[str]:
        """The reason for `degraded` while the request in flight is overdue (else none)."""
        current = self.now
        if current is None:
            return []
        elapsed = self._clock.monotonic() - current.started
        if elapsed <= self.overdue_after(current.name, current.timeout):
            return []
        usual = self.usual(current.name)
        said = "no answer to it seen yet" if usual is None else f"usually {_seconds(usual)}"
        return [f"{current.name} in flight for {elapsed:.0f} s ({said})"]

    def describe(self) -> dict[str, object]:
        """For /health: the request in flight now, and each command's usual time."""
        current = self.now
        in_flight: dict[str, object] | None = None
        if current is not None:
            usual_now = self.usual(current.name)
            in_flight = {
                "command": current.name,
                "for_s": round(self._clock.monotonic() - current.started, 1),
                "usual_s": None if usual_now is None else round(usual_now, 2),
                "overdue_after_s": round(self.overdue_after(current.name, current.timeout), 1),
                "timeout_s": current.timeout,
            }
        usual = {name: round(p95(window) or 0.0, 2) for name, window in self._durations.items()}
        return {"in_flight": in_flight, "usual_s": usual}


def _seconds(value: float) -> str:
    """A duration as people say it: whole seconds, or tenths below ten."""
    return f"{value:.0f} s" if value >= 10 or value == int(value) else f"{value:.1f} s"
