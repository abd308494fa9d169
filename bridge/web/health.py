"""`/health`: the truth about the bridge, for the homeowner's monitoring.

`ok`: the PVS answered the last attempt and data is fresh enough. `degraded`: still
serving, but the PVS is failing, answers were rejected, or it was not reached yet.
`down`: nothing can be served. HTTP 200 for ok/degraded, 503 for down.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from bridge import __version__
from bridge.cache.answers import AnswerCache
from bridge.clock import Clock
from bridge.pvs.backend import Backend
from bridge.pvs.client import Upstream
from bridge.site.timefmt import format_iso
from bridge.web.ratelimit import RateLimiter

Describe = Callable[[], dict[str, object]]
Problems = Callable[[], list[str]]


def iso(wall: float | None) -> str | None:
    """A wall-clock time as ISO 8601 UTC (None stays None)."""
    return None if wall is None else format_iso(wall)


@dataclass
class HealthReporter:
    """Builds the /health document from the live parts of the bridge."""

    clock: Clock
    upstream: Upstream
    cache: AnswerCache
    backend: Backend
    limiter: RateLimiter | None
    describe_interfaces: Describe
    more: dict[str, Describe] = field(default_factory=dict)  # e.g. the 2025 API's clients
    problems: tuple[Problems, ...] = ()  # degraded reasons of other parts (state_dir, TLS)
    interfaces_ttl: float = 10.0
    _interfaces: tuple[float, dict[str, object]] | None = None

    def __post_init__(self) -> None:
        self.started_at = self.clock.monotonic()

    def interfaces(self) -> dict[str, object]:
        """The interface view, re-read at most every few seconds."""
        now = self.clock.monotonic()
        if self._interfaces is None or now - self._interfaces[0] > self.interfaces_ttl:
            self._interfaces = (now, self.describe_interfaces())
        return self._interfaces[1]

    def report(self) -> tuple[int, dict[str, object]]:
        """(HTTP status, JSON document)."""
        status, reasons = self.verdict()
        document: dict[str, object] = {
            "status": status,
            "reasons": reasons,
            "version": __version__,
            "uptime_s": round(self.clock.monotonic() - self.started_at),
            "upstream": self._upstream(),
            "cache": {
                "entries": self.cache.snapshot(),
                "max_stale_s": self.cache.max_stale,
                "served": dict(self.cache.counts),
                "rejected": [
                    {"at": iso(at), "key": key, "why": why}
                    for at, key, why in self.cache.rejections
                ],
            },
            "rate_limit": None if self.limiter is None else self.limiter.describe(),
            "interfaces": self.interfaces(),
            **{name: describe() for name, describe in self.more.items()},
        }
        return (503 if status == "down" else 200), document

    def _next_attempt(self) -> float:
        """When the bridge will really try again: the backoff, or the refresh schedule."""
        backoff = self.upstream.backoff.wait_seconds()
        return max(backoff, self.cache.refresh.next_in() or 0.0)

    def verdict(self) -> tuple[str, list[str]]:
        """(status, reasons): what /health leads with, without the rest of the report."""
        backoff, record = self.upstream.backoff, self.upstream.record
        reasons: list[str] = []
        if backoff.consecutive_failures:
            failure = record.last_failure
            reasons.append(
                f"PVS failing since {iso(record.failing_since_wall)}: "
                f"{backoff.consecutive_failures} failed attempt(s) in a row"
                + (f", last: {failure.message}" if failure else "")
                + f"; next attempt in {self._next_attempt():.0f} s"
            )
        if record.last_success_wall is None and not backoff.consecutive_failures:
            reasons.append("waiting for the first answer from the PVS")
        if self.cache.rejections:
            when, _key, why = self.cache.rejections[-1]
            if record.last_success_wall is None or when >= record.last_success_wall:
                reasons.append(f"last answer rejected ({why}); serving the previous one")
        reasons.extend(self.backend.problems())  # e.g. a refused PVS login
        reasons.extend(self.upstream.in_flight.problems())  # a request far overdue
        reasons.extend(self.upstream.budget.problems())  # the day's PVS requests spent
        reasons.extend(reason for problems in self.problems for reason in problems())
        if backoff.consecutive_failures and not self.cache.servable():
            reasons.append("no data young enough to serve")
            return "down", reasons
        return ("degraded" if reasons else "ok"), reasons

    def _upstream(self) -> dict[str, object]:
        upstream, backoff, record = self.upstream, self.upstream.backoff, self.upstream.record
        last_success = record.last_success_wall
        failure = record.last_failure
        return {
            "url": upstream.base_url,
            "reachable": backoff.consecutive_failures == 0 and last_success is not None,
            "last_success": iso(last_success),
            "last_success_age_s": None
            if last_success is None
            else round(self.clock.wall() - last_success, 1),
            "last_error": None
            if failure is None
            else {"kind": failure.kind, "message": failure.message, "at": iso(failure.at_wall)},
            "failing_since": iso(record.failing_since_wall),
            "consecutive_failures": backoff.consecutive_failures,
            "breaker": backoff.state,
            "next_attempt_in_s": round(self._next_attempt(), 1),
            "calls": dict(upstream.stats.calls),
            "failures": dict(upstream.stats.failures),
            "queue": {"waiting": upstream.gate.waiting, "limit": upstream.gate.queue_limit},
            "min_interval_s": upstream.gate.min_interval,
            "max_in_flight": upstream.gate.max_in_flight,
            **upstream.in_flight.describe(),  # the request in flight now, usual times
            "today": upstream.budget.describe(),  # requests sent today, against the budget
            **self.backend.describe(),
        }

    async def handle(self, _request: web.Request) -> web.Response:
        """GET /health."""
        status, document = self.report()
        return web.json_response(
            document, status=status, dumps=lambda value: json.dumps(value, indent=1) + "\n"
        )
