"""/metrics (Prometheus text format, prometheus_client) and the once-a-minute log summary.

The families: the site's figures (`metrics_site`), the bridge's own (`metrics_bridge`),
and the PVS reboots seen, built by one Collector in a registry of the page's own.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from aiohttp import web
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from bridge.pvs.devices import DeviceReader
from bridge.pvs.reboots import RebootWatch
from bridge.pvs.requests import DEVICE_LIST
from bridge.web.client_trouble import ClientTrouble
from bridge.web.health import HealthReporter
from bridge.web.metrics_bridge import bridge_families
from bridge.web.metrics_site import site_families

log = logging.getLogger("bridge.summary")

# The classic text format, which every Prometheus version reads (what generate_latest writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Client-side counters; the upstream and cache keep their own and are read at render."""

    def __init__(self) -> None:
        self.responses: Counter[tuple[int, str]] = Counter()
        self._logged: Counter[str] = Counter()
        # What clients did wrong (counted by the connections, see runner).
        self.trouble = ClientTrouble()

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
        served = None
        if delta:
            parts = ", ".join(f"{name} {count}" for name, count in sorted(delta.items()))
            served = f"served {delta.total() - delta['errors']} answers ({parts})"
        trouble = self.trouble.summary_since_last()
        return "; ".join(part for part in (served, trouble) if part) or None


class SiteCollector(Collector):
    """Every family, built at scrape time from the latest device read and the bridge's parts.

    Reads only what is in memory: a scrape never reaches the PVS, never counts as a client
    read of the cache, and never starts a refresh.
    """

    def __init__(
        self, health: HealthReporter, metrics: Metrics, devices: DeviceReader, reboots: RebootWatch
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.devices = devices
        self.reboots = reboots

    def collect(self) -> Iterable[Metric]:
        """The families that have samples now."""
        reboots = CounterMetricFamily(
            "pvs_reboots",
            "PVS reboots seen since the bridge started (its uptime went down between reads).",
            value=self.reboots.reboots,
        )
        families = [*bridge_families(self.health, self.metrics.responses), reboots]
        snapshot = self.devices.snapshot
        if snapshot is not None:
            families.extend(site_families(snapshot, self.health.clock.wall()))
        return [family for family in families if family.samples]


class MetricsPage:
    """GET /metrics: the Prometheus text format (0.0.4) of the bridge's own registry."""

    def __init__(
        self, health: HealthReporter, metrics: Metrics, devices: DeviceReader, reboots: RebootWatch
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SiteCollector(health, metrics, devices, reboots))
        self._cache = health.cache

    async def handle(self, _request: web.Request) -> web.Response:
        """The families, built now. A scrape never asks the PVS, but it is interest in the
        data: the device list keeps being refreshed (one read per interval) while scraped."""
        self._cache.keep_fresh(DEVICE_LIST)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
