"""What the cache holds and hands out: entries, lookups, and the errors of missing data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from bridge.pvs.answer import Answer
from bridge.pvs.errors import UpstreamError
from bridge.pvs.requests import ProxyRequest

STALE_WARNING = '110 pvs-bridge "Response is Stale"'


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


# How many recent refresh times an entry remembers, and the margin on the longest: an
# answer stays fresh while its successor is on its way, for as long as refreshes take.
REFRESH_HISTORY = 5
REFRESH_MARGIN = 1.5


@dataclass
class Entry:
    """A good answer, how long it stays fresh, and when a client last asked for it.

    `ttl` is the refresh interval; `grace` is how long a refresh is expected to take
    (learned from `took`, the last few refreshes, start to landing, queue included).
    The answer is fresh while its age is below `ttl + grace`, and the refresh is not
    failing: with one read per interval, the newest data's age runs up to the interval
    plus the time the PVS takes, and calling that stale would be crying wolf.
    """

    request: ProxyRequest
    answer: Answer
    ttl: float
    last_access: float
    grace: float = 0.0
    took: tuple[float, ...] = ()
    on_time: bool | None = None  # whether this answer landed before its predecessor expired

    @classmethod
    def succeeding(
        cls,
        previous: Entry | None,
        request: ProxyRequest,
        answer: Answer,
        ttl: float,
        took: float,
        cap: float,
        landed: float,
    ) -> Entry:
        """The entry after `previous`: its refresh history grown by `took` (bounded)."""
        history = ((previous.took if previous else ()) + (took,))[-REFRESH_HISTORY:]
        on_time = None
        if previous is not None:
            on_time = landed - previous.answer.fetched_at <= previous.fresh_until
        last_access = previous.last_access if previous else float("-inf")
        return cls(request, answer, ttl, last_access, learned_grace(history, cap), history, on_time)

    @property
    def fresh_until(self) -> float:
        """The age up to which the answer is fresh while its refresh is on schedule."""
        return self.ttl + self.grace

    def describe(self, age: float, refreshing: bool, backing_off: bool) -> dict[str, object]:
        """The entry for /health: age, interval, learned refresh time, on time or not."""
        return {
            "key": self.request.target,
            "name": self.request.name,
            "age_s": round(age, 1),
            "ttl_s": self.ttl,
            "refresh_time_s": round(max(self.took, default=0.0), 2),
            "fresh_until_age_s": round(self.fresh_until, 1),
            "last_refresh_on_time": self.on_time,
            # As clients are told: past the interval, fresh only while the refresh is
            # on schedule (not while the backoff holds attempts).
            "state": "fresh"
            if age < self.ttl or (age < self.fresh_until and not backing_off)
            else "stale",
            "bytes": len(self.answer.body),
            "refresh_ahead": refreshing,
        }


def learned_grace(took: tuple[float, ...], cap: float) -> float:
    """The expected refresh time: the longest recent one with a margin, bounded by `cap`."""
    return min(cap, REFRESH_MARGIN * max(took, default=0.0))


class Lookup(NamedTuple):
    """What a client gets: the answer, HIT/STALE/MISS, its age and remaining freshness.

    A NamedTuple, not a frozen dataclass: one is built for every cache hit.
    """

    answer: Answer
    state: str
    age: float
    fresh_for: float
    warning: str | None = None
