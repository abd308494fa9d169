"""The bridge's own state as Prometheus families: answers, the PVS's track record, the
gate, the breaker, the caches, the rate limit, upstream latency. Read at scrape time from
the parts /health reads; nothing here asks the PVS anything."""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from bridge import __version__
from bridge.pvs.client import LATENCY_BUCKETS, Upstream
from bridge.web.health import HealthReporter
from bridge.web.ratelimit import RateLimiter

BREAKER_STATES = ("closed", "open", "half-open")


def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    """A gauge of one sample without labels."""
    return GaugeMetricFamily(name, help_text, value=value)


def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    """A counter of one sample without labels (`name` without `_total`)."""
    return CounterMetricFamily(name, help_text, value=value)


def by_label(name: str, help_text: str, label: str, counts: Counter[str]) -> CounterMetricFamily:
    """A counter with one label, a sample per key."""
    family = CounterMetricFamily(name, help_text, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


def bridge_families(health: HealthReporter, responses: Counter[tuple[int, str]]) -> list[Metric]:
    """Every family of the bridge itself."""
    status, _document = health.report()
    api = health.backend.describe().get("firmware", "unknown")
    answered = CounterMetricFamily(
        "pvs_bridge_responses",
        "Answers to dl_cgi and /vars requests by X-Cache state and HTTP status.",
        labels=["cache", "status"],
    )
    for (code, state), count in sorted(responses.items()):
        answered.add_metric([state, str(code)], count)
    info = InfoMetricFamily(
        "pvs_bridge",
        "The bridge's version and the PVS API it speaks (pvs_api: legacy, 2025, unknown).",
    )
    info.add_metric([], {"version": __version__, "pvs_api": str(api)})
    return [
        gauge(
            "pvs_bridge_up",
            "1 unless /health says down (nothing can be served).",
            0.0 if status == 503 else 1.0,
        ),
        info,
        answered,
        *upstream_families(health),
        *cache_families(health),
        *limit_families(health.limiter),
    ]


def upstream_families(health: HealthReporter) -> list[Metric]:
    """Requests to the PVS: counts, failures, breaker, queue, last success, latency."""
    upstream = health.upstream
    backoff, stats = upstream.backoff, upstream.stats
    last_success = GaugeMetricFamily(
        "pvs_bridge_upstream_last_success_timestamp_seconds",
        "When the PVS last gave the data asked for, in seconds since 1970 (UTC).",
    )
    if upstream.record.last_success_wall is not None:
        last_success.add_metric([], upstream.record.last_success_wall)
    return [
        by_label(
            "pvs_bridge_upstream_requests",
            "Requests sent to the PVS by command or path.",
            "name",
            stats.calls,
        ),
        by_label(
            "pvs_bridge_upstream_failures", "Failed PVS requests by kind.", "kind", stats.failures
        ),
        gauge(
            "pvs_bridge_upstream_consecutive_failures",
            "Failed PVS attempts in a row.",
            backoff.consecutive_failures,
        ),
        *breaker_families(upstream),
        last_success,
        latency_family(upstream),
    ]


def breaker_families(upstream: Upstream) -> list[Metric]:
    """The circuit breaker and the gate's queue in front of the PVS."""
    breaker = GaugeMetricFamily(
        "pvs_bridge_upstream_breaker_state",
        "The circuit breaker in front of the PVS: 1 for its state now, 0 for the others.",
        labels=["state"],
    )
    for state in BREAKER_STATES:
        breaker.add_metric([state], float(upstream.backoff.state == state))
    return [
        breaker,
        counter(
            "pvs_bridge_upstream_refused_attempts",
            "Requests refused at once because the backoff held attempts to the PVS.",
            upstream.backoff.attempts_refused,
        ),
        gauge(
            "pvs_bridge_upstream_queue_depth",
            "Requests waiting for their turn at the PVS.",
            upstream.gate.waiting,
        ),
        gauge(
            "pvs_bridge_upstream_queue_limit",
            "Requests that may wait for the PVS at most.",
            upstream.gate.queue_limit,
        ),
    ]


def latency_family(upstream: Upstream) -> HistogramMetricFamily:
    """How long the PVS took to answer, per command, from request to the body's last byte."""
    family = HistogramMetricFamily(
        "pvs_bridge_upstream_latency_seconds",
        "Time the PVS took to answer, in seconds, by command or path (answers only).",
        labels=["name"],
    )
    bounds = [floatToGoString(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
    for name, latency in sorted(upstream.stats.latency.items()):
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, latency.counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_metric([name], buckets, latency.total)
    return family


def cache_families(health: HealthReporter) -> list[Metric]:
    """The dl_cgi cache: each entry's age, answers the sanity check rejected."""
    cache = health.cache
    ages = GaugeMetricFamily(
        "pvs_bridge_cache_age_seconds", "Age of each cached answer in seconds.", labels=["key"]
    )
    for row in cache.snapshot():
        ages.add_metric([str(row["key"])], float(str(row["age_s"])))
    rejected = counter(
        "pvs_bridge_rejected_answers",
        "Answers rejected: device lists broken next to the last good one, and answers longer "
        "than upstream.max_body_bytes (the previous one kept).",
        cache.counts["rejected"],
    )
    return [ages, rejected]


def limit_families(limiter: RateLimiter | None) -> list[Metric]:
    """The per-client rate limit on requests that must reach the PVS (none when off)."""
    if limiter is None:
        return []
    return [
        counter(
            "pvs_bridge_rate_limit_refusals",
            "Requests refused with 429 by the per-client rate limit.",
            limiter.refused,
        ),
        counter(
            "pvs_bridge_rate_limit_delays",
            "Requests the per-client rate limit made wait for their turn.",
            limiter.delayed,
        ),
    ]
