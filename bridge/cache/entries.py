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


@dataclass
class Entry:
    """A good answer, how long it stays fresh, and when a client last asked for it."""

    request: ProxyRequest
    answer: Answer
    ttl: float
    last_access: float


class Lookup(NamedTuple):
    """What a client gets: the answer, HIT/STALE/MISS, its age and remaining freshness.

    A NamedTuple, not a frozen dataclass: one is built for every cache hit.
    """

    answer: Answer
    state: str
    age: float
    fresh_for: float
    warning: str | None = None
