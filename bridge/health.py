"""`/health`: the truth about the bridge, for the homeowner's monitoring.

`ok`: the PVS answered the last attempt and data is fresh enough. `degraded`: still
serving, but the PVS is failing, answers were rejected, or it was not reached yet.
`down`: nothing can be served. HTTP 200 for ok/degraded, 503 for down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge import __version__
from bridge.backend import Backend
from bridge.cache import AnswerCache
from bridge.clock import Clock
from bridge.ratelimit import RateLimiter
from bridge.upstream import Upstream

Describe = Callable[[], dict[str, object]]


def iso(wall: float | None) -> str | None:
    """A wall-clock time as ISO 8601 UTC (None stays None)."""
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class HealthReporter:
    """Builds the /health document from the live parts of the bridge."""

    clock: Clock
    upstream: Upstream
    cache: AnswerCache
    backend: Backend
    limiter: RateLimiter | None
    describe_interfaces: Describe
    interfaces_ttl: float = 10.0
    started_wall: float = field(default_factory=time.time)
    _interfaces: tuple[float, dict[str, object]] | None = None

    def interfaces(self) -> dict[str, object]:
        """The interface view, re-read at most every few seconds."""
        now = self.clock.monotonic()
        if self._interfaces is None or now - self._interfaces[0] > self.interfaces_ttl:
            self._interfaces = (now, self.describe_interfaces())
        return self._interfaces[1]

    def report(self) -> tuple[int, dict[str, object]]:
        """(HTTP status, JSON document)."""
        breaker = self.upstream.breaker
        reasons: list[str] = []
        servable = self.cache.servable()
        # When the bridge will really try again: the breaker's delay, or later when the
        # refresh-ahead schedule says so.
        next_attempt = max(breaker.wait_seconds(), self.cache.next_refresh_in() or 0.0)
        if breaker.consecutive_failures:
            failure = breaker.last_failure
            reasons.append(
                f"PVS failing since {iso(breaker.failing_since_wall)}: "
                f"{breaker.consecutive_failures} failed attempt(s) in a row"
                + (f", last: {failure.message}" if failure else "")
                + f"; next attempt in {next_attempt:.0f} s"
            )
        if breaker.last_success_wall is None and not breaker.consecutive_failures:
            reasons.append("waiting for the first answer from the PVS")
        if self.cache.rejections:
            when, _key, why = self.cache.rejections[-1]
            if breaker.last_success_wall is None or when >= breaker.last_success_wall:
                reasons.append(f"last answer rejected ({why}); serving the previous one")
        reasons.extend(self.backend.problems())  # e.g. a refused PVS login
        if breaker.consecutive_failures and not servable:
            status = "down"
            reasons.append("no data young enough to serve")
        elif reasons:
            status = "degraded"
        else:
            status = "ok"
        now_wall = self.clock.wall()
        document: dict[str, object] = {
            "status": status,
            "reasons": reasons,
            "version": __version__,
            "uptime_s": round(time.time() - self.started_wall),
            "upstream": {
                "url": self.upstream.base_url,
                "reachable": breaker.consecutive_failures == 0
                and breaker.last_success_wall is not None,
                "last_success": iso(breaker.last_success_wall),
                "last_success_age_s": None
                if breaker.last_success_wall is None
                else round(now_wall - breaker.last_success_wall, 1),
                "last_error": None
                if breaker.last_failure is None
                else {
                    "kind": breaker.last_failure.kind,
                    "message": breaker.last_failure.message,
                    "at": iso(breaker.last_failure.at_wall),
                },
                "failing_since": iso(breaker.failing_since_wall),
                "consecutive_failures": breaker.consecutive_failures,
                "breaker": breaker.state,
                "next_attempt_in_s": round(next_attempt, 1),
                "calls": dict(self.upstream.stats.calls),
                "failures": dict(self.upstream.stats.failures),
                "queue": {
                    "waiting": self.upstream.stats.waiting,
                    "limit": self.upstream.queue_limit,
                },
                "max_in_flight": self.upstream.stats.max_in_flight,
                **self.backend.describe(),
            },
            "cache": {
                "entries": self.cache.snapshot(),
                "max_stale_s": self.cache.max_stale,
                "served": dict(self.cache.counts),
                "rejected": [
                    {"at": iso(at), "key": key, "why": why}
                    for at, key, why in self.cache.rejections
                ],
            },
            "rate_limit": None
            if self.limiter is None
            else {
                "rate": self.limiter.rate,
                "burst": self.limiter.burst,
                "clients_tracked": self.limiter.tracked,
                "refused": self.limiter.refused,
            },
            "interfaces": self.interfaces(),
        }
        return (503 if status == "down" else 200), document
