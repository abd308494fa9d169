"""Counters for /metrics (Prometheus text format) and the once-a-minute log summary."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from aiohttp import web

from bridge.cache.answers import AnswerCache
from bridge.pvs.client import Upstream
from bridge.web.health import HealthReporter

log = logging.getLogger("bridge.summary")

Family = tuple[str, str, str, list[tuple[dict[str, str], float]]]


class Metrics:
    """Client-side counters; the upstream and cache keep their own and are read at render."""

    def __init__(self) -> None:
        self.responses: Counter[tuple[int, str]] = Counter()
        self._logged: Counter[str] = Counter()

    def count_response(self, status: int, cache_state: str) -> None:
        """One proxied answer, by status and X-Cache (bounded: few statuses, four states)."""
        self.responses[(status, cache_state)] += 1

    def summary_since_last(self) -> str | None:
        """One line of what happened since the last call, or None when nothing did."""
        by_state: Counter[str] = Counter()
        for (status, state), count in self.responses.items():
            by_state[state] += count
            if status >= 400:
                by_state["errors"] += count
        delta = by_state - self._logged
        self._logged = by_state
        if not delta:
            return None
        parts = ", ".join(f"{name} {count}" for name, count in sorted(delta.items()))
        return f"served {delta.total() - delta['errors']} answers ({parts})"


def render(families: Iterable[Family]) -> str:
    """Prometheus text exposition: (name, type, help, [(labels, value), ...]) per family."""
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class MetricsPage:
    """GET /metrics in the Prometheus text format, read from the live parts at scrape time."""

    def __init__(
        self, upstream: Upstream, cache: AnswerCache, metrics: Metrics, health: HealthReporter
    ) -> None:
        self.upstream = upstream
        self.cache = cache
        self.metrics = metrics
        self.health = health

    async def handle(self, _request: web.Request) -> web.Response:
        """The families, built now."""
        return web.Response(
            text=render(self.families()), content_type="text/plain", charset="utf-8"
        )

    def families(self) -> list[Family]:
        """Every family with its samples."""
        upstream, cache, metrics = self.upstream, self.cache, self.metrics
        status, _document = self.health.report()
        return [
            (
                "pvs_bridge_responses_total",
                "counter",
                "Answers to dl_cgi requests by HTTP status and X-Cache.",
                [
                    ({"status": str(code), "cache": state}, float(count))
                    for (code, state), count in sorted(metrics.responses.items())
                ],
            ),
            (
                "pvs_bridge_upstream_requests_total",
                "counter",
                "Requests sent to the PVS by command or path.",
                [({"name": n}, float(c)) for n, c in sorted(upstream.stats.calls.items())],
            ),
            (
                "pvs_bridge_upstream_failures_total",
                "counter",
                "Failed PVS requests by kind.",
                [({"kind": k}, float(v)) for k, v in sorted(upstream.stats.failures.items())],
            ),
            (
                "pvs_bridge_upstream_consecutive_failures",
                "gauge",
                "Failed PVS attempts in a row.",
                [({}, float(upstream.backoff.consecutive_failures))],
            ),
            (
                "pvs_bridge_cache_age_seconds",
                "gauge",
                "Age of each cached answer.",
                [({"key": str(row["key"])}, float(str(row["age_s"]))) for row in cache.snapshot()],
            ),
            (
                "pvs_bridge_up",
                "gauge",
                "1 unless /health says down.",
                [({}, 0.0 if status == 503 else 1.0)],
            ),
        ]
