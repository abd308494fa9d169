"""The site's recent past, minute by minute: production, consumption and net power, and the
lifetime energy counters, for the home page's curve of the day and its energy so far.

A consumer of the data the bridge already has: each good device read (a `DeviceReader`
listener, `read`) and each frame of the PVS's live feed (`frame`) brings site totals. A
minute keeps the mean of the powers seen in it and the last counters seen. Bounded: the
last 48 hours (48 x 60 minutes) in memory; `history_store` saves and reloads it. Minutes
only move forward: a sample older than the newest minute (a clock set back) is dropped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge.pvs.devices import DeviceRead
from bridge.site.live import LiveState
from bridge.site.model import LiveTotals

POWERS = ("pv_p", "site_load_p", "net_p")  # kW, the mean over the minute
COUNTERS = ("pv_en", "site_load_en", "net_en")  # kWh, lifetime, the last seen in the minute
MINUTES = 48 * 60
# A sample: the minute (wall seconds // 60), and the powers' means then the counters.
Sample = tuple[int, tuple[float | None, ...]]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and abs(number) < 1e12 else None


@dataclass(slots=True)
class Minute:
    """One minute's accumulated powers and last counters."""

    minute: int
    sums: list[float] = field(default_factory=lambda: [0.0] * len(POWERS))
    counts: list[int] = field(default_factory=lambda: [0] * len(POWERS))
    counters: list[float | None] = field(default_factory=lambda: [None] * len(COUNTERS))

    def add(self, values: Mapping[str, object]) -> bool:
        """Take the figures in `values` (unknown or non-numeric ones skipped)."""
        taken = False
        for index, name in enumerate(POWERS):
            number = _number(values.get(name))
            if number is not None:
                self.sums[index] += number
                self.counts[index] += 1
                taken = True
        for index, name in enumerate(COUNTERS):
            number = _number(values.get(name))
            if number is not None:
                self.counters[index] = number
                taken = True
        return taken

    def sample(self) -> Sample:
        """The minute as a sample (means rounded to the watt, counters to the Wh)."""
        means = [
            round(total / count, 3) if count else None
            for total, count in zip(self.sums, self.counts, strict=True)
        ]
        counters = [None if value is None else round(value, 3) for value in self.counters]
        return self.minute, (*means, *counters)


class History:
    """A ring of the last `minutes` minutes with data (48 h by default)."""

    def __init__(self, minutes: int = MINUTES) -> None:
        self._ring: deque[Minute] = deque(maxlen=minutes)
        self.changes = 0  # samples taken so far: the store saves only after a change

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, wall: float, values: Mapping[str, object]) -> bool:
        """Take the totals measured at `wall` (seconds since 1970); False when dropped."""
        if not 0 < wall < 1e11:
            return False
        minute = int(wall // 60)
        last = self._ring[-1] if self._ring else None
        if last is not None and minute < last.minute:
            return False  # the clock went back: keep the minutes in order
        current = last if last is not None and last.minute == minute else Minute(minute)
        if not current.add(values):
            return False
        if current is not last:
            self._ring.append(current)
        self.changes += 1
        return True

    def read(self, found: DeviceRead) -> None:
        """A `DeviceReader` listener: a good read's site totals, at the read's time."""
        snapshot = found.snapshot
        if snapshot is not None:
            self.add(snapshot.taken_at, totals_of(snapshot.totals))

    def frame(self, state: LiveState) -> None:
        """The merged live state after a PVS feed frame (its `time`, in seconds)."""
        if state.time is not None:
            self.add(state.time, state.fields)

    def samples(self, start: float = 0.0, end: float = float("inf")) -> list[Sample]:
        """The samples of the minutes from `start` to before `end` (wall seconds), in order."""
        first = start // 60
        return [entry.sample() for entry in self._ring if first <= entry.minute < end / 60]

    def energy(self, start: float, end: float) -> tuple[float | None, dict[str, float | None]]:
        """(the first minute's wall time with a counter, kWh per counter) between `start`
        and `end`: each counter's last value less its first. Production and consumption
        cannot go down (a replaced meter's counter): those are None then."""
        samples = self.samples(start, end)
        since: float | None = None
        deltas: dict[str, float | None] = {}
        for index, name in enumerate(COUNTERS, start=len(POWERS)):
            seen = [
                (minute, value)
                for minute, values in samples
                if (value := values[index]) is not None
            ]
            if not seen:
                deltas[name] = None
                continue
            first = seen[0][0] * 60.0
            since = first if since is None else min(since, first)
            delta = round(seen[-1][1] - seen[0][1], 3)
            deltas[name] = None if delta < 0 and name != "net_en" else delta
        return since, deltas

    def document(self) -> list[list[float | None]]:
        """Every sample, as plain lists (what the store writes)."""
        return [[minute, *values] for minute, values in map(Minute.sample, self._ring)]

    def restore(self, rows: Iterable[Sequence[object]], oldest: float, newest: float) -> int:
        """Take stored samples (as `document` wrote them) measured between `oldest` and
        `newest` (wall seconds); the number taken. ValueError on a malformed row."""
        taken = 0
        for row in rows:
            if not isinstance(row, list | tuple) or len(row) != 1 + len(POWERS) + len(COUNTERS):
                raise ValueError(f"a stored sample is not {1 + len(POWERS) + len(COUNTERS)} items")
            minute = row[0]
            if isinstance(minute, bool) or not isinstance(minute, int):
                raise ValueError("a stored sample's minute is not an integer")
            if not oldest <= minute * 60 <= newest:
                continue
            values = dict(zip(POWERS + COUNTERS, row[1:], strict=True))
            if self.add(minute * 60.0, values):
                taken += 1
        self.changes = 0
        return taken


def totals_of(totals: LiveTotals) -> dict[str, object]:
    """The figures of a snapshot's totals that the history keeps."""
    return {name: getattr(totals, name) for name in POWERS + COUNTERS}
